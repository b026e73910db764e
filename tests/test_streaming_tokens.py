"""Tokenizing streams: a JSONL corpus is read a block at a time and encoded a chunk at a time, and the token
files hold exactly what encoding each document whole would (the rows a model trains on); the BPE trains on a
bounded sample beyond ``bpe_sample_mb`` and says so; a log gets one summary line, a terminal progress bars."""

import io
import json
import re

import numpy as np
import pytest

import datamodules.corpora as corpora
import datamodules.token_cache as token_cache
from datamodules import TextDataModule
from datamodules.corpora import read_documents, resolve_files
from datamodules.token_cache import TEST, TRAIN, VAL

ARTICLES = [d for d in read_documents(*resolve_files("bbc_news")) if d.strip()][:120]  # ~270 KB of real text


@pytest.fixture
def corpus(tmp_path) -> str:
    """120 real articles as JSONL, each of the first 30 twice (a copy of a held-out one must stay out of train)."""
    path = tmp_path / "news.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in ARTICLES + ARTICLES[:30]), encoding="utf-8")
    return str(path)


def make_dm(corpus: str, cache_dir, **kw) -> TextDataModule:
    return TextDataModule(corpus=corpus, cache_dir=str(cache_dir), **{"tokenizer": "bpe", "bpe_vocab_size": 400, "block_size": 16, **kw})


def test_token_files_hold_each_document_encoded_whole_in_corpus_order(tmp_path, corpus, monkeypatch):
    """Blocks of 4 KB, chunks of 20,000 characters: dozens of each, and the files still hold every document
    exactly as encoded on its own, in the corpus's order, each in one split, copies of held-out ones in none."""
    monkeypatch.setattr(corpora, "JSONL_BLOCK", 4096)
    monkeypatch.setattr(token_cache, "CHUNK_CHARS", 20_000)
    dm = make_dm(corpus, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    docs, where = ARTICLES + ARTICLES[:30], dm.split().where
    eos, encoded = dm.tokenizer.eos_id, dm.tokenizer.encode_batch(docs)
    texts = {split: {d for d, w in zip(docs, where) if w == split} for split in (TRAIN, VAL, TEST)}
    held_out = texts[VAL] | texts[TEST]
    assert texts[VAL] and texts[TEST] and not texts[TRAIN] & held_out
    assert dm.stats["copies_left_out"] == sum(d in held_out for d, w in zip(docs, where) if w not in (VAL, TEST)) > 0
    for split, name in ((TRAIN, "train"), (VAL, "val"), (TEST, "test")):
        expected = [t for ids, w in zip(encoded, where) if w == split for t in (*ids, eos)]
        assert np.fromfile(f"{dm.cache_path}/{name}.bin", dtype=np.uint32).tolist() == expected


@pytest.mark.parametrize(
    "bad, message",
    [
        (b'{"text": "fine", }', "not valid JSON (Expecting property name enclosed in double quotes at column 18)"),
        ('{"text": "Café"}'.encode("latin-1"), "byte 0xe9 at byte offset {offset} is not UTF-8"),
    ],
)
def test_a_bad_line_deep_in_a_file_read_in_blocks_is_named_by_its_line_and_offset(tmp_path, monkeypatch, bad, message):
    monkeypatch.setattr(corpora, "JSONL_BLOCK", 1000)
    good = b"".join(json.dumps({"text": d[:200]}).encode() + b"\n" for d in ARTICLES[:60])  # ~13 KB: many blocks
    path = tmp_path / "docs.jsonl"
    path.write_bytes(good + bad + b"\n")
    offset = len(good) + bad.index(b"\xe9") if b"\xe9" in bad else None
    with pytest.raises(ValueError) as err:
        list(read_documents([str(path)], "auto"))
    assert str(err.value).startswith(f"{path}:61: {message.format(offset=offset)}")


def test_the_bpe_trains_on_a_bounded_sample_and_the_summary_says_which(tmp_path, corpus, capsys):
    whole = make_dm(corpus, tmp_path / "whole")
    whole.prepare_data()
    line = capsys.readouterr().out
    assert re.search(r"the BPE trained on all \d+ training documents \(0\.\d MB\)$", line.strip())
    sampled = make_dm(corpus, tmp_path / "sample", bpe_sample_mb=0.05)
    sampled.prepare_data()
    sampled.setup("fit")
    line = capsys.readouterr().out.strip()
    every = re.search(r"the BPE trained on one in (\d+) of the (\d+) training documents, about \d+\.\d of their \d+\.\d MB \(data.bpe_sample_mb=0.05\)$", line)
    assert every and int(every[1]) > 1 and sampled.stats["bpe_trained_on"] in line
    whole.setup("fit")
    assert whole.tokenizer.tokenizer.get_vocab() != sampled.tokenizer.tokenizer.get_vocab()  # another sample, another BPE
    assert sampled.stats["train_tokens"] > 0 and sampled.stats["train_documents"] == whole.stats["train_documents"]  # all tokenized


def test_a_log_gets_one_summary_line_a_terminal_progress_bars(tmp_path, corpus, capsys, monkeypatch):
    make_dm(corpus, tmp_path / "log").prepare_data()
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1 and out.startswith("Tokenized 150 documents (0.3 MB) into ")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(token_cache, "REFRESH_S", 0)  # the corpus takes milliseconds: draw every update
    make_dm(corpus, tmp_path / "terminal", tokenizer="bytes").prepare_data()
    shown = terminal.getvalue()
    for bar in ("reading the corpus", "tokenizing"):
        assert re.search(rf"{bar}: 100%\|.*\| \d+k?/\d+k? \[[0-9:]+<[0-9:]+, +[0-9.]+[kM]?B/s\]", shown), shown[-300:]


def test_a_sample_size_that_is_not_positive_is_refused(tmp_path, corpus):
    with pytest.raises(ValueError, match=r"^TextDataModule bpe_sample_mb=0: expected a positive number$"):
        make_dm(corpus, tmp_path, bpe_sample_mb=0)
