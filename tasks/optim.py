"""Optimizer and schedule shared by the tasks: AdamW with decay on matrices only, warmup + cosine."""

import math

import torch
from torch import nn


def adamw(module: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], fused: bool) -> torch.optim.AdamW:
    """AdamW whose weight decay applies to matrices (linear and embedding weights) only, not to
    biases and norms; ``fused`` (one kernel for all parameters) where they are all on a GPU."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = fused and bool(params) and all(p.device.type == "cuda" for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base LR over ``warmup_steps``, then cosine decay to
    ``min_lr_ratio * base`` at ``total_steps``; stepped once per optimizer step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
