"""Hidden states of a sequence pooled into one vector: shared by text encoders and classifiers."""

import torch

POOLINGS = ("mean", "last", "first")


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """``(B, T, C)`` -> ``(B, C)``: the ``mean`` over the real tokens (``mask``, padding on the right;
    None: all are real), the ``last`` real token (what a causal model has read everything by), or the
    ``first`` (BERT's [CLS])."""
    if how not in POOLINGS:
        raise ValueError(f"pooling={how!r}: expected one of {', '.join(POOLINGS)}")
    if how == "first":
        return hidden[:, 0]
    if mask is None:
        return hidden[:, -1] if how == "last" else hidden.mean(dim=1)
    if how == "last":
        return hidden[torch.arange(len(hidden), device=hidden.device), mask.sum(1) - 1]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
