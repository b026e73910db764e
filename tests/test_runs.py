import os
import time

import pytest

from litlab.runs import new_run_dir, resolve_ckpt_path, run_dir_of


def touch(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return str(path)


def test_fresh_runs_take_the_next_free_directory(tmp_path):
    runs = str(tmp_path)
    assert new_run_dir(runs, "gpt") == f"{runs}/gpt"
    os.makedirs(f"{runs}/gpt")
    os.makedirs(f"{runs}/gpt-2")
    os.makedirs(f"{runs}/gpt_other")  # another name, not a run of "gpt"
    assert new_run_dir(runs, "gpt") == f"{runs}/gpt-3"


def test_last_is_the_newest_checkpoint_of_the_newest_run(tmp_path):
    runs = str(tmp_path)
    touch(f"{runs}/gpt/checkpoints/last.ckpt")
    os.makedirs(f"{runs}/gpt-2")  # a run that died before its first checkpoint
    assert resolve_ckpt_path("last", runs, "gpt") == f"{runs}/gpt/checkpoints/last.ckpt"
    time.sleep(0.01)
    hpc = touch(f"{runs}/gpt/hpc_ckpt_1.ckpt")  # written by Lightning on a SLURM preemption signal
    assert resolve_ckpt_path("last", runs, "gpt") == hpc
    assert resolve_ckpt_path(f"{runs}/gpt", runs, "ignored") == hpc
    assert run_dir_of(hpc) == run_dir_of(f"{runs}/gpt/checkpoints/last.ckpt") == f"{runs}/gpt"
    with pytest.raises(FileNotFoundError, match="a directory without checkpoints/last.ckpt"):
        resolve_ckpt_path(f"{runs}/gpt-2", runs, "gpt")
