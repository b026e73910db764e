"""Loss functions of the objectives, small and tested against plain references (tests/test_losses.py)."""

import torch
import torch.nn.functional as F

from core.labels import IGNORE, UNLABELED


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, in closed form: 0.5 * sum(mu^2 + var - 1 - log var)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: row i of ``z1`` and of ``z2`` are two views of one sample; each of the 2N
    embeddings must pick its partner out of the other 2N - 2 (all in-batch negatives), by cosine
    similarity over ``temperature``. Averaged over the 2N anchors."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partners)


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The critic's loss on its scores of real and generated samples (the gradient penalty of
    ``wgan_gp`` is added separately)."""
    if kind == "non_saturating":  # -log D(x) - log(1 - D(G(z))), with D = sigmoid(score)
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "wgan_gp":
        return fake.mean() - real.mean()
    raise ValueError(f"GAN loss {kind!r}: expected one of {', '.join(GAN_LOSSES)}")


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss on the critic's scores of its samples: -log D(G(z)) (non-saturating),
    or -score (hinge, WGAN)."""
    return F.softplus(-fake).mean() if kind == "non_saturating" else -fake.mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: (||grad critic(x_hat)|| - 1)^2 at random interpolations x_hat of real and fake."""
    alpha = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


GAN_LOSSES = ("non_saturating", "hinge", "wgan_gp")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, alpha: float, temperature: float):
    """Knowledge distillation (Hinton et al., 2015): ``alpha * T^2 * KL(teacher_T || student_T) +
    (1 - alpha) * CE(student, targets)`` over rows of logits ``(N, classes)``.

    Rows whose target is ``IGNORE`` take no part (padding, prompt tokens); rows whose target is
    ``UNLABELED`` get the KL term only, so a teacher can label data that has none. Returns the loss, the KL
    and the cross-entropy; no host synchronization."""
    kept = (targets != IGNORE).float()
    log_p_student = F.log_softmax(student.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    kl_rows = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    kl = (kl_rows * kept).sum() / kept.sum().clamp(min=1) * temperature**2
    labels = targets.where(targets >= 0, UNLABELED)  # IGNORE and UNLABELED alike: no hard label
    ce = F.cross_entropy(student.float(), labels, ignore_index=UNLABELED, reduction="sum") / (labels != UNLABELED).sum().clamp(min=1)
    return alpha * kl + (1 - alpha) * ce, kl, ce
