"""The loaders every datamodule uses: for training, shuffled the same way on one device or many and
resumable; for evaluation, in order."""

import os

import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler


def train_loader(datamodule, dataset: Dataset, batch_size: int, drop_last: bool = True, num_workers: int = 0, **kwargs) -> StatefulDataLoader:
    """A shuffling loader whose order is a permutation drawn from the run's seed (``seed_everything``),
    split across the data-parallel processes: with W processes of ``batch_size`` B, step k trains on
    the examples a single process with batch W·B trains on at step k, so that a run's data does not
    depend on how many devices train it. The loader is torchdata's StatefulDataLoader, whose position
    Lightning saves in checkpoints: a resumed run goes on with the next batch."""
    if drop_last and len(dataset) < batch_size:  # not even one batch: every epoch would be empty
        raise ValueError(f"data.batch_size={batch_size} exceeds the {len(dataset)} training examples: expected at most {len(dataset)}")
    trainer = datamodule.trainer
    shard = (getattr(trainer.strategy, "distributed_sampler_kwargs", None) if trainer else None) or {"num_replicas": 1, "rank": 0}
    # Lightning keeps a DistributedSampler it is given and calls its set_epoch at every epoch
    sampler = ResumableShuffle(dataset, batch_size, drop_last, **shard, shuffle=True, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)))
    # each new iterator draws its workers' base seed from ``generator``: from the global RNG without one,
    # which would make the training's random stream (dropout...) depend on when loaders start
    generator = torch.Generator().manual_seed(sampler.seed)
    return StatefulDataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers, persistent_workers=num_workers > 0,
        generator=generator, **kwargs,
    )  # fmt: skip


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, **kwargs) -> DataLoader:
    """Validation, test and prediction: every example once, in order."""
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, **kwargs)


class ResumableShuffle(StatefulDistributedSampler):
    """torchdata's resumable DistributedSampler, with the epoch in its state: Lightning sets the epoch at
    the start of each, but a run resumed mid-epoch builds its iterator, which draws the permutation,
    before that. A run resumed at an epoch's end starts the next epoch from its first example."""

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool, **kwargs):
        super().__init__(dataset, drop_last=drop_last, **kwargs)
        self.last_batch_size = batch_size if drop_last else 1  # the fewest examples that still make a batch

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epoch = state_dict["epoch"]
        if state_dict["yielded"] + self.last_batch_size <= self.num_samples:  # else the epoch was over
            super().load_state_dict(state_dict)
