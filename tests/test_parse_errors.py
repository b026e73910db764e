"""Every parse error is one line, without jsonargparse's usage block: where the bad value was given (a
config file, or the command line), its key, the value and what was expected; malformed YAML names the
file, the line and the column. ``--help`` still prints the usage."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.helpers import error_line

NANO = "configs/gpt_nano.yaml"


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["--model.init_args.optimizer.init_args.lr", "fast"], "--model.init_args.optimizer.init_args.lr fast: expected a float"),
        (["--model.init_args.optimizer.init_args.lr", "nan"], "--model.init_args.optimizer.init_args.lr nan: expected a float"),
        (["--trainer.max_steps", "x"], "--trainer.max_steps x: expected an int"),
        (["--data.init_args.batch_size", "1.5"], "--data.init_args.batch_size 1.5: expected an int"),
        (["--model.init_args.net.init_args.dropout", "high"], "--model.init_args.net.init_args.dropout high: expected a float"),
        (["--trainer.precision", "17"], "--trainer.precision 17: expected one of 64, 32, 16, transformer-engine, "),
        (["--model.class_path", "tasks.Nope"], "--model.class_path tasks.Nope: cannot import it (module 'tasks' has no attribute 'Nope')"),
        (["--model.init_args.net", "tasks.nets.Nope"], "--model.init_args.net tasks.nets.Nope: cannot import it (module 'tasks.nets' has no attribute 'Nope')"),
        (["--model.init_args.optimizer", "torch.optim.Nope"], "--model.init_args.optimizer torch.optim.Nope: cannot import it (module 'torch.optim' has no attribute 'Nope')"),
        (["--data.class_path", "datamodules.Nope"], "--data.class_path datamodules.Nope: cannot import it"),
        (["--model.init_args.net.init_args.n_layerz", "3"], "--model.init_args.net.init_args.n_layerz 3: no such option of tasks.nets.GPT"),
        (["--trainer.max_stepz", "3"], "unrecognized arguments: --trainer.max_stepz 3"),
    ],
)
def test_a_bad_value_on_the_command_line_is_one_line_naming_it(cli, capsys, overrides, line):
    assert error_line(cli, capsys, "fit", "--config", NANO, *overrides).startswith(f"error: {line}")


@pytest.mark.parametrize(
    "text, line",
    [
        ("model:\n  init_args:\n    optimizer:\n      init_args:\n        lr: fast\n", "{path}: model.init_args.optimizer.init_args.lr='fast': expected a float"),
        ("model:\n  init_args:\n    net:\n      init_args:\n        n_layerz: 3\n", "{path}: model.init_args.net.init_args.n_layerz=3: no such option of tasks.nets.GPT"),
        ("trainer:\n  max_stepz: 3\n", "{path}: trainer.max_stepz=3: no such option"),
        ("model: [1\n  b: 2\n", "--config {path}: line 2, column 4: malformed YAML, expected ',' or ']', but got ':'"),
        ("model:\n\tinit_args: {}\n", "--config {path}: line 2, column 1: malformed YAML, found character '\\t' that cannot start any token"),
        ("- a\n- b\n", "--config {path}: a YAML list, expected a mapping of keys (model, data, trainer...) to values"),
        ("just words\n", "--config {path}: a YAML str, expected a mapping of keys (model, data, trainer...) to values"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file(cli, capsys, tmp_path, text, line):
    path = write(tmp_path, "experiment.yaml", text)
    assert error_line(cli, capsys, "fit", "--config", NANO, "--config", path).startswith("error: " + line.format(path=path))


def test_a_missing_config_file_is_named(cli, capsys):
    assert error_line(cli, capsys, "fit", "--config", NANO, "--config", "configs/gpt_nanoo.yaml").startswith(
        "error: --config configs/gpt_nanoo.yaml: no such file; expected a YAML config"
    )


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "platform", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WANDB_MODE": "disabled"})  # fmt: skip


def test_from_a_shell_the_error_is_the_only_line():  # --help keeps the usage: tests/test_platform_package.py
    runs = os.path.join(ROOT, "runs")
    before = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
    out = run("fit", "--config", NANO, "--model.init_args.optimizer.init_args.lr", "fast")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: --model.init_args.optimizer.init_args.lr fast: expected a float  (see --help)"]
    assert (sorted(os.listdir(runs)) if os.path.isdir(runs) else []) == before  # no run directory was made
