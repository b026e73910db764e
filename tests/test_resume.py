"""A run killed with SIGKILL and resumed with --ckpt_path last ends bit-identical to one that was
never interrupted: weights, optimizer, schedule, data position and RNG states all carry over."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """Forty short documents: with 8 windows of 64 bytes a batch, an epoch is 6 steps, so 20 steps
    cross three epoch boundaries."""
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    with open(path, "w") as f:
        for i in range(40):
            f.write(json.dumps({"text": f"Document {i} tells of thing {i * 7 % 13} and thing {i * 5 % 11}. " * 2}) + "\n")
    return str(path)


def fit(runs: str, corpus: str, cache: str, *extra: str, expect_kill: bool = False) -> None:
    args = [
        sys.executable, "-m", "platform", "fit", "--config", "configs/gpt_nano.yaml",
        "--data.init_args.corpus", corpus, "--data.init_args.val_fraction", "0.1", "--data.init_args.cache_dir", cache,
        "--trainer.max_steps", "20", "--run.checkpoint_every", "5", "--trainer.val_check_interval", "10",
        "--run.dir", runs, "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", *extra,
    ]  # fmt: skip
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})
    if expect_kill:
        assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    else:
        assert out.returncode == 0, out.stderr[-2000:]


def weights(runs: str) -> dict:
    ckpt = torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)
    assert ckpt["global_step"] == 20
    return ckpt["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    """The final weights of an uninterrupted run, per number of DataLoader workers (workers draw
    their base seed from the main process's RNG, so they are part of the run's identity)."""
    cache, done = str(tmp_path_factory.mktemp("cache")), {}

    def run(workers: str) -> dict:
        if workers not in done:
            runs = str(tmp_path_factory.mktemp("straight"))
            fit(runs, corpus, cache, "--data.init_args.num_workers", workers)
            done[workers] = weights(runs)
        return done[workers]

    return run


@pytest.mark.parametrize(
    "kill_at, workers",
    [(13, "0"), (7, "2")],  # resume mid-epoch 2 from step 10; resume from step 5, with DataLoader workers
    ids=["mid-epoch", "with-workers"],
)
def test_killed_run_resumes_bit_identical(corpus, uninterrupted, tmp_path, kill_at, workers):
    runs, cache = str(tmp_path / "runs"), str(tmp_path / "cache")
    kill = json.dumps([{"class_path": "tests.helpers.KillAtStep", "init_args": {"step": kill_at}}])
    fit(runs, corpus, cache, "--data.init_args.num_workers", workers, "--trainer.callbacks", kill, expect_kill=True)
    fit(runs, corpus, cache, "--data.init_args.num_workers", workers, "--ckpt_path", "last")
    resumed, expected = weights(runs), uninterrupted(workers)
    assert resumed.keys() == expected.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], expected[k])]
    assert not different, f"weights differ after resume: {different}"
