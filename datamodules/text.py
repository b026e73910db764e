"""Text corpora for language modelling: documents -> tokens (cached) -> windows of block_size+1."""

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from core.batches import TokenBatch
from core.checks import non_negative, positive, positive_number
from core.data import DataInfo
from datamodules.base import DataModule
from datamodules.corpora import folder_labels, read_documents, resolve_files
from datamodules.splits import check_held_out
from datamodules.token_cache import (
    TEST,
    TOKEN_BYTES,
    TRAIN,
    VAL,
    Split,
    TokenFile,
    bpe_sample,
    cache_problem,
    file_digest,
    plan_split,
    progress,
    read_meta,
    size_problem,
    write_tokens,
)
from datamodules.tokenizers import NAMES, BPETokenizer, SavesTokenizer, load_tokenizer, tokenizer_vocab_size

# bump when the token files' layout changes (2: meta.json records sizes and checksums; 3: the BPE reserves [MASK]..., BBC News
# splits by topic; 4: a test split, test.bin)
CACHE_FORMAT = 4
SPLITS = ((TRAIN, "train"), (VAL, "val"), (TEST, "test"))


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
        return max(0, self.n_tokens - 1) // self.block_size

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
        bpe_sample_mb: the most training text the BPE is trained on: beyond it, an even sample of the
            documents (one in k), which the build's summary line names.
        block_size: tokens per training window: the network's context (``info.block_size``).
        batch_size: windows per batch (per device).
        val_fraction, test_fraction: shares of documents held out for validation and for testing, chosen by
            ``split_seed`` (``datamodules.splits.held_out``: the held-out set depends on their sum alone);
            ``bbc_news`` holds out those shares of each topic, the very articles ``LabeledTextDataModule``
            validates and tests its classifiers on at the same fractions and ``split_seed``: pretraining never
            reads them. A corpus of a single document holds out its last ``val_fraction + test_fraction`` of
            characters instead, validation's part first. ``test_fraction`` 0: no test split (``test`` and
            ``predict`` refuse to run).
        num_workers: DataLoader worker processes.
        cache_dir: where token files are cached, keyed by a hash of the inputs and tokenizer.
    """

    def __init__(
        self,
        corpus: str | list[str] = "bbc_news",
        text_field: str = "text",
        tokenizer: str = "gpt2",
        bpe_vocab_size: int = 8192,
        bpe_sample_mb: float = 100.0,
        block_size: int = 256,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        num_workers: int = 0,
        cache_dir: str = ".cache/tokens",
    ):
        super().__init__()
        positive(self, block_size=block_size, batch_size=batch_size)
        positive_number(self, bpe_sample_mb=bpe_sample_mb)
        non_negative(self, num_workers=num_workers)
        check_held_out(val_fraction, test_fraction)
        self.tokenizer = None if tokenizer == "bpe" else load_tokenizer(tokenizer)  # "bpe" is trained in prepare_data
        self.vocab_size = self.tokenizer.vocab_size if self.tokenizer else tokenizer_vocab_size(tokenizer, bpe_vocab_size)
        self.files, self.format = resolve_files(corpus)  # a missing file fails here, before any run directory is made
        self.corpus, self.text_field, self.tokenizer_name, self.bpe_vocab_size = corpus, text_field, tokenizer, bpe_vocab_size
        self.bpe_sample_mb = bpe_sample_mb
        self.block_size, self.batch_size, self.num_workers = block_size, batch_size, num_workers
        self.val_fraction, self.test_fraction, self.split_seed, self.cache_dir = val_fraction, test_fraction, split_seed, cache_dir
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
            "bpe_sample_mb": self.bpe_sample_mb if self.tokenizer_name == "bpe" else None,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
        }
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        return os.path.join(self.cache_dir, digest)

    @property
    def cache_files(self) -> tuple[str, ...]:
        """The files of a cache, besides meta.json: the token files, and a trained BPE's tokenizer."""
        token_files = tuple(f"{name}.bin" for _, name in SPLITS)
        return (*token_files, "tokenizer.json") if self.tokenizer_name == "bpe" else token_files

    def prepare_data(self) -> None:
        """Tokenize the corpus into ``train.bin``/``val.bin``/``test.bin`` (uint32) unless the cache has them.

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

    def documents(self, on_bytes=None):
        """A fresh stream of the corpus's documents (``read_documents``), telling ``on_bytes`` of the bytes read."""
        return read_documents(self.files, self.format, self.text_field, on_bytes)

    def split(self, documents: Iterable[str] | None = None) -> Split:
        """Where each document goes (``token_cache.plan_split``): held out by topic for a labelled corpus."""
        documents = self.documents() if documents is None else documents
        split = plan_split(documents, folder_labels(self.corpus, self.files), self.val_fraction, self.split_seed, self.test_fraction)
        if not len(split.where):
            raise ValueError(f"corpus {self.corpus!r}: no text in its {len(self.files)} file(s)")
        return split

    def _build(self, path: str) -> None:
        start, total = time.perf_counter(), sum(os.path.getsize(f) for f in self.files)

        def passing(description: str):  # a fresh stream of the corpus, shown as a progress bar on a terminal
            bar = progress(description, total)
            return bar, self.documents(bar.update)

        bar, docs = passing("reading the corpus")
        with bar:
            split = self.split(docs)
        tmp = f"{path}.tmp-{os.getpid()}"  # written aside, then renamed: a killed run leaves no half cache
        os.makedirs(tmp, exist_ok=True)
        try:
            tokenizer, trained_on = self.tokenizer, None
            if tokenizer is None:  # the trainer shows its own progress on a terminal
                sample, count, trained_on = bpe_sample(self.documents(), split, self.bpe_sample_mb)
                tokenizer = BPETokenizer.train(sample, self.bpe_vocab_size, length=count)
                tokenizer.save(os.path.join(tmp, "tokenizer.json"))
            files = {where: TokenFile(os.path.join(tmp, f"{name}.bin"), name, self.vocab_size, self.tokenizer_name) for where, name in SPLITS}
            bar, docs = passing("tokenizing")
            try:
                with bar:
                    write_tokens(docs, split, tokenizer, files)
            finally:
                written = {where: file.close() for where, file in files.items()}
            meta = {
                "corpus": self.corpus,
                "tokenizer": self.tokenizer_name,
                "documents": len(split.where),
                "copies_left_out": split.copies,
                "bytes": sum(split.chars(where) for where, _ in SPLITS),
            }
            for where, name in SPLITS:
                meta[f"{name}_tokens"] = files[where].tokens
                meta[f"{name}_documents"] = split.documents(where)
            meta["files"] = {f"{name}.bin": written[where] for where, name in SPLITS}
            if trained_on:
                meta["bpe_trained_on"] = trained_on
                bpe_file = os.path.join(tmp, "tokenizer.json")
                meta["files"]["tokenizer.json"] = {"bytes": os.path.getsize(bpe_file), "sha256": file_digest(bpe_file)}
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
        seconds = meta["seconds"]
        bpe = f"; the BPE trained on {trained_on}" if trained_on else ""
        print(
            f"Tokenized {meta['documents']:,} documents ({total / 1e6:.1f} MB) into {path} in {seconds} s "
            f"({total / 1e6 / max(seconds, 1e-9):.1f} MB/s){bpe}",
            flush=True,
        )

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
        self.test_set = TokenWindows(os.path.join(path, "test.bin"), self.block_size)
        needed = {"train": self.train_set, "val": self.val_set}
        if stage in ("test", "predict"):  # the test split alone: a fit never needs it
            self.check_test_split(meta.get("test_documents", 0), stage, "documents")
            needed = {"test": self.test_set}
        for split, dataset in needed.items():
            if len(dataset) == 0:
                raise ValueError(
                    f"data.block_size={self.block_size} is too large for the {split} split "
                    f"({dataset.n_tokens} tokens): expected at most {dataset.n_tokens - 1}"
                )

    def reference_loss(self) -> float:
        """The unigram entropy (nats/token) of the validation tokens: the loss of a model that knows
        only how often each token occurs, and nothing of context."""
        tokens, counts = np.memmap(self.val_set.path, dtype=np.uint32, mode="r"), np.zeros(self.vocab_size, dtype=np.int64)
        for start in range(0, len(tokens), 1 << 24):  # a chunk at a time: bincount copies to int64
            counts += np.bincount(tokens[start : start + (1 << 24)], minlength=self.vocab_size)
        p = counts[counts > 0] / len(tokens)
        return float(-(p * np.log(p)).sum())

    def collate(self, windows: list[torch.Tensor]) -> TokenBatch:
        tokens = torch.stack(windows)
        return TokenBatch(input_ids=tokens[:, :-1], targets=tokens[:, 1:])

    def train_dataloader(self) -> StatefulDataLoader:
        return self.train_loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        """The test documents' windows; a batch's ``index`` is each window's position in ``test.bin`` (window i
        starts at token ``i * block_size``)."""
        return self.eval_loader(self.test_set)

    predict_dataloader = test_dataloader
