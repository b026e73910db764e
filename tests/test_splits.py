"""Validation and test splits: held out together (``val_fraction + test_fraction``, so that every training set is the
one ``val_fraction`` alone held out at that sum), then split; the same documents for a pretrained LM and the
classifiers scored after it; a corpus of one document holds out its tail, validation's part first."""

import inspect
import json
import os

import numpy as np
import pytest
import yaml

from datamodules import LabeledTextDataModule, PromptResponseDataModule, TextDataModule
from datamodules.splits import held_out
from datamodules.token_cache import COPY, TEST, TRAIN, VAL, split_stream
from tests.conftest import ROOT


def data_args(config: str) -> dict:
    with open(os.path.join(ROOT, "configs", f"{config}.yaml")) as f:
        return yaml.safe_load(f)["data"]["init_args"]


def test_the_held_out_set_depends_on_the_sum_and_is_split_per_class():
    labels = np.repeat([0, 1, 2], [50, 31, 4])
    val, test, rest = held_out(labels, 0.1, seed=3, test_fraction=0.1)
    alone, no_test, alone_rest = held_out(labels, 0.2, seed=3)  # as before the test split: val_fraction alone
    assert len(no_test) == 0 and np.array_equal(rest, alone_rest)  # the same training examples, in the same order
    assert sorted(np.concatenate([val, test]).tolist()) == sorted(alone.tolist())
    assert np.bincount(labels[val], minlength=3).tolist() == [5, 3, 1]  # of 10, 6 and 1 held out: half each, at least one
    assert np.bincount(labels[test], minlength=3).tolist() == [5, 3, 0]
    val_2, test_2, _ = held_out(labels, 0.15, seed=3, test_fraction=0.05)  # another split of the same held-out set
    assert sorted(np.concatenate([val_2, test_2]).tolist()) == sorted(alone.tolist()) and len(test_2) == 2 + 2
    for kwargs, message in [
        ({"test_fraction": -0.1}, r"test_fraction=-0.1: expected a number in \[0, 1\) \(0: no test split\)"),
        ({"test_fraction": 0.9}, r"val_fraction=0.1, test_fraction=0.9: expected shares that leave data to train on \(sum < 1\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            held_out(labels, 0.1, seed=0, **kwargs)


SPLIT = ("val_fraction", "test_fraction", "split_seed")
PRETRAINING = ("gpt_small", "gpt_small_2019", "bert_small", "mlm_bbc_minilm", "simcse_gpt_small")  # whose comments say so
CLASSIFIERS = ("classify_bbc_gpt", "classify_bbc_bert", "classify_bbc_minilm", "classify_bbc_student", "distill_bbc_minilm")


def split_of(args: dict, datamodule) -> tuple:
    """The arguments that choose the held-out articles, the datamodule's defaults where a config says nothing."""
    parameters = inspect.signature(datamodule).parameters
    return tuple(args.get(key, parameters[key].default) for key in SPLIT)


def test_pretraining_holds_out_the_classifiers_validation_and_test_articles():
    """Every config that pretrains on BBC News holds out (and never trains on, copies included) exactly the articles
    that the classifiers validate and test on, each in its own split."""
    splits = {split_of(data_args(c), TextDataModule) for c in PRETRAINING} | {split_of(data_args(c), LabeledTextDataModule) for c in CLASSIFIERS}
    assert splits == {(0.1, 0.1, 0)} and all(data_args(c).get("corpus", "bbc_news") == "bbc_news" for c in PRETRAINING)
    text = TextDataModule(**{**data_args("gpt_small"), "tokenizer": "bytes"})
    split = text.split()
    routed = {where: [] for where in (TRAIN, VAL, TEST, COPY)}
    for where, doc in split_stream(text.documents(), split):
        routed[where].append(doc)
    labelled = LabeledTextDataModule(**{**data_args("classify_bbc_gpt"), "tokenizer": "bytes"})
    labelled.setup("test")
    assert set(routed[VAL]) == set(labelled.val_texts) and set(routed[TEST]) == set(labelled.test_texts)
    assert len(routed[VAL]) == len(routed[TEST]) == 222 and not set(routed[TRAIN]) & set(labelled.val_texts + labelled.test_texts)
    assert len(routed[TRAIN]) == 1747 and len(routed[COPY]) == 34  # as when the 444 were all validation


def test_the_training_tokens_are_those_of_val_fraction_alone_at_the_sum(tmp_path):
    corpus = tmp_path / "docs.jsonl"
    docs = [f"document {i}: " + "words " * (i % 9 + 2) for i in range(40)]
    docs[7] = docs[31]  # a copy
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    caches = {}
    for fractions in [(0.2, 0.0), (0.1, 0.1), (0.15, 0.05)]:
        data = TextDataModule(str(corpus), tokenizer="bytes", block_size=4, batch_size=2, val_fraction=fractions[0], test_fraction=fractions[1],
                              cache_dir=str(tmp_path / "cache"))  # fmt: skip
        data.prepare_data()
        data.setup("test" if fractions[1] else "fit")
        caches[fractions] = data
    paths = {fractions: data.cache_path for fractions, data in caches.items()}
    assert len(set(paths.values())) == 3  # test_fraction is part of the cache's key
    train = {open(os.path.join(path, "train.bin"), "rb").read() for path in paths.values()}
    assert len(train) == 1
    stats = caches[(0.1, 0.1)].stats
    assert (stats["val_documents"], stats["test_documents"]) == (4, 4) and stats["train_documents"] == 40 - 8 - stats["copies_left_out"]
    assert stats["test_tokens"] == len(np.fromfile(caches[(0.1, 0.1)].test_set.path, dtype=np.uint32)) > 0
    assert sorted(stats["files"]) == ["test.bin", "train.bin", "val.bin"] and caches[(0.2, 0.0)].stats["test_tokens"] == 0
    with pytest.raises(ValueError, match="test: data.test_fraction=0 holds out no test split"):
        caches[(0.2, 0.0)].setup("test")


def test_a_single_document_holds_out_its_tail_validation_first(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("".join(chr(ord("a") + i % 26) for i in range(1000)))
    data = TextDataModule(str(path), tokenizer="bytes", block_size=8, batch_size=2, cache_dir=str(tmp_path / "cache"))  # 0.05 + 0.05
    data.prepare_data()
    data.setup("test")
    text = path.read_text()
    for name, part in (("train", text[:900]), ("val", text[900:950]), ("test", text[950:])):
        tokens = np.fromfile(os.path.join(data.cache_path, f"{name}.bin"), dtype=np.uint32).tolist()
        assert data.tokenizer.decode(tokens[:-1]) == part and tokens[-1] == data.tokenizer.eos_id


def test_prompt_response_pairs_hold_out_validation_then_test_of_one_permutation(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f" a{i}"}) + "\n" for i in range(40)))
    split = PromptResponseDataModule(str(path), tokenizer="bytes", block_size=16, batch_size=2, val_fraction=0.1, test_fraction=0.1)
    alone = PromptResponseDataModule(str(path), tokenizer="bytes", block_size=16, batch_size=2, val_fraction=0.2, test_fraction=0)
    for data in (split, alone):
        data.setup("fit")
    order = np.random.default_rng(0).permutation(40)
    assert split.val_set.source_index.tolist() == sorted(order[:4]) and split.test_set.source_index.tolist() == sorted(order[4:8])
    assert [ids.tolist() for ids, _ in split.train_set] == [ids.tolist() for ids, _ in alone.train_set] and len(alone.test_set) == 0
    batch = next(iter(split.test_dataloader()))
    assert batch.index.tolist() == sorted(order[4:8])[:2] and batch.prompt_lengths.tolist() == [len(f"q{i}") for i in batch.index.tolist()]
    with pytest.raises(ValueError, match="predict: data.test_fraction=0 holds out no test split"):
        alone.setup("predict")
