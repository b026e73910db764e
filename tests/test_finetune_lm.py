"""Fine-tuning a causal LM: ``init_ckpt`` starts from a pretrained checkpoint's weights, and
prompt/response pairs train on the response tokens only."""

import json
import os

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.batches import TokenBatch
from core.checkpoints import CHECKPOINT_FORMAT
from core.labels import IGNORE
from datamodules.prompts import PromptResponseDataModule, bbc_headlines
from datamodules.tokenizers import ByteTokenizer
from tasks import CausalLM
from tasks.nets import GPT
from tests.helpers import error_line

NET = "--model.init_args.net.init_args."
TINY = [NET + "n_layer", "1", NET + "n_head", "2", NET + "n_embd", "32"]  # for both sides; block_size is the data's
FEW = ["--trainer.max_steps", "3", "--trainer.limit_val_batches", "2", "--trainer.logger", "false"]


def pretrain(cli) -> str:
    """A tiny GPT pretrained for 2 steps by configs/gpt_small.yaml (BPE of 1,000 tokens): its checkpoint."""
    runs = cli("fit", "--config", "configs/gpt_small.yaml", *TINY, "--data.init_args.bpe_vocab_size", "1000", "--data.init_args.block_size", "256",
               "--data.init_args.batch_size", "4", *FEW, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1")  # fmt: skip
    return os.path.join(runs, "gpt_small", "checkpoints", "last.ckpt")


def finetune(cli, ckpt: str, *extra: str) -> str:
    """configs/gpt_sft.yaml made tiny, from ``ckpt``'s weights and tokenizer (its prompts need up to 237 BPE-1000 tokens)."""
    return cli("fit", "--config", "configs/gpt_sft.yaml", *TINY, "--model.init_args.init_ckpt", ckpt, "--data.init_args.tokenizer", ckpt,
               "--data.init_args.block_size", "256", "--data.init_args.batch_size", "4", *FEW, *extra)  # fmt: skip



def write_jsonl(path, records) -> str:
    with open(path, "w") as f:
        f.writelines((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    return str(path)


# -- init_ckpt --------------------------------------------------------------------------------


def test_finetuning_starts_from_the_pretrained_weights_and_tokenizer(cli, capsys):
    ckpt = pretrain(cli)
    pretrained = torch.load(ckpt, weights_only=True)
    task = CausalLM(net=GPT(**pretrained["hyper_parameters"]["net"]["init_args"]), init_ckpt=ckpt)
    assert task.net.state_dict().keys() == {k[4:] for k in pretrained["state_dict"]}
    assert all(torch.equal(v, pretrained["state_dict"][f"net.{k}"]) for k, v in task.net.state_dict().items())

    runs = finetune(cli, ckpt)  # the tokenizer comes from the checkpoint too; training works
    assert "Prompt/response pairs: 2003 train, 111 val, 111 test" in capsys.readouterr().out
    tuned = torch.load(os.path.join(runs, "gpt_sft", "checkpoints", "last.ckpt"), weights_only=True)
    assert tuned["global_step"] == 3 and tuned["hyper_parameters"]["init_ckpt"] == ckpt
    assert tuned["PromptResponseDataModule"]["tokenizer"] == pretrained["TextDataModule"]["tokenizer"]
    assert tuned["hyper_parameters"]["net"]["init_args"]["vocab_size"] == 1000
    moved = [k for k, v in tuned["state_dict"].items() if not torch.equal(v, pretrained["state_dict"][k])]
    assert moved and max((tuned["state_dict"][k] - pretrained["state_dict"][k]).abs().max() for k in moved) < 0.01  # fine-tuned, not re-initialized

    line = error_line(cli, capsys, "fit", "--config", "configs/gpt_sft.yaml", *TINY, NET + "n_embd", "48", "--model.init_args.init_ckpt", ckpt,
               "--data.init_args.tokenizer", ckpt, *FEW)  # fmt: skip
    assert line == f"error: init_ckpt {ckpt}: net.wte.weight has shape (1000, 32) in the checkpoint and (1000, 48) in the model  (PLATFORM_DEBUG=1 shows the traceback)"
    line = error_line(cli, capsys, "fit", "--config", "configs/gpt_sft.yaml", *TINY, "--model.init_args.init_ckpt", "nowhere.ckpt", "--data.init_args.tokenizer", ckpt, *FEW)
    assert "init_ckpt nowhere.ckpt: no such file" in line


def test_init_ckpt_takes_a_net_or_a_students_net_and_names_mismatches(tmp_path):
    source = GPT(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
    state = source.state_dict()
    def record(main_network: str = "net") -> dict:
        return {"format": CHECKPOINT_FORMAT, "task": "tasks.CausalLM", "main_network": main_network}

    for prefix in ("net.", "student.net."):  # a distillation run's main network is its student's net
        path = tmp_path / f"{prefix}ckpt"
        torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "global_step": 7, "platform": record(prefix[:-1])}, path)
        loaded = CausalLM(net=GPT(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16), init_ckpt=str(path)).net.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)

    def refused(net: GPT, saved: dict, **extra) -> str:
        torch.save({"state_dict": saved, "platform": record(), **extra}, tmp_path / "bad.ckpt")
        with pytest.raises(ValueError) as err:
            CausalLM(net=net, init_ckpt=str(tmp_path / "bad.ckpt"))
        assert "\n" not in str(err.value)
        return str(err.value)

    path = tmp_path / "bad.ckpt"
    assert refused(source, {"encoder.w": torch.zeros(1)}).startswith(f"init_ckpt {path}: its net does not fit the model (in the model only: ['blocks.0.")
    assert refused(source, {}, platform=None) == f"init_ckpt {path}: not a checkpoint of this platform (no record of its task): expected one written by `python -m platform fit`"
    assert "written before 2026-12-02 by an earlier version of this platform" in refused(source, {}, platform=None, task="tasks.CausalLM")
    deeper = GPT(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    assert "in the model only: ['blocks.1.attn.proj.weight'," in refused(deeper, {f"net.{k}": v for k, v in state.items()})
    assert "in the checkpoint only: ['blocks.1." in refused(source, {f"net.{k}": v for k, v in deeper.state_dict().items()})
    wider = GPT(vocab_size=60, block_size=16, n_layer=1, n_head=2, n_embd=16)
    assert refused(wider, {f"net.{k}": v for k, v in state.items()}).endswith("net.wte.weight has shape (50, 16) in the checkpoint and (60, 16) in the model")
    with pytest.raises(ValueError, match="not a checkpoint"):
        CausalLM(net=source, init_ckpt=write_jsonl(tmp_path / "x.jsonl", [{}]))


# -- the loss on responses only ----------------------------------------------------------------


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_the_loss_scores_response_tokens_only():
    torch.manual_seed(0)
    tokens = torch.randint(0, 10, (2, 7))
    targets = tokens[:, 1:].clone()
    targets[0, :2] = IGNORE  # a prompt of 3 tokens
    targets[1, :4] = IGNORE  # a prompt of 5 tokens, and one pad
    targets[1, -1] = IGNORE
    logits = torch.randn(2, 6, 10)
    task = CausalLM(net=FixedLogits(logits))
    scored = targets != IGNORE
    expected = F.cross_entropy(logits[scored], targets[scored])
    batch = TokenBatch(input_ids=tokens[:, :-1], targets=targets)
    assert torch.allclose(task.loss(batch), expected)

    task.net.logits = logits.clone()
    task.net.logits[0, 1] += 5 * torch.randn(10)  # a prompt position's prediction, and padding's
    task.net.logits[1, 5] += 5 * torch.randn(10)
    rolled = TokenBatch(input_ids=tokens[:, :-1].roll(1, 0), targets=targets)
    assert torch.equal(task.loss(batch), task.loss(rolled))  # nor do the input tokens matter here
    assert torch.allclose(task.loss(batch), expected)
    task.net.logits[0, 2] += 5 * torch.randn(10)  # a response position's: the loss moves
    assert not torch.allclose(task.loss(batch), expected)

    task.net.logits = logits  # a plain window: every position is scored, as in pretraining
    window = TokenBatch(input_ids=tokens[:, :-1], targets=tokens[:, 1:])
    assert torch.allclose(task.loss(window), F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()))
    assert batch.tokens == window.tokens == 12


def test_validation_weighs_batches_by_their_scored_targets():
    task = CausalLM(net=nn.Identity())
    torch.manual_seed(0)
    logits, targets = torch.randn(10, 5), torch.randint(0, 5, (10,))
    targets[:6] = IGNORE  # 4 scored in the first batch
    other_logits, other_targets = torch.randn(3, 5), torch.randint(0, 5, (3,))  # 3 in the second
    task.evaluate(logits, targets)
    task.evaluate(other_logits, other_targets)
    task.evaluate(torch.randn(2, 5), torch.full((2,), IGNORE))  # nothing scored: adds nothing
    pooled = F.cross_entropy(torch.cat([logits[6:], other_logits]), torch.cat([targets[6:], other_targets]))
    metrics = task.stage_metrics("val")
    assert torch.allclose(metrics["val/loss"], pooled) and torch.allclose(metrics["val/ppl"], pooled.exp())


# -- the datamodule ----------------------------------------------------------------------------


def test_targets_are_ignored_exactly_at_prompt_and_padding(tmp_path):
    records = [{"q": "x" * n, "a": f" answer {n}"} for n in range(1, 13)]
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    data = PromptResponseDataModule(path, prompt_field="q", response_field="a", tokenizer="bytes", block_size=16, batch_size=4, val_fraction=0.25,
                                    test_fraction=0)  # fmt: skip
    data.setup("fit")
    assert (data.info.vocab_size, data.info.block_size) == (261, 16) and data.stats["left_out"] == 0
    assert len(data.train_set) == 9 and len(data.val_set) == 3
    seen, train = set(), data.train_dataloader()
    uncut = [data.collate([e for e in data.train_set if len(e[0]) <= 16])]  # a batch whose longest row is whole, which a shuffle may never make
    for epoch, loader in enumerate([train, train, data.val_dataloader(), uncut]):
        if loader is train:
            train.sampler.set_epoch(epoch)
        for batch in loader:
            assert batch.input_ids.dtype == batch.targets.dtype == torch.int64 and batch.targets.shape == batch.input_ids.shape
            for ids, target in zip(batch.input_ids.tolist(), batch.targets.tolist()):
                row = ids + [target[-1] if target[-1] != IGNORE else 256]  # the last token is only a target (256: end-of-text; the pad is 257)
                n_prompt = next(i for i, t in enumerate(row) if t != ord("x"))
                length = row.index(256) + 1 if 256 in row else 17  # up to the end-of-text, or cut at block_size + 1
                assert target == [row[t + 1] if n_prompt <= t + 1 < length else IGNORE for t in range(len(row) - 1)]
                seen.add("cut" if length == 17 else "padded" if length < len(row) else "longest")
    assert seen == {"cut", "padded", "longest"}
    assert data.state_dict() == {"tokenizer": ByteTokenizer().to_str()}


def test_long_prompts_are_cut_or_left_out_and_the_split_is_seeded(tmp_path):
    records = [{"prompt": "p" * n, "response": "r" * 5} for n in (2, 3, 9, 10, 11, 12, 20)]
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    data = PromptResponseDataModule(path, tokenizer="bytes", block_size=10, batch_size=1, val_fraction=0.2)
    data.setup("fit")
    assert data.stats["left_out"] == 3  # prompts of 11, 12 and 20 bytes fill block_size + 1 = 11 tokens
    examples = data.train_set + data.val_set
    assert sorted(n for _, n in examples) == [2, 3, 9, 10] and all(len(ids) == min(n + 6, 11) for ids, n in examples)
    again = PromptResponseDataModule(path, tokenizer="bytes", block_size=10, batch_size=1, val_fraction=0.2)
    again.setup("fit")
    assert [ids.tolist() for ids, _ in again.val_set] == [ids.tolist() for ids, _ in data.val_set]


def test_bbc_headlines_ship_with_a_package():
    pairs = bbc_headlines()
    assert len(pairs) == 2225
    prompt, response = pairs[0]
    assert prompt.startswith("Article: Quarterly profits at US media giant TimeWarner") and prompt.endswith("\nHeadline:")
    assert len(prompt) <= len("Article: \nHeadline:") + 400 and response == " Ad sales boost Time Warner profit"


@pytest.mark.parametrize(
    "records, kwargs, message",
    [
        ([], {}, "pairs.jsonl: no records \\(expected JSONL lines with fields 'prompt' and 'response'\\)"),
        (["", "  "], {}, "pairs.jsonl: no records"),
        ([{"prompt": "a", "response": "b"}, {"prompt": "a", "answer": "b"}], {}, "pairs.jsonl:2: no field 'response' \\(fields: prompt, answer\\); set data.response_field"),
        ([{"question": "a", "response": "b"}], {"prompt_field": "question", "response_field": "answer"}, "pairs.jsonl:1: no field 'answer'"),
        ([{"prompt": "a", "response": 3}], {}, "pairs.jsonl:1: field 'response' is a int: expected a string"),
        (["not json"], {}, "pairs.jsonl:1: expected a JSON object with fields 'prompt' and 'response', got 'not json'"),
        ([{"prompt": "a", "response": "b"}], {}, "1 record\\(s\\) in 1 file\\(s\\): expected at least 2"),
        ([{"prompt": "p" * 30, "response": "b"}] * 4, {}, "block_size=8: no train record leaves room for a response \\(the shortest prompt has 30 tokens\\): expected prompts shorter than block_size \\+ 1 = 9 tokens"),
        ([{"prompt": "a", "response": "b"}] * 4, {"block_size": 1}, "block_size=1, batch_size=2: expected block_size >= 2"),
        ([{"prompt": "a", "response": "b"}] * 4, {"batch_size": 4}, "data.batch_size=4 exceeds the 3 training examples: expected at most 3"),
        ([{"prompt": "a", "response": "b"}] * 4, {"val_fraction": 1}, "val_fraction=1: expected a number in \\(0, 1\\)"),
        ([{"prompt": "a", "response": "b"}] * 4, {"tokenizer": "bpe"}, "tokenizer='bpe': a BPE trained here would not be the pretrained model's"),
        ([{"prompt": "a", "response": "b"}] * 4, {"files": "bbc_news"}, "files='bbc_news': no such file, nor a packaged source; expected bbc_headlines or JSONL paths/globs"),
        ([{"prompt": "a", "response": "b"}] * 4, {"files": "nowhere/*.jsonl"}, "'nowhere/\\*.jsonl': glob matches no file"),
    ],
)
def test_bad_input_names_the_value(tmp_path, records, kwargs, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        data = PromptResponseDataModule(**{"files": path, "tokenizer": "bytes", "block_size": 8, "batch_size": 2, **kwargs})
        data.setup("fit")
        data.train_dataloader()
    assert "\n" not in str(err.value)


# -- through the CLI: resume ---------------------------------------------------------------------


class CrashAtStep(L.Callback):
    """Raises when training reaches ``step``: the run stops with the checkpoint it last saved."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crashed at step {self.step}")


def test_a_resumed_finetune_is_bit_identical(cli, tmp_path):
    """40 training pairs in batches of 4: an epoch is 10 steps; a crash at step 7 resumes from the
    checkpoint of step 4, mid-epoch, and the run crosses an epoch's end before step 12."""
    records = [{"prompt": f"Question {i}: what is {i} times {i % 7}?", "response": f" {i * (i % 7)}, surely"} for i in range(44)]
    data = ["--data.init_args.files", write_jsonl(tmp_path / "pairs.jsonl", records), "--data.init_args.tokenizer", "bytes",
            "--data.init_args.block_size", "48", "--data.init_args.batch_size", "4", "--model.init_args.init_ckpt", "null",
            "--model.init_args.sample_tokens", "0", "--run.checkpoint_every", "4", "--trainer.val_check_interval", "6", *TINY, *FEW, "--trainer.max_steps", "12"]  # fmt: skip
    runs = cli("fit", "--config", "configs/gpt_sft.yaml", *data, "--run.name", "straight")
    crash = json.dumps([{"class_path": f"{__name__}.CrashAtStep", "init_args": {"step": 7}}])
    with pytest.raises(RuntimeError, match="crashed at step 7"):
        cli("fit", "--config", "configs/gpt_sft.yaml", *data, "--run.name", "resumed", "--trainer.callbacks", crash)
    assert torch.load(os.path.join(runs, "resumed", "checkpoints", "last.ckpt"), weights_only=True)["global_step"] == 4
    cli("fit", "--config", "configs/gpt_sft.yaml", *data, "--run.name", "resumed", "--ckpt_path", "last")
    straight, resumed = (torch.load(os.path.join(runs, name, "checkpoints", "last.ckpt"), weights_only=True) for name in ("straight", "resumed"))
    assert straight["global_step"] == resumed["global_step"] == 12
    assert [k for k in straight["state_dict"] if not torch.equal(straight["state_dict"][k], resumed["state_dict"][k])] == []
