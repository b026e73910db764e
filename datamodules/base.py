"""What every datamodule of the platform shares: the ``info`` it tells the model, and its loaders."""

import lightning as L
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
    """

    batch_size: int
    num_workers: int = 0

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
        return eval_loader(dataset, self.batch_size, num_workers=self.num_workers, collate_fn=self.collate)
