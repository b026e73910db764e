"""Data-parallel (DDP) and sharded (FSDP2) training on this CPU, 2 processes over gloo, through the
trainer configs a user layers over an experiment: both end where one process with the same global
batch ends, a sharded run killed mid-way resumes from its shards, and the contrastive loss takes its
negatives from every process."""

import json
import os
import re
import sys

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset, default_collate

from core.batches import ImageBatch
from core.data import DataInfo
from core.labels import UNLABELED
from datamodules.base import DataModule
from tasks import Contrastive
from tasks.checkpoints import read_checkpoint
from tests.helpers import fit, fit_killed, launch, run_module

STEPS = 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    """Enough validation windows (about 30) for 2 batches of 8, or of 4 on each of 2 processes: with
    fewer, Lightning's DistributedSampler would repeat some to even out the processes' shares."""
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    with open(path, "w") as f:
        for i in range(40):
            f.write(json.dumps({"text": f"Document {i} tells of thing {i * 7 % 13} and thing {i * 5 % 11}. " * 8}) + "\n")
    cache = str(tmp_path_factory.mktemp("cache"))
    return ["--data.init_args.corpus", str(path), "--data.init_args.cache_dir", cache]


def arguments(runs: str, corpus: list[str], batch_size: int, *extra: str) -> list[str]:
    """gpt_nano without dropout (so that runs can agree) for STEPS steps."""
    return [
        "--config", "configs/gpt_nano.yaml", *corpus, "--run.dir", runs, "--trainer.accelerator", "cpu", "--trainer.max_steps", str(STEPS),
        "--run.checkpoint_every", "3", "--trainer.val_check_interval", str(STEPS), "--trainer.limit_val_batches", "2", "--trainer.logger", "false",
        "--model.init_args.net.init_args.dropout", "0", "--data.init_args.batch_size", str(batch_size), *extra,
    ]  # fmt: skip


ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two processes share two cores; Lightning starts the second by running the first's command again


def final_val_loss(stdout: str) -> float:
    return float(re.search(r"final val/loss: ([\d.]+)", stdout).group(1))


def final_weights(runs: str) -> dict[str, torch.Tensor]:
    checkpoint = read_checkpoint(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"))  # a file, or a directory of shards
    assert checkpoint["global_step"] == STEPS
    return checkpoint["state_dict"]


def assert_close(weights: dict, expected: dict) -> None:
    assert weights.keys() <= expected.keys() and "net.wte.weight" in weights
    far = [k for k in weights if not torch.allclose(weights[k], expected[k], rtol=1e-4, atol=1e-6)]
    assert not far, f"weights differ from the single-process run's: {far[:5]}"


@pytest.fixture(scope="module")
def single_process(corpus, tmp_path_factory) -> tuple[float, dict]:
    """The reference: one process, a batch of 8."""
    runs = str(tmp_path_factory.mktemp("single"))
    stdout = fit(*arguments(runs, corpus, 8))
    return final_val_loss(stdout), final_weights(runs)


def test_ddp_matches_one_process_with_the_same_global_batch_also_when_stopped_by_a_signal(corpus, single_process, tmp_path):
    """SIGTERM reaches the second process only, during step 4: both save step 4 together and exit 143,
    and the resumed run ends where one process ends."""
    runs = str(tmp_path / "runs")
    args = arguments(runs, corpus, 4, "--config", "configs/trainer/ddp.yaml", "--trainer.devices", "2")
    signal = json.dumps([{"class_path": "tests.helpers.SignalAt", "init_args": {"step": 3, "send": "SIGTERM", "rank": 1}}])
    launch(*args, "--trainer.callbacks", signal, returncode=143, env=ONE_THREAD)
    assert read_checkpoint(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), tensors=False)["global_step"] == 4

    stdout = launch(*args, "--ckpt_path", "last", env=ONE_THREAD)
    val_loss, weights = single_process
    assert final_val_loss(stdout) == pytest.approx(val_loss, abs=1e-4)
    assert_close(final_weights(runs), weights)


def test_fsdp2_shards_checkpoints_and_resumes(corpus, single_process, tmp_path):
    """Killed at step 4, after the sharded checkpoint of step 3, then resumed from the shards: the
    final weights are those of the single-process run, which they could not be had the resume lost
    the optimizer state, the schedule or the data position."""
    runs = str(tmp_path / "runs")
    args = arguments(runs, corpus, 4, "--config", "configs/trainer/fsdp2.yaml", "--trainer.devices", "2")
    fit_killed(*args, step=4, env=ONE_THREAD)
    shards = os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt")
    assert sorted(f for f in os.listdir(shards) if f.endswith(".distcp")) == ["__0_0.distcp", "__1_0.distcp"]  # one per process
    assert read_checkpoint(shards, tensors=False)["global_step"] == 3

    stdout = launch(*args, "--ckpt_path", "last", env=ONE_THREAD)
    val_loss, weights = single_process
    assert final_val_loss(stdout) == pytest.approx(val_loss, abs=1e-4)
    assert_close(final_weights(runs), weights)


class _Vectors(DataModule):
    """32 fixed vectors, unlabelled, through the datamodules' training loader: the processes' shares of
    a step are the single process's batch."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size, self.x = batch_size, torch.randn(32, 16, generator=torch.Generator().manual_seed(0))

    @property
    def info(self) -> DataInfo:
        return DataInfo()

    def collate(self, examples) -> ImageBatch:  # vectors in place of images: the encoder is a Linear
        x, y = default_collate(examples)
        return ImageBatch(images=x, labels=y)

    def train_dataloader(self):
        return self.train_loader(TensorDataset(self.x, torch.full((32,), UNLABELED)))


class _Encoder(nn.Linear):
    out_dim = 8


class _SGDContrastive(Contrastive):
    """Plain SGD, whose step is the gradient itself (Adam's first step is only its sign)."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _contrastive_weights(devices: int, batch_size: int) -> dict[str, torch.Tensor]:
    L.seed_everything(0)
    task = _SGDContrastive(_Encoder(16, 8), projection_dim=4)  # no augment, no dropout: the views agree
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)  # fmt: skip
    trainer.fit(task, datamodule=_Vectors(batch_size))
    return {k: v.clone() for k, v in task.state_dict().items()}


def test_contrastive_negatives_come_from_every_process(tmp_path):
    """NT-Xent over the global batch: with the projections of both processes gathered, 2 processes of 4
    take the steps 1 process of 8 takes; each process's 4 alone (2 x 3 negatives, not 2 x 7) would not.

    The 2 processes run as a user's would: this module as a command, which Lightning starts again as rank 1
    (``ddp``), not ``ddp_spawn``'s children of pytest, whose rank 1 now and then aborted on its way out
    ("terminate called without an active exception") after training had ended."""
    single = _contrastive_weights(1, 8)
    weights = tmp_path / "ddp.pt"
    run_module("tests.test_distributed", "2", "4", str(weights), env=ONE_THREAD)
    ddp = torch.load(weights)
    far = [k for k in single if not torch.allclose(single[k], ddp[k], rtol=1e-4, atol=1e-6)]
    assert not far, f"DDP contrastive weights differ from the single process's: {far}"


if __name__ == "__main__":  # python -m tests.test_distributed DEVICES BATCH_SIZE OUT: rank 0 saves the trained weights to OUT
    trained = _contrastive_weights(int(sys.argv[1]), int(sys.argv[2]))
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        torch.save(trained, sys.argv[3])
