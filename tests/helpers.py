"""Runs of the CLI in this process and, killed, in a subprocess; callbacks that tests inject into them
through the config; and a check of bad input."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import lightning as L
import pytest

from litlab.cli import main
from tests.conftest import ROOT


def command(subcommand: str, *args: str) -> str:
    """``python -m platform <subcommand> *args`` in this process (from the repository root, without W&B or a
    progress bar); returns what it printed. A run in a test's own process costs no start-up."""
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.chdir(ROOT)
        patch.setenv("WANDB_MODE", "disabled")
        patch.setattr("sys.argv", ["python -m platform"])  # what LightningCLI reads beside the args it is given
        main([subcommand, *args, "--trainer.enable_progress_bar", "false"])
    return printed.getvalue()


def fit(*args: str) -> str:
    """``python -m platform fit *args`` in this process (``command``)."""
    return command("fit", *args)


def run_module(module: str, *args: str, returncode: int = 0, env: dict | None = None) -> str:
    """``python -m <module> *args`` from the repository root in a process of its own, without W&B; checks its
    exit status and returns what it printed."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "WANDB_MODE": "disabled", **(env or {})},
    )  # fmt: skip
    assert out.returncode == returncode, out.stderr[-3000:]
    return out.stdout


def launch(*args: str, returncode: int = 0, env: dict | None = None) -> str:
    """``python -m platform fit *args`` in a process of its own (a run on several processes, or one
    to be killed), without W&B or a progress bar (``run_module``)."""
    return run_module("platform", "fit", *args, "--trainer.enable_progress_bar", "false", returncode=returncode, env=env)


def fit_killed(*args: str, step: int, during_save: bool = False, env: dict | None = None) -> None:
    """``launch(*args)``, SIGKILLed when training reaches ``step`` (or while the checkpoint of that
    step is being saved): a real crash, which nothing cleans up after."""
    kill = json.dumps([{"class_path": "tests.helpers.KillAtStep", "init_args": {"step": step, "during_save": during_save}}])
    launch(*args, "--trainer.callbacks", kill, returncode=-signal.SIGKILL, env=env)


class KillAtStep(L.Callback):
    """SIGKILLs the process when training reaches ``step``, or while the checkpoint of that step is
    being saved (``during_save``): a crash nothing can clean up after."""

    def __init__(self, step: int, during_save: bool = False):
        self.step, self.during_save = step, during_save

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step and not self.during_save:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.global_step == self.step and self.during_save:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAt(L.Callback):
    """Sends ``send`` (a signal's name: SIGTERM, SIGINT) to its own process, a real signal from the kernel, when
    training reaches ``step``: ``during`` its training batch, the validation after it, its checkpoint's
    save, or the sanity check before training; only in the process of ``rank``, where given; ``times`` times
    in a row. With ``marker``, writes that file instead at ``step`` and then slows every step by
    ``step_seconds``, for a test that signals from outside (as a scheduler or a terminal would)."""

    def __init__(self, step: int, send: str = "SIGTERM", during: str = "train", rank: int | None = None, marker: str | None = None,
                 step_seconds: float = 0.0, times: int = 1):  # fmt: skip
        self.step, self.signum, self.during, self.rank, self.times = step, signal.Signals[send], during, rank, times
        self.marker, self.step_seconds = marker, step_seconds

    def _send(self, trainer: L.Trainer, during: str) -> None:
        if trainer.global_step == self.step and during == self.during and self.rank in (None, trainer.global_rank):
            if self.marker:
                open(self.marker, "w").close()
            else:
                for _ in range(self.times):
                    os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._send(trainer, "train")
        if self.marker and os.path.exists(self.marker):
            time.sleep(self.step_seconds)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0:
            self._send(trainer, "sanity check" if trainer.sanity_checking else "validation")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._send(trainer, "save")


class StopAtStep(L.Callback):
    """Ends training cleanly once ``step`` optimizer steps are done; the last checkpoint is of that step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        trainer.should_stop = trainer.global_step >= self.step


class CopyCheckpointAt(L.Callback):
    """Copies the run's last.ckpt to ``path`` as it stands once ``step`` optimizer steps are saved: a
    snapshot to resume from, taken without stopping the run."""

    def __init__(self, step: int, path: str):
        self.step, self.path = step, path

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            shutil.copyfile(os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt"), self.path)


def error_line(cli, capsys, *args) -> str:
    """Run the CLI on bad input: it must exit with status 2 and no traceback; returns its last line."""
    with pytest.raises(SystemExit) as exit_info:
        cli(*args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]
