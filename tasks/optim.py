"""Optimizers and schedules, chosen in the config: ``model.init_args.optimizer`` and ``schedule``.

Any ``torch.optim`` optimizer works, since a task hands it parameter groups: weight decay on the
matrices (linear, convolution and embedding weights) only, not on biases and norms, and a per-group
learning-rate scale (layer-wise decay). ``Split`` gives the 2-D weights of linear layers to one
optimizer and the rest to another: Muon's recipe. A schedule takes the optimizer and the run's
number of optimizer steps: ``WarmupCosine`` by default, ``WarmupStableDecay`` (a trapezoid), or ``null``
for a constant rate.
"""

import math
import re
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

OptimizerCallable = Callable[[Iterable], Optimizer]
ScheduleCallable = Callable[[Optimizer, int], LRScheduler]  # (optimizer, total optimizer steps of the run)


def param_groups(module: nn.Module, lr_scale: Callable[[str], float] | None = None) -> list[dict]:
    """The trainable parameters of ``module`` in groups of one learning-rate scale and one kind:
    ``matrix`` (2-D weights of hidden linear layers), ``embedding`` (other weights of 2 or more dimensions:
    embeddings, a language model's output head, convolutions), both decayed with the optimizer's ``weight_decay``, and ``vector``
    (biases, norms), never decayed. ``lr_scale(name)`` scales a parameter's learning rate."""
    # a language model's output head (``lm_head``) is an embedding too, read the other way: Muon's recipe keeps it with AdamW
    embeddings = {id(m.weight) for name, m in module.named_modules() if isinstance(m, nn.Embedding) or name.rsplit(".", 1)[-1] == "lm_head"}
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]

    def kind(p: torch.Tensor) -> str:
        return "vector" if p.dim() < 2 else "matrix" if p.dim() == 2 and id(p) not in embeddings else "embedding"

    scales = {n: lr_scale(n) if lr_scale else 1.0 for n, _ in named}
    groups = []
    for scale in sorted(set(scales.values()), reverse=True):
        for group_kind in ("matrix", "embedding", "vector"):
            params = [p for n, p in named if scales[n] == scale and kind(p) == group_kind]
            if params:
                groups.append({"params": params, "kind": group_kind, "lr_scale": scale, **({"weight_decay": 0.0} if group_kind == "vector" else {})})
    return groups


def scale_learning_rates(optimizer: Optimizer) -> Optimizer:
    """Apply each group's ``lr_scale`` to the rate the optimizer gave it, before a schedule records it."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
    return optimizer


def layer_decay_scale(names: list[str], decay: float) -> Callable[[str], float]:
    """Layer-wise learning-rate decay (ELECTRA, BEiT): the head and final norm at the full rate, each
    transformer block below ``decay`` times the one above it, the embeddings lowest. Blocks are
    found by name (``blocks.3.``, ``layer.3.``, ``layers.3.``, ``h.3.``)."""

    def depth(name: str) -> int | None:
        match = re.search(r"\.(?:blocks|layer|layers|h)\.(\d+)\.", name)
        return int(match.group(1)) + 1 if match else None

    n_blocks = max((d for d in map(depth, names) if d is not None), default=0)

    def scale(name: str) -> float:
        d = depth(name)
        if d is None:
            d = 0 if re.search(r"(embed|\bwte\b|\bwpe\b)", name) else n_blocks + 1
        return decay ** (n_blocks + 1 - d)

    return scale


class WarmupCosine(LambdaLR):
    """Linear warmup to the base rate over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` times
    it at the run's last step; stepped once per optimizer step."""

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1):
        if warmup_steps < 0 or not 0 <= min_lr_ratio <= 1:
            raise ValueError(f"schedule warmup_steps={warmup_steps}, min_lr_ratio={min_lr_ratio}: expected warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")
        self.total_steps, self.warmup_steps, self.min_lr_ratio = total_steps, warmup_steps, min_lr_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupStableDecay(LambdaLR):
    """The trapezoid of modded-nanogpt and MiniCPM: linear warmup over ``warmup_steps``, the base rate held,
    then a linear decay to ``min_lr_ratio`` times it over the last ``decay_fraction`` of the run."""

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, decay_fraction: float = 0.2, min_lr_ratio: float = 0.0):
        if warmup_steps < 0 or not 0 < decay_fraction <= 1 or not 0 <= min_lr_ratio <= 1:
            raise ValueError(
                f"schedule warmup_steps={warmup_steps}, decay_fraction={decay_fraction}, min_lr_ratio={min_lr_ratio}: "
                "expected warmup_steps >= 0, 0 < decay_fraction <= 1 and 0 <= min_lr_ratio <= 1"
            )
        self.total_steps, self.warmup_steps, self.min_lr_ratio = total_steps, warmup_steps, min_lr_ratio
        self.decay_steps = max(1, round(total_steps * decay_fraction))
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        left = self.total_steps - step  # steps still to take, this one included
        return 1.0 if left > self.decay_steps else self.min_lr_ratio + (1 - self.min_lr_ratio) * max(0, left) / self.decay_steps


class Split(Optimizer):
    """The ``matrix`` groups (2-D weights of linear layers) to ``matrices``, every other group
    (embeddings, convolutions, biases, norms) to ``rest``: one optimizer to Lightning, two inside.

        optimizer:
          class_path: tasks.optim.Split
          init_args:
            matrices: {class_path: torch.optim.Muon, init_args: {lr: 0.02}}
            rest: {class_path: torch.optim.AdamW, init_args: {lr: 3.0e-3, weight_decay: 0.1}}

    Both inner optimizers work on the very group dicts and state of this one, so schedules, gradient
    clipping and checkpoints see one optimizer."""

    def __init__(self, params: Iterable, matrices: OptimizerCallable, rest: OptimizerCallable):
        groups = list(params)
        if not groups or not isinstance(groups[0], dict):
            raise ValueError("tasks.optim.Split needs parameter groups of a kind (matrix, embedding, vector): a task's param_groups")
        mine = [g for g in groups if g.get("kind") == "matrix"]
        others = [g for g in groups if g.get("kind") != "matrix"]
        self.inner = [make(chosen) for make, chosen in ((matrices, mine), (rest, others)) if chosen]
        super().__init__([g for o in self.inner for g in o.param_groups], {})
        self._share()

    def _share(self) -> None:
        start = 0
        for optimizer in self.inner:  # the same group dicts in the same order, and one state for all
            optimizer.param_groups = self.param_groups[start : start + len(optimizer.param_groups)]
            optimizer.state = self.state
            start += len(optimizer.param_groups)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.inner:
            optimizer.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # new group dicts and a new state: hand them to the inner ones
        self._share()
