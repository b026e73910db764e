"""Callbacks that tests inject into real CLI runs through the config, and a check of bad input."""

import os
import signal

import lightning as L
import pytest


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


class StopAtStep(L.Callback):
    """Ends training cleanly once ``step`` optimizer steps are done; the last checkpoint is of that step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        trainer.should_stop = trainer.global_step >= self.step


def error_line(cli, capsys, *args) -> str:
    """Run the CLI on bad input: it must exit with status 2 and no traceback; returns its last line."""
    with pytest.raises(SystemExit) as exit_info:
        cli(*args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]

