"""The batches datamodules yield and tasks consume: one dataclass per kind, fields named, so that a task
dispatches on what a batch is, never on how long a tuple is. Lightning moves dataclasses to the device
field by field and finds their batch size the same way."""

from dataclasses import dataclass

import torch


@dataclass
class TokenBatch:
    """Language modelling: predict ``targets[b, t]`` from ``input_ids[b, : t + 1]``.

    input_ids: ``(B, T)`` token ids.
    targets: ``(B, T)`` the next token ids, ``core.labels.IGNORE`` where nothing is scored (a prompt, padding).
    """

    input_ids: torch.Tensor
    targets: torch.Tensor

    @property
    def size(self) -> int:
        return len(self.input_ids)

    @property
    def tokens(self) -> int:
        """Tokens the network reads, padding included."""
        return self.input_ids.numel()


@dataclass
class TextBatch:
    """Labelled texts, padded on the right to the longest of the batch.

    input_ids: ``(B, T)`` token ids, the pad id after each text.
    mask: ``(B, T)`` bool, True at the real tokens.
    labels: ``(B,)`` class indices, ``core.labels.UNLABELED`` where an example has none.
    """

    input_ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor

    @property
    def size(self) -> int:
        return len(self.input_ids)

    @property
    def tokens(self) -> int:
        return self.input_ids.numel()


@dataclass
class ImageBatch:
    """Images with their labels.

    images: ``(B, C, H, W)`` floats in [-1, 1].
    labels: ``(B,)`` class indices, ``core.labels.UNLABELED`` where an image has none.
    """

    images: torch.Tensor
    labels: torch.Tensor

    @property
    def size(self) -> int:
        return len(self.images)

    @property
    def tokens(self) -> int:
        return 0


Batch = TokenBatch | TextBatch | ImageBatch
