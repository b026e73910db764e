"""Every fit with a logger writes its metrics to ``runs/<name>/metrics.jsonl`` as well, and a resume continues
the file: the lines logged after the checkpoint it resumes from are replaced by the resumed run's, so every
metric has each step once, with no gap."""

import json
import os
import time
from collections import Counter

from litlab.loggers import read_metrics

NANO = ("--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "20")
EVERY_10 = "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args: {every_n_train_steps: 10, save_top_k: -1, filename: 'step{step}', auto_insert_metric_name: false}\n"


def steps_of(rows: list[dict], metric: str) -> list[int]:
    return [row["step"] for row in rows if metric in row]


def test_a_fit_writes_its_metrics_by_step_and_wall_time(cli):
    runs = cli("fit", *NANO)  # W&B disabled: the logger exists, and the file beside it
    rows = read_metrics(os.path.join(runs, "gpt_nano", "metrics.jsonl"))
    assert steps_of(rows, "train/loss") == [5, 10, 15, 20] and steps_of(rows, "val/loss") == [10, 20]  # log_every_n_steps 5, val every 10
    assert steps_of(rows, "perf/tokens_per_sec") == [5, 10, 15, 20]
    walls = [row["wall_s"] for row in rows]
    assert walls == sorted(walls) and walls[0] > 0
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert losses[-1] < losses[0] < 6  # bytes: log(261) = 5.56 at the start


def test_a_resume_replaces_what_was_logged_after_its_checkpoint(cli, tmp_path):
    """Resumed from step 10 after the run reached 20: steps 15 and 20 are logged again, once each, with the
    same losses (a resume is bit-identical), and the wall time goes on from step 10's."""
    config = tmp_path / "every10.yaml"
    config.write_text(EVERY_10)
    runs = cli("fit", *NANO, "--config", str(config))
    path = os.path.join(runs, "gpt_nano", "metrics.jsonl")
    first = read_metrics(path)
    cli("fit", *NANO, "--config", str(config), "--ckpt_path", os.path.join(runs, "gpt_nano", "checkpoints", "step10.ckpt"))
    resumed = read_metrics(path)
    for metric in ("train/loss", "val/loss", "perf/tokens_per_sec"):
        assert steps_of(resumed, metric) == steps_of(first, metric)  # each step once, none missing
    assert all(n == 1 for n in Counter((row["step"], k) for row in resumed for k in row if k not in ("step", "wall_s")).values())
    assert [r["train/loss"] for r in resumed if "train/loss" in r] == [r["train/loss"] for r in first if "train/loss" in r]
    at_10 = max(r["wall_s"] for r in first if r["step"] == 10)
    assert all(r["wall_s"] > at_10 for r in resumed if r["step"] > 10)


def test_a_later_command_in_the_same_process_is_timed_from_its_own_start(cli):
    """A notebook's second fit: its wall time and time to first step do not count the commands before it."""
    cli("fit", *NANO, "--trainer.max_steps", "5")
    started = time.perf_counter()
    runs = cli("fit", *NANO, "--trainer.max_steps", "5", "--run.name", "second")
    took = time.perf_counter() - started
    rows = read_metrics(os.path.join(runs, "second", "metrics.jsonl"))
    first_step = next(row["perf/time_to_first_step"] for row in rows if "perf/time_to_first_step" in row)
    assert 0 < first_step < rows[-1]["wall_s"] < took


def test_a_line_cut_short_by_a_kill_is_left_out(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 5, "wall_s": 1.0, "train/loss": 5.0}) + '\n{"step": 10, "wall_s": 2.')
    assert read_metrics(str(path)) == [{"step": 5, "wall_s": 1.0, "train/loss": 5.0}]


def test_no_logger_no_file(cli):
    runs = cli("fit", *NANO, "--trainer.logger", "false")
    assert "metrics.jsonl" not in os.listdir(os.path.join(runs, "gpt_nano"))
