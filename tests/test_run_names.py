"""Run names are one path component of letters, digits, '-', '_' and '.' (not '.' or '..'): anything
else is refused in one line, before anything is created, so a run never writes outside run.dir."""

import os
import shutil

import pytest

from litlab.runs import check_run_name, new_run_dir, resolve_ckpt_path, run_dir, run_dirs
from tests.conftest import ROOT
from tests.helpers import error_line

EXPECTED = "expected one path component of letters, digits, '-', '_' and '.' (not '.' or '..')"
GOOD = ["gpt_small", "gpt2_124m", "my.experiment-v2", "A-1_b.c", "..x", "x..", ".hidden"]
BAD = ["../../x", "a/b", "..", ".", "a b", "", "/abs/run", "a\\b", "a\nb", "x/", "./x", "café", "a:b", "a*b", "~"]
# should a bad name get through, the run it starts is short
NANO = ["--config", "configs/gpt_nano.yaml", "--trainer.logger", "false", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"]


def tree(root) -> set[str]:
    """Every file and directory under ``root``, relative to it."""
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


@pytest.mark.parametrize("name", GOOD)
def test_a_good_name_is_one_directory_inside_the_runs_dir(tmp_path, name):
    runs = str(tmp_path / "runs")
    assert check_run_name(name) == name
    assert run_dir(runs, name) == new_run_dir(runs, name) == os.path.join(runs, name)
    assert os.path.dirname(run_dir(runs, name)) == runs
    assert run_dirs(runs, name) == []


@pytest.mark.parametrize("name", BAD)
def test_a_bad_name_is_refused_in_one_line_naming_it(name):
    with pytest.raises(ValueError) as refused:
        check_run_name(name)
    message = str(refused.value)
    assert message.startswith(f"run.name={name!r}: {EXPECTED}")
    assert "--run.name" in message and "\n" not in message


def test_not_a_string_is_refused_too():
    with pytest.raises(ValueError, match=r"^run.name=None: expected one path component"):
        check_run_name(None)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "/abs/run", ""])
def test_every_path_through_runs_checks_the_name_before_touching_anything(tmp_path, name):
    runs = tmp_path / "runs"
    (runs / "a" / "b" / "checkpoints").mkdir(parents=True)
    (runs / "a" / "b" / "checkpoints" / "last.ckpt").touch()  # what `--run.name a/b` used to write
    before = tree(tmp_path)
    calls = [
        lambda: run_dir(str(runs), name),
        lambda: run_dirs(str(runs), name),
        lambda: run_dirs(str(tmp_path / "none"), name),  # checked even where there are no runs yet
        lambda: new_run_dir(str(runs), name),
        lambda: resolve_ckpt_path("last", str(runs), name),  # a ValueError, not "does not exist"
        lambda: resolve_ckpt_path(str(runs / "a" / "b"), str(runs), name),  # the CLI falls back on runs/<name>
    ]
    for call in calls:
        with pytest.raises(ValueError, match=EXPECTED.replace("(", r"\(").replace(")", r"\)")):
            call()
    assert tree(tmp_path) == before


def untouched(tmp_path, name: str, allowed: set[str] = frozenset()) -> None:
    """Nothing was written under tmp_path (the runs dir included, which need not even exist), nor where
    the name would have pointed outside it."""
    runs = tmp_path / "runs"
    assert tree(tmp_path) - allowed <= {"runs"}
    assert not runs.exists() or not os.listdir(runs)
    if name:
        assert not os.path.lexists(os.path.normpath(os.path.join(runs, name)) + "/checkpoints")
        assert not os.path.lexists(os.path.join(runs, name, "config.yaml"))


@pytest.mark.parametrize("name", [
    "../../x", "a/b", "..", ".", "a b", "ABSOLUTE", "",
])  # fmt: skip
def test_the_cli_refuses_a_bad_run_name_before_creating_anything(cli, capsys, tmp_path, name):
    if name == "ABSOLUTE":
        name = str(tmp_path / "elsewhere" / "run")  # os.path.join(runs, name) would be this very path
    line = error_line(cli, capsys, "fit", *NANO, "--run.name", name)
    assert line.startswith(f"error: run.name={name!r}: {EXPECTED}"), line
    untouched(tmp_path, name)
    assert not os.path.lexists(tmp_path.parent / "x")  # where runs/../../x points


def test_ckpt_path_last_refuses_a_bad_run_name_rather_than_looking_for_it(cli, capsys, tmp_path):
    line = error_line(cli, capsys, "fit", *NANO, "--run.name", "a/b", "--ckpt_path", "last")
    assert line.startswith(f"error: run.name='a/b': {EXPECTED}"), line
    untouched(tmp_path, "a/b")


def test_a_config_file_name_that_is_no_run_name_asks_for_one(cli, capsys, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    config = configs / "my.experiment v2.yaml"
    shutil.copyfile(os.path.join(ROOT, "configs", "gpt_nano.yaml"), config)
    line = error_line(cli, capsys, "fit", "--config", str(config), *NANO[2:])
    assert line.startswith(f"error: run.name='my.experiment v2': {EXPECTED}"), line
    assert "set --run.name" in line
    untouched(tmp_path, "my.experiment v2", allowed={"configs", "configs/my.experiment v2.yaml"})


def test_validate_refuses_a_bad_run_name(cli, capsys, tmp_path):
    line = error_line(cli, capsys, "validate", *NANO, "--run.name", "../x")
    assert line.startswith(f"error: run.name='../x': {EXPECTED}"), line
    untouched(tmp_path, "../x")
