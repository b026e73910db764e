"""A corpus tokenized once into token files on disk, streamed: memory holds a chunk of documents, never the corpus.

Building a cache reads the documents in passes, each a fresh stream from the files:
1. the split: each document's length, label and a hash of its text; from them, which documents are
   held out for validation and for testing (``datamodules.splits.held_out``) and which are copies of
   held-out ones (left out of train);
2. a trained BPE's sample: the training documents, or one in k of them beyond ``bpe_sample_mb``;
3. the tokens: chunks of documents encoded (``encode_batch``, parallel) and appended to ``train.bin``,
   ``val.bin`` and ``test.bin`` (uint32), in the corpus's order, checksummed as they are written.
A terminal shows each pass as a progress bar (MB/s, ETA); a log gets one summary line.
"""

import hashlib
import json
import math
import os
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from datamodules.splits import held_out, share_of_held_out

TOKEN_BYTES = np.dtype(np.uint32).itemsize
TRAIN, VAL, COPY, TEST = 0, 1, 2, 3  # where a document goes; COPY: a copy of a held-out (val or test) document, in no split
CHUNK_CHARS = 1 << 21  # documents encoded at a time: ~2 M characters, some 60 MB of encodings at the peak

REFRESH_S = 0.1  # a progress bar redraws at most this often


def progress(description: str, total_bytes: int) -> tqdm:
    """A bar of the corpus's bytes read, with MB/s and an ETA, on a terminal; nothing in a log (not a tty)."""
    bar = dict(unit="B", unit_scale=True, mininterval=REFRESH_S, leave=False)  # cleared when done: the summary line follows
    return tqdm(total=total_bytes, desc=description, disable=None, file=sys.stderr, **bar)


@dataclass
class Split:
    """Where each non-blank document of the corpus goes, from one pass over it."""

    where: np.ndarray  # TRAIN, VAL, TEST or COPY, per non-blank document
    lengths: np.ndarray  # characters of each
    tail: int | None = None  # a corpus of one document: the character where its held-out tail begins (validation's part)
    test_start: int | None = None  # and where the tail's test part begins (its length: no test part)

    @property
    def copies(self) -> int:
        return int((self.where == COPY).sum())

    def tail_parts(self) -> dict[int, tuple[int, int]]:
        """A corpus of one document: the characters ``(start, end)`` of each split's part of it."""
        return {TRAIN: (0, self.tail), VAL: (self.tail, self.test_start), TEST: (self.test_start, int(self.lengths[0]))}

    def chars(self, split: int) -> int:
        if self.tail is not None:
            start, end = self.tail_parts().get(split, (0, 0))
            return end - start
        return int(self.lengths[self.where == split].sum())

    def documents(self, split: int) -> int:
        if self.tail is not None:
            return int(split in (TRAIN, VAL) or self.chars(split) > 0)
        return int((self.where == split).sum())


def is_text(doc: str) -> bool:
    """A document with something to train on: blank ones are left out of both splits."""
    return bool(doc) and not doc.isspace()


def plan_split(documents: Iterable[str], labels: list[str] | None, val_fraction: float, seed: int, test_fraction: float = 0.0) -> Split:
    """Hold out ``val_fraction + test_fraction`` of the documents (of each label, for a labelled corpus:
    ``labels[i]`` is the i-th document's), chosen by ``seed`` and split into validation and test
    (``datamodules.splits.held_out``), and mark the copies of held-out documents: BBC News has articles
    twice, under two names, and a copy of a held-out article must not be trained on. A corpus of a single
    document holds out its last ``val_fraction + test_fraction`` of characters instead: validation's part,
    then test's. Keeps 24 bytes per document."""
    hashes, lengths, codes, names = array("q"), array("q"), array("q"), {}
    for i, doc in enumerate(documents):
        if is_text(doc):
            hashes.append(hash(doc))  # equal texts, equal hashes; 64 bits: a collision is vanishingly rare
            lengths.append(len(doc))
            codes.append(names.setdefault(labels[i] if labels else "", len(names)))
    lengths_ = np.frombuffer(lengths, dtype=np.int64)
    if len(hashes) <= 1:  # none: the caller says so; one: its tail is held out
        return single_document_split(lengths_, val_fraction, test_fraction)
    rank = np.argsort(np.argsort(list(names)))  # classes numbered in sorted order of their names, as held_out sorts them
    val, test, _ = held_out(rank[np.frombuffer(codes, dtype=np.int64)], val_fraction, seed, test_fraction)
    where = np.full(len(hashes), TRAIN, dtype=np.int8)
    hashes_ = np.frombuffer(hashes, dtype=np.int64)
    where[np.isin(hashes_, hashes_[np.concatenate([val, test])])] = COPY
    where[val] = VAL
    where[test] = TEST
    return Split(where, lengths_)


def single_document_split(lengths: np.ndarray, val_fraction: float, test_fraction: float) -> Split:
    """No document (the caller says so), or one: its last ``val_fraction + test_fraction`` of characters are held
    out, validation's share of them first (``share_of_held_out``), then test's."""
    if not len(lengths):
        return Split(np.zeros(0, dtype=np.int8), lengths)
    length = int(lengths[0])
    tail = int(length * (1 - (val_fraction + test_fraction)))
    test_start = min(length, tail + share_of_held_out(length - tail, val_fraction, test_fraction)) if length > tail else length
    return Split(np.full(1, TRAIN, dtype=np.int8), lengths, tail=tail, test_start=test_start)


def split_stream(documents: Iterable[str], split: Split) -> Iterator[tuple[int, str]]:
    """``(TRAIN, VAL, TEST or COPY, text)`` for each non-blank document (the parts of a single document)."""
    kept = filter(is_text, documents)
    if split.tail is not None:
        doc = next(kept)
        for where, (start, end) in split.tail_parts().items():
            if where != TEST or end > start:  # no test part: an empty test split, not a lone end-of-text
                yield where, doc[start:end]
        return
    where = split.where.tolist()
    for i, doc in enumerate(kept):  # to the end of the stream, the last block's bytes counted
        if i == len(where):
            raise ValueError(f"the corpus changed while it was read: more than the {len(where):,} documents of its first reading")
        yield where[i], doc


def bpe_sample(documents: Iterable[str], split: Split, sample_mb: float) -> tuple[Iterator[str], int, str]:
    """The training text a BPE is trained on, streamed: all of it, or one document in k when it exceeds
    ``sample_mb`` (the first ``sample_mb`` of a corpus of one document); how many texts; and words saying which."""
    limit, chars, n = int(sample_mb * 1e6), split.chars(TRAIN), split.documents(TRAIN)
    train = (text for where, text in split_stream(documents, split) if where == TRAIN)
    if chars <= limit:
        return train, n, f"all {n:,} training documents ({chars / 1e6:.1f} MB)"
    if split.tail is not None:
        return (text[:limit] for text in train), 1, f"the first {sample_mb:g} MB of the training text's {chars / 1e6:.1f} MB (data.bpe_sample_mb)"
    every = math.ceil(chars / limit)
    sample = (text for i, text in enumerate(train) if i % every == 0)
    what = f"one in {every} of the {n:,} training documents, about {chars / every / 1e6:.1f} of their {chars / 1e6:.1f} MB (data.bpe_sample_mb={sample_mb:g})"
    return sample, math.ceil(n / every), what


class TokenFile:
    """A growing file of uint32 tokens, checksummed as it is written, each id checked against the vocabulary."""

    def __init__(self, path: str, split: str, vocab_size: int, tokenizer_name: str):
        self.file, self.digest, self.tokens = open(path, "wb"), hashlib.sha256(), 0
        self.split, self.vocab_size, self.tokenizer_name = split, vocab_size, tokenizer_name

    def write(self, tokens: np.ndarray) -> None:
        if len(tokens) and int(tokens.max()) >= self.vocab_size:  # once, here: the checksums keep it true later
            raise ValueError(
                f"tokenizer {self.tokenizer_name!r} gave token id {int(tokens.max())} for the {self.split} split, outside its "
                f"vocabulary of {self.vocab_size} (ids 0-{self.vocab_size - 1}): the model would have no embedding for it"
            )
        self.file.write(memoryview(tokens).cast("B"))
        self.digest.update(tokens)
        self.tokens += len(tokens)

    def close(self) -> dict:
        self.file.close()
        return {"bytes": self.tokens * TOKEN_BYTES, "sha256": self.digest.hexdigest()}


def write_tokens(documents: Iterable[str], split: Split, tokenizer, files: dict[int, TokenFile]) -> None:
    """Encode the documents a chunk at a time, each followed by the end-of-text token, onto their split's file."""
    chunks: dict[int, list[str]] = {TRAIN: [], VAL: [], TEST: []}
    sizes = dict.fromkeys(chunks, 0)

    def flush(where: int) -> None:
        files[where].write(concat_with_eos(tokenizer.encode_batch(chunks[where]), tokenizer.eos_id))
        chunks[where], sizes[where] = [], 0

    for where, text in split_stream(documents, split):
        if where == COPY:
            continue
        chunks[where].append(text)
        sizes[where] += len(text)
        if sizes[where] >= CHUNK_CHARS:
            flush(where)
    for where in chunks:
        if chunks[where]:
            flush(where)


def concat_with_eos(sequences: list[list[int]], eos_id: int | None) -> np.ndarray:
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
