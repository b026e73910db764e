"""Masked-LM pretraining: BERT's masking rule on a fixed seed, the loss on the chosen positions only, a
bidirectional encoder from the one GPT, tokenizers that reserve [MASK], and pretraining that never
reads an article a classifier is scored on."""

import re

import pytest
import torch
import torch.nn.functional as F

from core.labels import IGNORE
from datamodules.labeled_text import LabeledTextDataModule
from datamodules.text import TextDataModule
from datamodules.token_cache import TEST, TRAIN, VAL, split_stream
from datamodules.tokenizers import SPECIALS, BPETokenizer, ByteTokenizer, load_tokenizer, tokenizer_from_str
from tasks import CausalLM, MaskedLM
from tasks.masked_lm import mask_tokens
from tasks.nets import GPT, HuggingFace
from tests.helpers import error_line

BYTES = ByteTokenizer()


def test_the_masking_rule_on_a_fixed_seed():
    """Of 200,000 positions, a quarter padding: 15% of the others are chosen, and of those 80% become
    [MASK], 10% a random ordinary token and 10% stay; padding and end of text are never chosen, and the
    targets are the tokens at the chosen positions themselves, not the next ones."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(256, (400, 500), generator=generator)
    ids[:, 375:] = BYTES.pad_id
    ids[:, 100] = BYTES.eos_id
    special, ordinary = torch.tensor(sorted(BYTES.special_ids)), torch.tensor(BYTES.ordinary_ids)
    inputs, targets = mask_tokens(ids, BYTES.mask_id, special, ordinary, 0.15, torch.Generator().manual_seed(1))

    chosen = targets != IGNORE
    candidates = ~torch.isin(ids, special)
    assert not chosen[~candidates].any()  # padding and end of text: never
    assert torch.equal(targets[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    share = chosen.sum() / candidates.sum()
    masked = (inputs[chosen] == BYTES.mask_id).float().mean()
    kept = (inputs[chosen] == ids[chosen]).float().mean()
    replaced = 1 - masked - kept
    n = int(chosen.sum())  # about 22,000: each share is within 3 standard errors
    assert abs(share - 0.15) < 3 * (0.15 * 0.85 / candidates.sum()) ** 0.5
    assert abs(masked - 0.8) < 3 * (0.8 * 0.2 / n) ** 0.5
    assert abs(replaced - 0.1 * 255 / 256) < 3 * (0.09 / n) ** 0.5  # a random token is the original 1 time in 256
    assert abs(kept - (0.1 + 0.1 / 256)) < 3 * (0.09 / n) ** 0.5
    assert ((inputs[chosen] < 256) | (inputs[chosen] == BYTES.mask_id)).all()  # random tokens are ordinary ones
    again = mask_tokens(ids, BYTES.mask_id, special, ordinary, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)  # the seed decides it all


def test_the_loss_is_taken_on_the_chosen_positions_only():
    from core.batches import TokenBatch
    from core.data import DataInfo

    net = GPT(vocab_size=BYTES.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16, causal=False)
    task = MaskedLM(net, sample_text="")
    task.use_data(DataInfo(vocab_size=BYTES.vocab_size, block_size=32, tokenizer=BYTES))
    ids = torch.randint(256, (4, 32), generator=torch.Generator().manual_seed(0))
    batch = TokenBatch(input_ids=ids, targets=torch.full_like(ids, 7))  # a window's shifted targets: not used
    torch.manual_seed(3)
    loss = task.loss(batch)
    torch.manual_seed(3)
    inputs, targets = mask_tokens(ids, BYTES.mask_id, task.special_ids, task.ordinary_ids, 0.15)
    logits = net(inputs)
    assert 0 < (targets != IGNORE).sum() < ids.numel()
    assert torch.allclose(loss, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE))
    # the positions not chosen take no part: another token at one changes the inputs, not what is scored
    assert torch.isclose(loss, F.cross_entropy(logits[targets != IGNORE], ids[targets != IGNORE]))


def test_attention_both_ways_is_the_same_network_with_causal_off():
    torch.manual_seed(0)
    causal = GPT(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    both_ways = GPT(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, causal=False)
    both_ways.load_state_dict(causal.state_dict())  # the same weights, the same names: one block implementation
    assert both_ways.lm_head.weight is both_ways.wte.weight  # the MLM head shares the token embeddings
    ids = torch.randint(50, (1, 16))
    later = ids.clone()
    later[0, -1] = (ids[0, -1] + 1) % 50
    for net, sees_later in ((causal, False), (both_ways, True)):
        net.eval()
        changed = not torch.allclose(net.features(ids)[0, 0], net.features(later)[0, 0])
        assert changed == sees_later
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, -1] = False  # the last token is padding: a bidirectional model ignores it under the mask
    assert torch.allclose(both_ways.features(ids, mask)[0, :-1], both_ways.features(later, mask)[0, :-1], atol=1e-6)
    with pytest.raises(ValueError, match="CausalLM: net causal=False"):
        CausalLM(both_ways)
    with pytest.raises(ValueError, match="MaskedLM: net causal=True"):
        MaskedLM(causal)
    with pytest.raises(ValueError, match="causal=False: a bidirectional encoder"):
        both_ways.generate(ids, 1)


def test_tokenizers_reserve_the_special_tokens_at_fixed_ids(tmp_path):
    assert (BYTES.vocab_size, BYTES.eos_id, BYTES.pad_id, BYTES.mask_id) == (261, 256, 257, 260)
    assert BYTES.encode_special("a[MASK]b") == [97, 260, 98] and BYTES.encode_batch(["a[MASK]b"])[0][1] == ord("[")
    assert tokenizer_from_str(BYTES.to_str()).ids == BYTES.ids
    old = tokenizer_from_str("bytes")  # what checkpoints made before stored: a vocabulary of 257, no mask
    assert (old.vocab_size, old.pad_id, old.mask_id) == (257, 256, None)

    bpe = BPETokenizer.train(["the market rose and the market fell"] * 50, vocab_size=300)
    assert [bpe.tokenizer.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3, 4] and bpe.special_ids == {0, 1, 2, 3, 4}
    ids = bpe.encode_special("the [MASK] rose")
    assert bpe.mask_id in ids and bpe.tokenizer.id_to_token(ids[-1]) == "Ġrose"  # [MASK] takes the space before it
    assert 4 not in bpe.ordinary_ids and len(bpe.ordinary_ids) == bpe.tokenizer.get_vocab_size() - 5
    again = tokenizer_from_str(bpe.to_str())  # what a checkpoint stores keeps the ids
    assert (again.mask_id, again.pad_id, again.eos_id) == (4, 1, 0)

    minilm = load_tokenizer("minilm")  # a BERT's own: its ids as they are
    assert (minilm.mask_id, minilm.pad_id, minilm.eos_id) == (103, 0, None) and {101, 102, 103} <= minilm.special_ids
    assert load_tokenizer("gpt2").mask_id is None


def test_a_tokenizer_without_a_mask_token_is_refused(cli, capsys):
    line = error_line(cli, capsys, "fit", "--config", "configs/bert_small.yaml", "--trainer.logger", "false", "--data.init_args.tokenizer", "gpt2")
    assert "MaskedLM: data.tokenizer='gpt2' has no mask token: expected one that reserves [MASK]" in line
    line = error_line(cli, capsys, "fit", "--config", "configs/bert_small.yaml", "--trainer.logger", "false", "--data.init_args.tokenizer", "bytes",
                      "--model.init_args.sample_text", "no mask here")  # fmt: skip
    assert "MaskedLM sample_text='no mask here': expected a sentence with [MASK] in it" in line


def test_pretraining_holds_out_the_articles_classifiers_are_scored_on():
    """BBC News: the text datamodule holds out the labelled one's validation and test articles (and their copies:
    the corpus has some articles twice); another labels_seed changes the labelled few, not them."""
    text = TextDataModule(tokenizer="bytes", val_fraction=0.1, test_fraction=0.1, split_seed=0)
    split = text.split()
    routed = list(split_stream(text.documents(), split))
    train_docs, val_docs, test_docs = ([doc for where, doc in routed if where == split_] for split_ in (TRAIN, VAL, TEST))
    copies = split.copies
    labelled = LabeledTextDataModule(tokenizer="bytes", val_fraction=0.1, test_fraction=0.1, split_seed=0, labels_per_class=20)
    labelled.setup()
    assert set(val_docs) == set(labelled.val_texts) and set(test_docs) == set(labelled.test_texts) and len(val_docs) + len(test_docs) == 444
    held_out = set(labelled.val_texts) | set(labelled.test_texts)
    assert not set(train_docs) & held_out and copies == 34 and len(train_docs) + len(val_docs) + len(test_docs) + copies == 2225
    other = LabeledTextDataModule(tokenizer="bytes", val_fraction=0.1, test_fraction=0.1, split_seed=0, labels_seed=1, labels_per_class=20)
    assert (other.parts["val"] == labelled.parts["val"]).all() and set(other.parts["train"]) != set(labelled.parts["train"])


def test_the_mlm_head_of_a_hugging_face_bert_keeps_the_encoder_names():
    config = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    plain, with_head = HuggingFace(pretrained=False, config=config), HuggingFace(pretrained=False, config=config, mlm_head=True)
    assert set(plain.state_dict()) < set(with_head.state_dict())
    assert {k.split(".")[0] for k in set(with_head.state_dict()) - set(plain.state_dict())} == {"mlm_head"}
    assert with_head.mlm_head.predictions.decoder.weight is with_head.model.embeddings.word_embeddings.weight
    assert all(module.training for module in HuggingFace(mlm_head=True).modules())  # from_pretrained's eval mode, undone for the head too
    assert with_head.token_logits(with_head.features(torch.tensor([[101, 103, 102]]))).shape == (1, 3, 30522)
    with pytest.raises(ValueError, match="mlm_head=False: the network has no head over the vocabulary"):
        plain.token_logits(torch.zeros(1, 32))


def test_bert_small_prints_its_accuracy_beside_the_most_frequent_token_and_fills_a_sentence(cli, capsys):
    cli("fit", "--config", "configs/bert_small.yaml", "--data.init_args.tokenizer", "bytes", "--trainer.max_steps", "6",
        "--trainer.val_check_interval", "6", "--trainer.limit_val_batches", "2", "--trainer.logger", "false",
        "--model.init_args.net.init_args.n_layer", "1", "--model.init_args.net.init_args.n_embd", "32", "--model.init_args.net.init_args.n_head", "2")  # fmt: skip
    printed = capsys.readouterr().out
    assert re.search(r"  val/mlm_acc: 0\.\d{4} \(always predicting the most frequent token: 0\.\d{4}\)", printed)
    sample = next(line for line in printed.splitlines() if line.startswith("  sample:"))
    assert "The government said the " in sample and "[MASK]: '" in sample and "[MASK] would" not in sample
