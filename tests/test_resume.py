"""A run killed with SIGKILL and resumed with --ckpt_path last ends bit-identical to one that was
never interrupted: weights, optimizer, schedule, data position and RNG states all carry over. (Every
config, each task with its own randomness, resumes bit-identically in tests/test_cli.py.)"""

import json
import os

import pytest
import torch

from datamodules import TextDataModule
from tests.helpers import fit, fit_killed

STEPS_PER_EPOCH = 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """Forty short documents: with 8 windows of 64 bytes a batch, an epoch is 5 steps, so 20 steps
    cross three epoch boundaries."""
    folder = tmp_path_factory.mktemp("corpus")
    path = folder / "docs.jsonl"
    with open(path, "w") as f:
        for i in range(40):
            f.write(json.dumps({"text": f"Document {i} tells of thing {i * 7 % 13} and thing {i * 5 % 11}. " * 2}) + "\n")
    data = TextDataModule(corpus=str(path), tokenizer="bytes", block_size=64, batch_size=8, cache_dir=str(folder / "cache"))
    data.prepare_data()
    data.setup("fit")
    assert len(data.train_dataloader()) == STEPS_PER_EPOCH
    return str(path)


def arguments(runs: str, config: str, *extra: str) -> list[str]:
    """20 steps of ``config`` into ``runs``, validating at step 10 (and at the end)."""
    return [
        "--config", f"configs/{config}.yaml", "--trainer.max_steps", "20", "--trainer.val_check_interval", "10",
        "--trainer.check_val_every_n_epoch", "null", "--trainer.limit_val_batches", "2", "--run.dir", runs, "--trainer.logger", "false", *extra,
    ]  # fmt: skip


def text_data(corpus: str, cache: str) -> list[str]:
    return ["--data.init_args.corpus", corpus, "--data.init_args.val_fraction", "0.1", "--data.init_args.cache_dir", cache]


def weights(runs: str, name: str = "gpt_nano") -> dict:
    ckpt = torch.load(os.path.join(runs, name, "checkpoints", "last.ckpt"), weights_only=True)
    assert ckpt["global_step"] == 20
    return ckpt["state_dict"]


def assert_identical(resumed: dict, expected: dict) -> None:
    assert resumed.keys() == expected.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], expected[k])]
    assert not different, f"weights differ after resume: {different}"


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    """The final weights of an uninterrupted run, per number of DataLoader workers (workers draw
    their base seed from the main process's RNG, so they are part of the run's identity)."""
    cache, done = str(tmp_path_factory.mktemp("cache")), {}

    def run(workers: str) -> dict:
        if workers not in done:
            runs = str(tmp_path_factory.mktemp("straight"))
            fit(*arguments(runs, "gpt_nano", *text_data(corpus, cache), "--data.init_args.num_workers", workers))
            done[workers] = weights(runs)
        return done[workers]

    return run


@pytest.mark.parametrize(
    "checkpoint_every, kill_at, during_save, workers",
    [
        (4, 14, False, "0"),  # resumes from step 12, mid-epoch
        (5, 13, False, "0"),  # resumes from step 10, an epoch's end
        (4, 7, False, "2"),  # with DataLoader workers: resumes from step 4, mid-epoch
        (5, 10, True, "0"),  # killed while saving step 10 (just after validating): resumes from step 5
    ],
    ids=["mid-epoch", "epoch-boundary", "with-workers", "during-save"],
)
def test_killed_run_resumes_bit_identical(corpus, uninterrupted, tmp_path, checkpoint_every, kill_at, during_save, workers):
    """The crash is real (SIGKILL, in a subprocess); the resume runs in this process."""
    runs = str(tmp_path / "runs")
    args = arguments(runs, "gpt_nano", *text_data(corpus, str(tmp_path / "cache")), "--run.checkpoint_every", str(checkpoint_every),
                     "--data.init_args.num_workers", workers)  # fmt: skip
    fit_killed(*args, step=kill_at, during_save=during_save)
    resume_from = torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)["global_step"]
    assert resume_from == (kill_at - 1) // checkpoint_every * checkpoint_every
    fit(*args, "--ckpt_path", "last")
    assert_identical(weights(runs), uninterrupted(workers))


def test_an_interrupted_write_leaves_the_previous_checkpoint_whole(cli, monkeypatch):
    """Checkpoints are written to a temporary file and renamed into place: a write cut short never
    replaces last.ckpt with a torn file."""
    from fsspec.implementations.local import LocalFileOpener

    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "10", "--trainer.logger", "false")
    last = os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt")
    before = open(last, "rb").read()

    def torn_write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(LocalFileOpener, "write", torn_write)
    with pytest.raises(OSError, match="disk full"):
        cli("fit", "--config", "configs/gpt_nano.yaml", "--ckpt_path", "last", "--trainer.max_steps", "20", "--trainer.logger", "false")
    assert open(last, "rb").read() == before
    assert torch.load(last, weights_only=True)["global_step"] == 10
