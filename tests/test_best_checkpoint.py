"""``run.monitor`` keeps the best checkpoint as ``checkpoints/best.ckpt`` beside ``last.ckpt``; ``--ckpt_path best``
scores it; ``run.early_stopping`` stops a fit that stopped improving; a checkpoint callback the user adds saves
inside the run directory, W&B or not. Bad settings get one line and exit 2."""

import csv
import os

import pytest
import torch

from tests.helpers import error_line

NANO = ("--config", "configs/gpt_nano.yaml", "--trainer.val_check_interval", "5", "--trainer.max_steps", "20")


def logged(run: str) -> dict[int, float]:
    """val/loss by step, from the CSV logger's file of the run."""
    rows = [row for path in _csvs(run) for row in csv.DictReader(open(path)) if row.get("val/loss")]
    return {int(row["step"]): float(row["val/loss"]) for row in rows}


def _csvs(run: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(run) for f in files if f == "metrics.csv"]


def csv_logger(tmp_path) -> tuple[str, str]:
    return "--trainer.logger", f'{{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {{"save_dir": "{tmp_path}/csv"}}}}'


def step_of(path: str) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_ckpt_is_the_checkpoint_of_the_best_validation(cli, tmp_path, capsys, mode):
    """Four validations (steps 5-20); the val/loss falls, so min keeps the last one and max the first."""
    runs = cli("fit", *NANO, "--run.monitor", "val/loss", "--run.mode", mode, *csv_logger(tmp_path))
    logged_losses = [loss for _, loss in sorted(logged(str(tmp_path / "csv")).items())]
    assert len(logged_losses) == 4
    losses = dict(zip([5, 10, 15, 20], logged_losses))
    best = (min if mode == "min" else max)(losses, key=losses.get)
    checkpoints = os.path.join(runs, "gpt_nano", "checkpoints")
    assert sorted(os.listdir(checkpoints)) == ["best.ckpt", "last.ckpt"]
    assert step_of(os.path.join(checkpoints, "best.ckpt")) == best and step_of(os.path.join(checkpoints, "last.ckpt")) == 20
    assert f"best:        {checkpoints}/best.ckpt (val/loss {losses[best]:.4f} at step {best})" in capsys.readouterr().out
    cli("validate", "--config", "configs/gpt_nano.yaml", "--ckpt_path", "best")
    assert f"step {best}" in capsys.readouterr().out  # validate names the step of the checkpoint it scores


def test_a_resumed_fit_keeps_comparing_with_the_best_before_it(cli, tmp_path):
    """Mode max: the best is the first validation's (step 5); a resume to step 30 must not replace it with
    its own first validation, which is worse."""
    runs = cli("fit", *NANO, "--run.monitor", "val/loss", "--run.mode", "max", "--trainer.logger", "false")
    best = os.path.join(runs, "gpt_nano", "checkpoints", "best.ckpt")
    cli("fit", *NANO[:-1], "30", "--run.monitor", "val/loss", "--run.mode", "max", "--trainer.logger", "false", "--ckpt_path", "last")
    assert step_of(best) == 5 and step_of(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt")) == 30


def test_early_stopping_ends_the_fit_when_the_monitor_stops_improving(cli):
    """Mode max with a falling loss: the second validation is no better, and patience 1 stops there."""
    runs = cli("fit", *NANO, "--run.monitor", "val/loss", "--run.mode", "max", "--run.early_stopping", "1", "--trainer.logger", "false")
    checkpoints = os.path.join(runs, "gpt_nano", "checkpoints")
    assert step_of(os.path.join(checkpoints, "last.ckpt")) == 10 and step_of(os.path.join(checkpoints, "best.ckpt")) == 5


def test_a_checkpoint_callback_added_by_the_user_saves_inside_the_run(cli, tmp_path):
    """With W&B (offline) as the logger, Lightning would put it in runs/<name>/platform/<wandb-id>/checkpoints."""
    config = tmp_path / "every5.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        "      init_args: {every_n_train_steps: 5, save_top_k: -1, filename: 'step{step}', auto_insert_metric_name: false}\n"
    )
    runs = cli("fit", *NANO, "--config", str(config), wandb_mode="offline")
    checkpoints = os.path.join(runs, "gpt_nano", "checkpoints")
    assert sorted(os.listdir(checkpoints)) == ["last.ckpt", "step10.ckpt", "step15.ckpt", "step20.ckpt", "step5.ckpt"]
    assert [step_of(os.path.join(checkpoints, f"step{s}.ckpt")) for s in (5, 10, 15, 20)] == [5, 10, 15, 20]


@pytest.mark.parametrize(
    "args, message",
    [
        (("fit", *NANO, "--run.mode", "median"), "run.mode='median': expected 'min' or 'max'"),
        (("fit", *NANO, "--run.early_stopping", "3"), "run.early_stopping=3: stops when run.monitor stops improving; expected run.monitor"),
        (("fit", *NANO, "--run.monitor", "val/loss", "--run.early_stopping", "0"), "run.early_stopping=0: expected a positive number"),
        (("validate", "--config", "configs/gpt_nano.yaml", "--ckpt_path", "best"), "--ckpt_path best: "),
        (("fit", *NANO, "--ckpt_path", "best"), "fit --ckpt_path best: a fit resumes from its last checkpoint"),
    ],
)
def test_bad_settings_get_one_line(cli, capsys, tmp_path, args, message):
    assert message in error_line(cli, capsys, *args)
    assert not os.path.exists(tmp_path / "runs" / "gpt_nano")  # nothing was made


def test_a_user_checkpoint_with_save_last_is_refused(cli, capsys, tmp_path):
    config = tmp_path / "last.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args: {save_last: true}\n")
    line = error_line(cli, capsys, "fit", *NANO, "--config", str(config))
    assert "ModelCheckpoint(save_last=True): the run saves last.ckpt itself" in line
