"""SIGTERM and SIGINT stop a fit cleanly: it saves the step it is at, closes W&B, says in one line where it
stopped and how to resume, and exits 143 or 130; resuming then ends with the weights of a run that was never
stopped. The signals are real, sent to a real subprocess: by itself at a chosen point (a training step, a
validation, a save), and from outside to its whole process group, as a terminal's Ctrl-C is."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT
from tests.helpers import fit
from tests.wandb_records import read_run

RUN = ["--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "8", "--trainer.val_check_interval", "4",
       "--trainer.limit_val_batches", "2", "--run.checkpoint_every", "100", "--trainer.logger", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, token_cache) -> dict:
    runs = str(tmp_path_factory.mktemp("uninterrupted"))
    fit(*RUN, "--run.dir", runs, "--data.init_args.cache_dir", token_cache)
    return weights(runs)


def weights(runs: str) -> dict:
    return torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)["state_dict"]


def saved_step(runs: str) -> int:
    return torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)["global_step"]


def start(runs: str, token_cache: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "platform", "fit", *RUN, "--run.dir", runs, "--data.init_args.cache_dir", token_cache,
               "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def signal_at(step: int, send: str, during: str, **more) -> list[str]:
    return ["--trainer.callbacks", json.dumps([{"class_path": "tests.helpers.SignalAt", "init_args": {"step": step, "send": send, "during": during, **more}}])]


def stopped_line(process: subprocess.Popen, exit_code: int) -> str:
    _, err = process.communicate(timeout=300)
    assert process.returncode == exit_code, err[-3000:]
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "send, during, step, every, exit_code, saved",
    [
        ("SIGTERM", "train", 5, 100, 143, 6),  # mid-step: the step under way is finished, then saved
        ("SIGINT", "validation", 4, 100, 130, 4),  # mid-validation: the step validated is saved, its validation runs again
        ("SIGTERM", "save", 4, 4, 143, 4),  # during the periodic save: that save completes, and is the one kept
    ],
)
def test_a_signal_saves_the_current_step_and_resuming_loses_nothing(tmp_path, token_cache, uninterrupted, send, during, step, every, exit_code, saved):
    runs = str(tmp_path / "runs")
    line = stopped_line(start(runs, token_cache, *signal_at(step, send, during), "--run.checkpoint_every", str(every)), exit_code)
    run_dir = os.path.join(runs, "gpt_nano")
    assert line == (f"stopped by {send} at step {saved}: saved {os.path.join(run_dir, 'checkpoints', 'last.ckpt')}; "
                    f"resume with the same command and --ckpt_path {run_dir}")  # fmt: skip
    assert saved_step(runs) == saved
    assert not [f for f in os.listdir(os.path.join(run_dir, "checkpoints")) if f != "last.ckpt"]  # no partial file left

    fit(*RUN, "--run.dir", runs, "--data.init_args.cache_dir", token_cache, "--ckpt_path", "last")
    final = weights(runs)
    assert final.keys() == uninterrupted.keys()
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final)


def test_ctrl_c_from_a_terminal_reaches_workers_too_and_still_saves(tmp_path, token_cache, uninterrupted):
    """SIGINT to the whole process group, DataLoader workers included, at whatever step it lands on."""
    runs, marker = str(tmp_path / "runs"), str(tmp_path / "at_step_3")
    process = start(runs, token_cache, *signal_at(3, "SIGINT", "train", marker=marker, step_seconds=0.3), "--data.init_args.num_workers", "2")
    deadline = time.monotonic() + 120
    while not os.path.exists(marker) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    line = stopped_line(process, 130)
    assert line.startswith("stopped by SIGINT at step ")
    assert 3 <= saved_step(runs) < 8

    fit(*RUN, "--run.dir", runs, "--data.init_args.cache_dir", token_cache, "--data.init_args.num_workers", "2", "--ckpt_path", "last")
    final = weights(runs)
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final)


def test_the_wandb_run_is_closed_with_the_exit_status(tmp_path, token_cache):
    runs = str(tmp_path / "runs")
    process = start(runs, token_cache, *signal_at(2, "SIGTERM", "train"), "--trainer.logger", "true", env={"WANDB_MODE": "offline"})
    assert stopped_line(process, 143).startswith("stopped by SIGTERM at step 3: saved ")
    (segment,) = read_run(os.path.join(runs, "gpt_nano"))
    assert segment["exit_code"] == 143


def test_a_second_signal_stops_at_once_and_the_last_save_stays_whole(tmp_path, token_cache):
    runs = str(tmp_path / "runs")
    process = start(runs, token_cache, "--run.checkpoint_every", "2", *signal_at(5, "SIGTERM", "train", times=2))
    line = stopped_line(process, 143)
    assert line == "stopped by a second SIGTERM, without saving: the last checkpoint saved before is whole; resume with --ckpt_path last"
    assert saved_step(runs) == 4  # the periodic save before the signals


def test_a_signal_before_training_leaves_nothing_behind(tmp_path, token_cache):
    """Stopped during the sanity check, before any step: nothing to save, and the fresh run's directory goes."""
    runs = str(tmp_path / "runs")
    process = start(runs, token_cache, "--trainer.num_sanity_val_steps", "1", *signal_at(0, "SIGTERM", "sanity check"))
    assert stopped_line(process, 143) == "stopped by SIGTERM: nothing was trained, nothing to save"
    assert not os.path.exists(os.path.join(runs, "gpt_nano"))


def test_sigusr1_under_slurm_still_saves_lightnings_requeue_checkpoint(tmp_path, token_cache):
    """SLURM's requeue signal stays Lightning's: it saves ``hpc_ckpt_1.ckpt`` into the run directory
    (which ``--ckpt_path last`` picks up, see test_runs.py) and training goes on."""
    runs = str(tmp_path / "runs")
    slurm = {"SLURM_JOB_ID": "42", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pretrain", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
             "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}  # fmt: skip
    process = start(runs, token_cache, *signal_at(3, "SIGUSR1", "train"), env=slurm)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    hpc = os.path.join(runs, "gpt_nano", "hpc_ckpt_1.ckpt")
    assert torch.load(hpc, weights_only=True)["global_step"] == 3
    assert saved_step(runs) == 8
