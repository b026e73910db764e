import torch
from torch.distributions import Normal, kl_divergence

from tasks.losses import gaussian_kl


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=1)
    assert torch.allclose(gaussian_kl(mu, logvar), reference, atol=1e-6)
    assert torch.equal(gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))  # the prior itself
