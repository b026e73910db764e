"""The optimizer and schedule come from the config: AdamW's decay groups and warmup + cosine by default,
and any other optimizer without a change in any task, Muon for the 2-D weights included."""

import json
import math

import pytest
import torch
from torch import nn

from tasks.optim import Split, WarmupCosine, WarmupStableDecay, param_groups
from tests.helpers import fit

MUON = json.dumps({
    "class_path": "tasks.optim.Split",
    "init_args": {"matrices": {"class_path": "torch.optim.Muon", "init_args": {"lr": 0.02}},
                  "rest": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 3.0e-3, "weight_decay": 0.1}}},
})  # fmt: skip


def test_groups_decay_matrices_only():
    net = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    kinds = {g["kind"]: g for g in param_groups(net)}
    assert [p.shape for p in kinds["matrix"]["params"]] == [(4, 4)] and "weight_decay" not in kinds["matrix"]  # the optimizer's
    assert [p.shape for p in kinds["embedding"]["params"]] == [(10, 4)]
    assert kinds["vector"]["weight_decay"] == 0.0 and len(kinds["vector"]["params"]) == 3  # bias, norm weight and bias


def rates_of(schedule: type, total_steps: int, **kwargs) -> tuple[list[float], float, torch.optim.Optimizer]:
    """The learning rate at each of a run's steps under ``schedule`` (base rate 1), the rate after its
    last step, and the optimizer (for the schedule's refusals)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler, rates = schedule(optimizer, total_steps=total_steps, **kwargs), []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates, optimizer.param_groups[0]["lr"], optimizer


def test_warmup_then_cosine_to_the_floor():
    rates, final, optimizer = rates_of(WarmupCosine, 110, warmup_steps=10, min_lr_ratio=0.1)
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert final == pytest.approx(0.1)
    with pytest.raises(ValueError, match="min_lr_ratio=2: expected"):
        WarmupCosine(optimizer, 10, min_lr_ratio=2)


def test_muon_for_matrices_and_adamw_for_the_rest_trains_and_resumes(tmp_path):
    """gpt_nano with Muon on its linear weights: each parameter has the state of its optimizer, and a run
    stopped at step 4 and resumed ends where the uninterrupted one does."""
    args = ["--config", "configs/gpt_nano.yaml", "--model.init_args.optimizer", MUON, "--trainer.max_steps", "8", "--run.checkpoint_every", "4",
            "--trainer.val_check_interval", "4", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]  # fmt: skip
    stop = json.dumps([{"class_path": "tests.helpers.StopAtStep", "init_args": {"step": 4}}])
    fit(*args, "--run.dir", str(tmp_path / "straight"))
    fit(*args, "--run.dir", str(tmp_path / "resumed"), "--trainer.callbacks", stop)
    fit(*args, "--run.dir", str(tmp_path / "resumed"), "--ckpt_path", "last")
    straight, resumed = (torch.load(tmp_path / d / "gpt_nano" / "checkpoints" / "last.ckpt", weights_only=True) for d in ("straight", "resumed"))
    assert straight["global_step"] == resumed["global_step"] == 8
    assert all(torch.equal(v, resumed["state_dict"][k]) for k, v in straight["state_dict"].items())
    (optimizer,) = straight["optimizer_states"]
    kinds = [g["kind"] for g in optimizer["param_groups"] for _ in g["params"]]
    states = [optimizer["state"][i] for i in range(len(kinds))]
    assert {k for kind, s in zip(kinds, states) if kind == "matrix" for k in s} == {"momentum_buffer"}  # Muon's
    assert {k for kind, s in zip(kinds, states) if kind != "matrix" for k in s} == {"step", "exp_avg", "exp_avg_sq"}  # AdamW's


def test_split_needs_groups_of_a_kind():
    with pytest.raises(ValueError, match="tasks.optim.Split needs parameter groups of a kind"):
        Split([nn.Parameter(torch.zeros(2, 2))], torch.optim.SGD, torch.optim.SGD)


def test_warmup_stable_decay_is_a_trapezoid():
    rates, final, optimizer = rates_of(WarmupStableDecay, 100, warmup_steps=10, decay_fraction=0.2)
    assert rates[0] == pytest.approx(0.1) and rates[9] == rates[50] == rates[80] == pytest.approx(1.0)
    assert rates[90] == pytest.approx(0.5) and rates[99] == pytest.approx(0.05) and final == 0.0
    with pytest.raises(ValueError, match="decay_fraction=0, min_lr_ratio=0.0: expected"):
        WarmupStableDecay(optimizer, 10, decay_fraction=0)


def test_the_modern_recipe_with_muon_and_a_trapezoid_resumes_bit_identically(tmp_path):
    """gpt_nano with every newer piece on, Muon on its hidden matrices and warmup-stable-decay: stopped at
    step 4 and resumed, it ends where the uninterrupted run does."""
    net = [f"--model.init_args.net.init_args.{k}={v}" for k, v in
           {"norm": "rmsnorm", "positions": "rotary", "qk_norm": "true", "activation": "relu2", "tie_embeddings": "false", "logit_softcap": "15"}.items()]
    schedule = json.dumps({"class_path": "tasks.optim.WarmupStableDecay", "init_args": {"warmup_steps": 2, "decay_fraction": 0.5}})
    args = ["--config", "configs/gpt_nano.yaml", "--model.init_args.optimizer", MUON, "--model.init_args.schedule", schedule, *net, "--trainer.max_steps", "8",
            "--run.checkpoint_every", "4", "--trainer.val_check_interval", "4", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]  # fmt: skip
    stop = json.dumps([{"class_path": "tests.helpers.StopAtStep", "init_args": {"step": 4}}])
    fit(*args, "--run.dir", str(tmp_path / "straight"))
    fit(*args, "--run.dir", str(tmp_path / "resumed"), "--trainer.callbacks", stop)
    fit(*args, "--run.dir", str(tmp_path / "resumed"), "--ckpt_path", "last")
    straight, resumed = (torch.load(tmp_path / d / "gpt_nano" / "checkpoints" / "last.ckpt", weights_only=True) for d in ("straight", "resumed"))
    assert straight["global_step"] == resumed["global_step"] == 8 and "net.wpe.weight" not in straight["state_dict"]
    assert all(torch.equal(v, resumed["state_dict"][k]) for k, v in straight["state_dict"].items())


def test_muon_leaves_an_untied_output_head_to_adamw():
    """Muon's recipe: the hidden matrices only; an untied ``lm_head`` is grouped with the embeddings."""
    from tasks.nets import GPT

    net = GPT(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, tie_embeddings=False)
    kinds = {g["kind"]: g["params"] for g in param_groups(net)}
    assert any(p is net.lm_head.weight for p in kinds["embedding"]) and not any(p is net.lm_head.weight for p in kinds["matrix"])
    assert len(kinds["matrix"]) == 4  # qkv, attention proj, MLP fc and proj
