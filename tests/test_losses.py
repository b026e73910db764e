import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from tasks.losses import distillation_loss, gaussian_kl


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=1)
    assert torch.allclose(gaussian_kl(mu, logvar), reference, atol=1e-6)
    assert torch.equal(gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))  # the prior itself


def test_nt_xent_matches_a_loop_over_pairs():
    import math


    from tasks.losses import nt_xent

    torch.manual_seed(0)
    z1, z2, t = torch.randn(4, 8), torch.randn(4, 8), 0.5
    z = F.normalize(torch.cat([z1, z2]), dim=1).tolist()
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    total = 0.0
    for i in range(8):
        partner = (i + 4) % 8
        denominator = sum(math.exp(cos(z[i], z[k]) / t) for k in range(8) if k != i)
        total += -math.log(math.exp(cos(z[i], z[partner]) / t) / denominator)
    assert math.isclose(nt_xent(z1, z2, t).item(), total / 8, rel_tol=1e-5)
    assert nt_xent(z1, z1, 0.05) < nt_xent(z1, z2, 0.05)  # identical views are easy positives


def test_gan_losses_follow_their_formulas():
    import pytest

    from tasks.losses import discriminator_loss, generator_loss, gradient_penalty

    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sigmoid = torch.sigmoid
    assert torch.isclose(discriminator_loss("non_saturating", real, fake), (-sigmoid(real).log() - (1 - sigmoid(fake)).log()).mean())
    assert torch.isclose(generator_loss("non_saturating", fake), -sigmoid(fake).log().mean())
    assert torch.isclose(discriminator_loss("hinge", real, fake), torch.tensor((0 + 2) / 2 + (1.5 + 0) / 2))
    assert torch.isclose(discriminator_loss("wgan_gp", real, fake), fake.mean() - real.mean())
    assert torch.isclose(generator_loss("hinge", fake), -fake.mean())
    with pytest.raises(ValueError, match="GAN loss 'lsgan': expected one of non_saturating, hinge, wgan_gp"):
        discriminator_loss("lsgan", real, fake)
    # a linear critic w.x has gradient w everywhere: the penalty is (|w| - 1)^2
    w = torch.tensor([3.0, 4.0])
    penalty = gradient_penalty(lambda x: x @ w, torch.randn(5, 2), torch.randn(5, 2))
    assert torch.isclose(penalty, torch.tensor(16.0))


def test_distillation_loss_is_hintons_and_skips_what_it_must():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    targets = torch.tensor([2, -1, 0, -100, 3])  # -1: no label (KL only); -100: not a prediction
    T, alpha = 2.0, 0.7
    loss, kl, ce = distillation_loss(student, teacher, targets, alpha, T)
    rows = [0, 1, 2, 4]
    reference_kl = F.kl_div(F.log_softmax(student[rows] / T, -1), F.softmax(teacher[rows] / T, -1), reduction="batchmean") * T**2
    reference_ce = F.cross_entropy(student[[0, 2, 4]], targets[[0, 2, 4]])
    torch.testing.assert_close(kl, reference_kl)
    torch.testing.assert_close(ce, reference_ce)
    torch.testing.assert_close(loss, alpha * reference_kl + (1 - alpha) * reference_ce)
    _, kl_same, _ = distillation_loss(teacher, teacher, targets, alpha, T)
    assert kl_same.abs() < 1e-6  # a student that matches its teacher has nothing left to learn from it
