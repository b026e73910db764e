"""The batches datamodules yield and tasks consume: one dataclass per kind, fields named, so that a task
dispatches on what a batch is, never on how long a tuple is. Lightning moves dataclasses to the device
field by field and finds their batch size the same way.

Batches of validation, test and prediction also say where each example comes from, ``index``: its position in
the data's source (a text's record, an image's row, a prompt/response pair's), or, where the source has no
such unit (a window of a token file), in the split; the datamodule's ``describe(index)`` names those inputs.
Training batches leave it ``None``."""

from dataclasses import dataclass

import torch


@dataclass
class TokenBatch:
    """Language modelling: predict ``targets[b, t]`` from ``input_ids[b, : t + 1]``.

    input_ids: ``(B, T)`` token ids.
    targets: ``(B, T)`` the next token ids, ``core.labels.IGNORE`` where nothing is scored (a prompt, padding).
    prompt_lengths: ``(B,)`` the tokens of each example's prompt, for prompt/response pairs (the response
        follows it, then the end-of-text token and padding); None for windows of a corpus.
    index: ``(B,)`` where each example comes from (see the module's docstring); None in training.
    """

    input_ids: torch.Tensor
    targets: torch.Tensor
    prompt_lengths: torch.Tensor | None = None
    index: torch.Tensor | None = None

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
    index: ``(B,)`` each text's record in its source; None in training.
    """

    input_ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None = None

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
    index: ``(B,)`` each image's row in its source; None in training.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.images)

    @property
    def tokens(self) -> int:
        return 0


Batch = TokenBatch | TextBatch | ImageBatch
