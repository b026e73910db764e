"""What every datamodule of the platform shares: the ``info`` it tells the model, its loaders, and its test split."""

import dataclasses

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from core.batches import Batch
from core.data import DataInfo
from datamodules.loaders import eval_loader, train_loader


class DataModule(L.LightningDataModule):
    """Base of the datamodules. A subclass sets ``batch_size`` and ``num_workers``, builds its datasets
    in ``setup``, and implements:

    - ``info``: a ``core.data.DataInfo``, what the data determines about the model (the CLI fills the
      network arguments declared for it, tasks check that they fit);
    - ``collate(examples)``: a list of dataset items -> one batch of ``core.batches``.

    A dataset may say where each of its items comes from in ``source_index`` (an array, the item's position
    in the source); the batches of ``eval_loader`` carry it as ``index`` (positions in the dataset without
    one), and ``describe(index)`` turns it into what ``predict`` writes beside each prediction.
    """

    batch_size: int
    num_workers: int = 0
    test_fraction: float = 0.0

    @property
    def info(self) -> DataInfo:
        raise NotImplementedError(f"{type(self).__name__} must say what its data determines: an `info` property")

    def collate(self, examples: list) -> Batch:
        raise NotImplementedError(f"{type(self).__name__} must turn a list of examples into a batch: a `collate` method")

    def reference_loss(self) -> float | None:
        """The validation loss of a model that learned no more than how often each target occurs, where
        that means something (language models); the end-of-fit summary compares with it."""
        return None

    def train_loader(self, dataset: Dataset, drop_last: bool = True) -> StatefulDataLoader:
        return train_loader(self, dataset, self.batch_size, drop_last=drop_last, num_workers=self.num_workers, collate_fn=self.collate)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        return eval_loader(Indexed(dataset), self.batch_size, num_workers=self.num_workers, collate_fn=self.collate_indexed)

    def collate_indexed(self, examples: list[tuple[object, int]]) -> Batch:
        """``collate`` of ``Indexed`` items: the batch, with where each example comes from as its ``index``."""
        items, index = zip(*examples)
        return dataclasses.replace(self.collate(list(items)), index=torch.tensor(index))

    def describe(self, index: list[int]) -> dict[str, list]:
        """The inputs at these source positions (``batch.index``), as columns of what ``predict`` writes:
        ``{"text": [...]}``, ``{"path": [...]}``; none by default."""
        return {}

    def check_test_split(self, examples: int, stage: str, unit: str) -> None:
        """Refuse, in one line, to test or predict on an empty test split: ``test_fraction`` 0, or too few ``unit``
        (documents, records, images) for it to hold any beside validation."""
        if examples:
            return
        stage = getattr(stage, "value", stage)  # Lightning's TrainerFn: "test", "predict"
        if not self.test_fraction:
            raise ValueError(f"{stage}: data.test_fraction=0 holds out no test split: expected a test_fraction in (0, 1), such as 0.05")
        raise ValueError(
            f"{stage}: the test split is empty, data.test_fraction={self.test_fraction} of these {unit} leaves none beside validation's: "
            "expected a larger test_fraction"
        )


class Indexed(Dataset):
    """The items of ``dataset`` with where each comes from: ``(item, index)``, ``index`` its ``source_index``
    entry, or, for a dataset without one, its position in the dataset."""

    def __init__(self, dataset: Dataset):
        self.dataset, self.source_index = dataset, getattr(dataset, "source_index", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[object, int]:
        return self.dataset[i], int(self.source_index[i]) if self.source_index is not None else i
