"""The token cache of TextDataModule is verified before it is used: a corrupt or partial one is rebuilt
with one warning line, a sound one is used as is, and token ids are checked against the vocabulary
once, when the cache is built."""

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

import datamodules.text as text_module
from datamodules import TextDataModule
from datamodules.corpora import resolve_files
from datamodules.tokenizers import BPETokenizer, ByteTokenizer

FILES = resolve_files("bbc_news")[0][:40]  # 40 real articles, ~90 KB: a BPE trains in a fraction of a second


def make_dm(cache_dir, **kw) -> TextDataModule:
    kw = {"tokenizer": "bpe", "bpe_vocab_size": 300, "block_size": 16, "batch_size": 8, **kw}
    return TextDataModule(corpus=FILES, cache_dir=str(cache_dir), **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    """A cache built once; each test works on a copy of it."""
    dm = make_dm(tmp_path_factory.mktemp("reference"))
    dm.prepare_data()
    return dm.cache_path


@pytest.fixture
def cache(tmp_path, reference) -> str:
    """A copy of the reference cache where a new datamodule of the same corpus looks for it."""
    path = str(shutil.copytree(reference, tmp_path / "cache" / os.path.basename(reference)))
    assert make_dm(tmp_path / "cache").cache_path == path
    return path


def contents(path: str) -> dict:
    """Every file of a cache, byte for byte; meta.json without its build time."""
    files = {name: Path(path, name).read_bytes() for name in sorted(os.listdir(path)) if name != "meta.json"}
    meta = json.loads(Path(path, "meta.json").read_text())
    meta.pop("seconds")
    return {**files, "meta.json": meta}


def assert_batches_are_valid(dm: TextDataModule) -> None:
    vocab = dm.info.vocab_size
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        n = 0
        for batch in loader:
            assert batch.input_ids.shape[1] == 16 and 0 <= int(batch.input_ids.min()) and int(batch.input_ids.max()) < vocab
            assert 0 <= int(batch.targets.min()) and int(batch.targets.max()) < vocab
            n += 1
        assert n > 0
    assert 0 < dm.reference_loss() < math.log(vocab)


# -- ways a cache gets corrupt -----------------------------------------------------------------------
def overwrite_with_ff(path):  # the size kept: only the checksum can tell
    file = Path(path, "train.bin")
    file.write_bytes(b"\xff" * file.stat().st_size)


def truncate_to_odd_size(path):
    file = os.path.join(path, "train.bin")
    os.truncate(file, os.path.getsize(file) - 3)


def truncate_to_multiple_of_4(path):
    file = os.path.join(path, "train.bin")
    os.truncate(file, os.path.getsize(file) - 4 * 1000)


def delete_val(path):
    os.remove(os.path.join(path, "val.bin"))


def truncate_test(path):
    file = os.path.join(path, "test.bin")
    os.truncate(file, os.path.getsize(file) - 4)


def garbage_meta(path):
    Path(path, "meta.json").write_bytes(b"\x00garbage{")


def delete_meta(path):
    os.remove(os.path.join(path, "meta.json"))


def swap_tokenizer_ids(path):  # still a valid tokenizer.json of the same size, but not the one the tokens came from
    file = Path(path, "tokenizer.json")
    text = file.read_text(encoding="utf-8")
    assert text.count('": 257,') == text.count('": 258,') == 1
    text = text.replace('": 257,', '": @@@,').replace('": 258,', '": 257,').replace('": @@@,', '": 258,')
    file.write_text(text, encoding="utf-8")


def delete_tokenizer(path):
    os.remove(os.path.join(path, "tokenizer.json"))


SIZE = r"[\d,]+ bytes, expected [\d,]+"
CHECKSUM = r"contents differ from the sha256 checksum recorded when the cache was built"
CORRUPTIONS = {
    "train.bin overwritten with 0xFF": (overwrite_with_ff, rf"train\.bin: {CHECKSUM}"),
    "train.bin truncated to an odd size": (truncate_to_odd_size, rf"train\.bin: {SIZE}"),
    "train.bin truncated to a multiple of 4": (truncate_to_multiple_of_4, rf"train\.bin: {SIZE}"),
    "val.bin deleted": (delete_val, r"val\.bin is missing"),
    "test.bin cut short": (truncate_test, rf"test\.bin: {SIZE}"),
    "meta.json garbage": (garbage_meta, r"meta\.json is unreadable: Expecting value: line 1 column 1 \(char 0\)"),
    "meta.json deleted": (delete_meta, r"meta\.json is missing"),
    "tokenizer.json changed": (swap_tokenizer_ids, rf"tokenizer\.json: {CHECKSUM}"),
    "tokenizer.json deleted": (delete_tokenizer, r"tokenizer\.json is missing"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_cache_is_rebuilt_with_one_warning_line(tmp_path, reference, cache, corruption, capsys):
    corrupt, reason = CORRUPTIONS[corruption]
    corrupt(cache)
    capsys.readouterr()
    dm = make_dm(tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err  # the warning and nothing else: no traceback
    assert re.fullmatch(rf"warning: token cache {re.escape(cache)} is corrupt \({reason}\): rebuilding it\n", err), err
    assert contents(cache) == contents(reference)  # rebuilt: the same bytes as a fresh build
    assert_batches_are_valid(dm)

    again = make_dm(tmp_path / "cache")  # and the rebuilt cache is trusted from then on
    again.prepare_data()
    again.setup("fit")
    assert capsys.readouterr().err == ""


def test_the_warning_gives_the_sizes(tmp_path, cache, capsys):
    train = os.path.join(cache, "train.bin")
    size = os.path.getsize(train)
    os.truncate(train, size - 3)
    capsys.readouterr()
    make_dm(tmp_path / "cache").prepare_data()
    expected = f"warning: token cache {cache} is corrupt (train.bin: {size - 3:,} bytes, expected {size:,}): rebuilding it\n"
    assert capsys.readouterr().err == expected


def test_a_sound_cache_is_used_without_tokenizing_again(tmp_path, cache, monkeypatch, capsys):
    def fail(*args, **kwargs):
        pytest.fail("tokenized again")

    for owner in (BPETokenizer, ByteTokenizer):
        monkeypatch.setattr(owner, "encode_batch", fail)
    monkeypatch.setattr(BPETokenizer, "train", fail)
    monkeypatch.setattr(text_module, "read_documents", fail)
    before = contents(cache)
    capsys.readouterr()
    dm = make_dm(tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    assert capsys.readouterr().err == ""
    assert contents(cache) == before
    assert sorted(dm.stats["files"]) == ["test.bin", "tokenizer.json", "train.bin", "val.bin"]  # recorded at build
    assert dm.stats["files"]["train.bin"]["bytes"] == 4 * dm.stats["train_tokens"]
    assert_batches_are_valid(dm)


def test_setup_refuses_in_one_line_a_cache_that_changed_after_prepare_data(tmp_path, cache):
    dm = make_dm(tmp_path / "cache")
    dm.prepare_data()  # on rank 0; another rank's setup, or this one's, then finds the cache cut short
    val = os.path.join(cache, "val.bin")
    os.truncate(val, os.path.getsize(val) - 4)
    with pytest.raises(ValueError, match=rf"token cache {re.escape(cache)} is corrupt \(val\.bin: {SIZE}\)") as err:
        dm.setup("fit")
    assert "\n" not in str(err.value)


def test_ids_beyond_a_crafted_tokenizers_vocabulary_are_refused_at_build(tmp_path):
    # a tokenizer.json whose ids have a gap: 3 entries (its vocab_size), one of them id 99
    tokenizer = HFTokenizer(models.WordLevel({"<|endoftext|>": 0, "[UNK]": 1, "the": 99}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = str(tmp_path / "crafted.json")
    tokenizer.save(path)
    dm = make_dm(tmp_path / "cache", tokenizer=path)
    assert dm.info.vocab_size == 3
    message = rf"tokenizer '{re.escape(path)}' gave token id 99 for the train split, outside its vocabulary of 3 \(ids 0-2\)"
    with pytest.raises(ValueError, match=message) as err:
        dm.prepare_data()
    assert "\n" not in str(err.value)
    assert os.listdir(tmp_path / "cache") == []  # neither a cache nor a half-written one left


def test_ids_beyond_a_stub_tokenizers_vocabulary_are_refused_at_build(tmp_path, monkeypatch):
    monkeypatch.setattr(ByteTokenizer, "encode_batch", lambda self, texts, max_length=None: [[104, 105, 261] for _ in texts])
    dm = make_dm(tmp_path / "cache", tokenizer="bytes")
    message = r"tokenizer 'bytes' gave token id 261 for the train split, outside its vocabulary of 261 \(ids 0-260\)"
    with pytest.raises(ValueError, match=message):
        dm.prepare_data()
    assert os.listdir(tmp_path / "cache") == []
