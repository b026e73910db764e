"""``python -m platform compare``: two runs side by side from their files, what differs in their configs,
their final and best metrics, and a plot; bad input gets one line and exit 2."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from litlab.cli import main
from litlab.loggers import read_metrics
from tests.conftest import ROOT

NANO = ("--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "20")


@pytest.fixture
def two_runs(cli) -> str:
    runs = cli("fit", *NANO)
    cli("fit", *NANO, "--model.init_args.optimizer.init_args.lr", "1e-3")  # runs/gpt_nano-2
    return runs


def test_compare_tabulates_what_differs_and_plots_both(two_runs, tmp_path):
    out = tmp_path / "plot.png"
    done = subprocess.run([sys.executable, "-m", "platform", "compare", f"{two_runs}/gpt_nano*", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "| | gpt_nano | gpt_nano-2 |"
    assert "| model.init_args.optimizer.init_args.lr | 0.003 | 0.001 |" in lines
    assert not any(line.startswith("| data.") for line in lines)  # the same data: not shown
    for run, column in (("gpt_nano", 0), ("gpt_nano-2", 1)):
        rows = read_metrics(os.path.join(two_runs, run, "metrics.jsonl"))
        losses = [(r["step"], r["val/loss"]) for r in rows if "val/loss" in r]
        best = min(losses, key=lambda sv: sv[1])
        row = next(line for line in lines if line.startswith("| val/loss: final (best, min) |"))
        assert row.split(" | ")[1 + column].rstrip(" |") == f"{losses[-1][1]:.4f} (best {best[1]:.4f} at {best[0]})"
    assert "| steps | 20 | 20 |" in lines
    pixels = np.asarray(Image.open(out).convert("L"), dtype=float)
    assert pixels.shape[1] == 1100 and pixels.std() > 10  # two panels a metric, lines drawn
    assert done.stdout.rstrip().endswith(f"plot: {out}")
    again = subprocess.run([sys.executable, "-m", "platform", "compare", f"{two_runs}/gpt_nano", "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.stdout.rstrip().endswith(f"plot: {tmp_path / 'plot-2.png'}")  # the first plot is kept


def compare_error(capsys, *args: str) -> str:
    """``compare`` on bad input: exit status 2 and one line, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    return err[0]


@pytest.mark.parametrize(
    "target, message",
    [
        ("nowhere", "compare nowhere: no such run directory"),
        ("nowhere*", "compare 'nowhere*': the glob matches no run directory"),
        ("configs", "compare configs: no metrics.jsonl; expected the directory of a fit that had a logger (runs/<name>)"),
    ],
)
def test_bad_input_gets_one_line(capsys, monkeypatch, target, message):
    monkeypatch.chdir(ROOT)
    assert compare_error(capsys, target) == f"error: {message}"


def test_an_unlogged_metric_is_named(cli, capsys):
    runs = cli("fit", *NANO)
    capsys.readouterr()
    line = compare_error(capsys, f"{runs}/gpt_nano", "--metrics", "val/acc")
    assert line.startswith("error: compare --metrics val/acc: not logged by any of the runs; they logged ") and "val/loss" in line
