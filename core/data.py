"""What a datamodule tells the model: one declared structure, ``DataInfo``.

A network or task declares which of its arguments come from the data in a class attribute,
``from_data = {argument: DataInfo field}``; the CLI fills each declared argument that a config leaves
``None`` from the datamodule's ``info``, and refuses one given explicitly that the data contradicts.
No other argument is ever touched, whatever its name.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Tokenizer(Protocol):
    """What the tasks need of a tokenizer (``datamodules.tokenizers`` has the implementations)."""

    vocab_size: int
    eos_id: int | None
    pad_id: int
    mask_id: int | None  # None: the tokenizer cannot serve masked LM
    special_ids: frozenset[int]  # never masked, never predicted by a fill
    ordinary_ids: list[int] | range  # the ids of ordinary tokens, a masked LM's random replacements

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> list[list[int]]: ...

    def encode_special(self, text: str) -> list[int]:
        """The ids of ``text``, in which a special token written out (``[MASK]``) is that token."""
        ...

    def decode(self, ids: list[int]) -> str: ...

    def to_str(self) -> str:
        """What a checkpoint stores, so that a later run tokenizes exactly as this one did."""
        ...


@dataclass(frozen=True)
class DataInfo:
    """What the data determines about the model.

    vocab_size: token ids are below this.
    block_size: tokens per training sequence of a language model: the network's context.
    classes: the class names, a label's index into them.
    image_shape: ``(channels, height, width)``.
    tokenizer: turns text into ids and back (None until a trained tokenizer exists).
    """

    vocab_size: int | None = None
    block_size: int | None = None
    classes: tuple[str, ...] = ()
    image_shape: tuple[int, int, int] | None = None
    tokenizer: Tokenizer | None = None

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) or None

    @property
    def channels(self) -> int | None:
        return self.image_shape[0] if self.image_shape else None

    @property
    def image_size(self) -> int | None:
        return self.image_shape[1] if self.image_shape else None

    def value(self, field: str):
        """A field or derived property by name, as ``from_data`` declarations name them."""
        if field not in FILLABLE:
            raise ValueError(f"from_data names {field!r}: expected one of {', '.join(FILLABLE)}")
        return getattr(self, field)

    @staticmethod
    def agrees(field: str, given, data) -> bool:
        """Whether an explicit network argument fits the data: a vocabulary may be larger than the data's
        (embeddings padded to a multiple of 64 are faster), every other value must be the data's own."""
        return given >= data if field == "vocab_size" else given == data


FILLABLE = ("vocab_size", "block_size", "num_classes", "channels", "image_size")  # the sizes a from_data declaration may name


@runtime_checkable
class HasDataInfo(Protocol):
    """A datamodule of this platform: ``datamodules.base.DataModule`` implements it."""

    @property
    def info(self) -> DataInfo: ...
