import json

import numpy as np
import pytest
import torch

from datamodules import TextDataModule
from datamodules.tokenizers import BPETokenizer


def make_dm(tmp_path, corpus, **kw) -> TextDataModule:
    return TextDataModule(corpus=corpus, cache_dir=str(tmp_path / "cache"), **{"tokenizer": "bytes", "block_size": 8, "batch_size": 2, **kw})


@pytest.fixture
def jsonl_corpus(tmp_path) -> str:
    path = tmp_path / "docs.jsonl"
    with open(path, "w") as f:
        for i in range(20):
            f.write(json.dumps({"body": f"document number {i}: " + "some words here. " * 5}) + "\n")
    return str(path)


def test_gpt2_tokenizer_matches_openai():
    tok = BPETokenizer.gpt2()
    assert tok.encode_batch(["Hello world!"]) == [[15496, 995, 0]]
    assert tok.eos_id == 50256 and tok.vocab_size == 50257
    assert tok.decode([15496, 995, 0]) == "Hello world!"


def test_split_keeps_documents_whole_and_is_deterministic(tmp_path, jsonl_corpus):
    dm = make_dm(tmp_path, jsonl_corpus, text_field="body", val_fraction=0.1, test_fraction=0.1)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.stats["train_documents"] == 16 and dm.stats["val_documents"] == dm.stats["test_documents"] == 2
    ids = {}
    for name, dataset in (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set)):
        text = dm.tokenizer.decode(np.fromfile(dataset.path, dtype=np.uint32).tolist())
        ids[name] = {line.split(":")[0] for line in text.split("document number ")[1:]}
    assert len(ids["val"]) == len(ids["test"]) == 2 and len(ids["train"] | ids["val"] | ids["test"]) == 20  # no document split across two
    other = make_dm(tmp_path / "b", jsonl_corpus, text_field="body", val_fraction=0.1, test_fraction=0.1)
    other.prepare_data()
    other.setup("fit")
    for split in ("val_set", "test_set"):
        assert open(getattr(other, split).path, "rb").read() == open(getattr(dm, split).path, "rb").read()


def test_windows_are_block_size_plus_one_and_shift_by_one(tmp_path, jsonl_corpus):
    dm = make_dm(tmp_path, jsonl_corpus, text_field="body")
    dm.prepare_data()
    dm.setup("fit")
    tokens = np.fromfile(dm.train_set.path, dtype=np.uint32)
    assert dm.train_set[0].tolist() == tokens[:9].tolist()
    assert dm.train_set[1].tolist() == tokens[8:17].tolist()
    assert len(dm.train_set) == (len(tokens) - 1) // 8
    batch = next(iter(dm.train_dataloader()))  # a TokenBatch: the windows, and the same shifted by one
    assert batch.input_ids.shape == batch.targets.shape == (2, 8)
    assert torch.equal(batch.input_ids[:, 1:], batch.targets[:, :-1])


def test_second_prepare_reuses_the_cache(tmp_path, jsonl_corpus, monkeypatch):
    dm = make_dm(tmp_path, jsonl_corpus, text_field="body", tokenizer="bpe", bpe_vocab_size=300)
    dm.prepare_data()
    first = dm.cache_path
    monkeypatch.setattr(BPETokenizer, "train", lambda *a: pytest.fail("tokenized again"))
    again = make_dm(tmp_path, jsonl_corpus, text_field="body", tokenizer="bpe", bpe_vocab_size=300)
    again.prepare_data()
    again.setup("fit")
    assert again.cache_path == first and again.tokenizer.eos_id is not None
    with open(jsonl_corpus, "a") as f:  # the file changed: a new cache
        f.write(json.dumps({"body": "one more"}) + "\n")
    assert make_dm(tmp_path, jsonl_corpus, text_field="body", tokenizer="bpe", bpe_vocab_size=300).cache_path != first


def test_packaged_corpora_are_found_offline(tmp_path):
    dm = make_dm(tmp_path, "bbc_news")
    dm.prepare_data()
    dm.setup("fit")
    assert dm.stats["documents"] == 2225 and dm.stats["copies_left_out"] == 24  # 10% of each topic held out; copies of those left out of train
    assert (dm.stats["val_documents"], dm.stats["test_documents"]) == (113, 110)  # 5% + 5%: half of each topic's 10%, rounded
    assert 0 < dm.reference_loss() < np.log(257)  # the unigram entropy of the val tokens


def test_a_single_document_holds_out_its_tail(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("x" * 1000)
    dm = make_dm(tmp_path, str(path))
    dm.prepare_data()
    dm.setup("fit")
    assert dm.stats["train_tokens"] == 901 and dm.stats["val_tokens"] == dm.stats["test_tokens"] == 51  # text + end-of-text token


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"corpus": "no/such/file.txt"}, FileNotFoundError, "'no/such/file.txt': file not found"),
        ({"corpus": "nowhere/*.txt"}, FileNotFoundError, "'nowhere/\\*.txt': glob matches no file"),
        ({"corpus": "bbc_news", "tokenizer": "wordpiece"}, ValueError, "tokenizer='wordpiece': expected gpt2, bpe, bytes, a tokenizer.json"),
        ({"corpus": "bbc_news", "block_size": 0}, ValueError, "block_size=0"),
    ],
)
def test_bad_input_names_the_value(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        dm = make_dm(tmp_path, **kwargs)
        dm.prepare_data()


def test_empty_corpus_and_oversized_block_are_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="no text in its 1 file"):
        make_dm(tmp_path, str(tmp_path / "empty.txt")).prepare_data()
    (tmp_path / "small.txt").write_text("a" * 200)
    dm = make_dm(tmp_path, str(tmp_path / "small.txt"), block_size=64)
    dm.prepare_data()
    with pytest.raises(ValueError, match="block_size=64 is too large for the val split \\(11 tokens\\): expected at most 10"):
        dm.setup("fit")
