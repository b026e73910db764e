"""Loss functions of the objectives, small and tested against plain references (tests/test_losses.py)."""

import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, in closed form: 0.5 * sum(mu^2 + var - 1 - log var)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
