"""Optimizer and schedule shared by the tasks: AdamW with decay on matrices only, warmup + cosine."""

import math
import re

import torch
from torch import nn


def adamw(module: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], fused: bool, lr_scale=None) -> torch.optim.AdamW:
    """AdamW whose weight decay applies to matrices (linear and embedding weights) only, not to
    biases and norms; ``lr_scale(name)`` scales a parameter's learning rate (layer-wise decay);
    ``fused`` (one kernel for all parameters) where they are all on a GPU."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    scales = {n: lr_scale(n) if lr_scale else 1.0 for n, _ in named}
    groups = []
    for scale in sorted(set(scales.values()), reverse=True):
        for matrices, decay in ((True, weight_decay), (False, 0.0)):
            params = [p for n, p in named if scales[n] == scale and (p.dim() >= 2) == matrices]
            if params:
                groups.append({"params": params, "weight_decay": decay, "lr": lr * scale})
    fused = fused and bool(named) and all(p.device.type == "cuda" for _, p in named)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def layer_decay_scale(names: list[str], decay: float):
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


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base LR over ``warmup_steps``, then cosine decay to
    ``min_lr_ratio * base`` at ``total_steps``; stepped once per optimizer step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
