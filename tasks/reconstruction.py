"""Reconstruction: an autoencoder, or a VAE (``variational: true``), on images."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MeanSquaredError
from torchmetrics.image import PeakSignalNoiseRatio

from core.batches import ImageBatch
from core.checks import positive
from tasks.base import STAGES, Task
from tasks.images import image_grid, log_image
from tasks.losses import gaussian_kl
from tasks.rng import evaluating, seeded


class Reconstruction(Task):
    """Encode images (``ImageBatch``) to a latent of ``latent_dim``, decode them back.

    The loss is the squared error summed over each image's pixels (in [-1, 1]), averaged over the
    batch; a VAE adds ``beta`` times the KL divergence of its posterior from N(0, I). Logs
    ``train/loss``, ``val/loss``, ``val/mse`` and ``val/psnr`` (on [0, 1] pixels), for a VAE also
    ``val/recon``, ``val/kl`` and ``val/elbo`` (the negative ELBO per image, beta 1), and at every
    validation a grid of inputs over their reconstructions (and VAE samples from the prior). ``test`` logs the
    same metrics as ``test/...``. ``predict`` writes ``latents.npz``: ``index`` (each image's row in the source),
    ``latent`` (``(N, latent_dim)``, the encoding's mean: a VAE's is the point its decoder reconstructs from) and
    ``label`` (``-1`` where unknown), float32 as the model computes them: exact, and one ``np.load`` away
    from an array (a CSV would round them and spread a latent over ``latent_dim`` columns).

    Args:
        encoder: images -> features (``out_dim``); e.g. ``tasks.nets.ConvEncoder``. Its weights can
            later seed a classifier.
        decoder: latents (``in_dim`` must equal ``latent_dim``) -> images in [-1, 1].
        latent_dim: size of the latent code.
        variational: a VAE instead of a plain autoencoder.
        beta: weight of the KL term (beta-VAE); 1 is the ELBO.
        n_images: how many validation images the logged grid shows.
        **kwargs: ``optimizer``, ``schedule``, ``compile`` (``tasks.base.Task``).
    """

    networks = ("encoder", "decoder")

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int = 16,
        variational: bool = False,
        beta: float = 1.0,
        n_images: int = 8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if latent_dim <= 0 or beta < 0:
            raise ValueError(f"latent_dim={latent_dim}, beta={beta}: expected latent_dim > 0 and beta >= 0")
        positive(self, n_images=n_images)
        if getattr(decoder, "in_dim", latent_dim) != latent_dim:
            raise ValueError(f"decoder in_dim={decoder.in_dim} does not match latent_dim={latent_dim}: expected them equal")
        self.encoder, self.decoder = encoder, decoder
        self.to_latent = nn.Linear(encoder.out_dim, latent_dim * (2 if variational else 1))
        self.scores = nn.ModuleDict({
            stage: nn.ModuleDict({"loss": MeanMetric(), "recon": MeanMetric(), "kl": MeanMetric(), "mse": MeanSquaredError(),
                                  "psnr": PeakSignalNoiseRatio(data_range=1.0)})
            for stage in STAGES
        })  # fmt: skip
        self.examples: torch.Tensor | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latent mean and, for a VAE, its log-variance."""
        h = self.to_latent(self.encoder(x))
        return h.chunk(2, dim=1) if self.hparams.variational else (h, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions (from the latent mean)."""
        return self.decoder(self.encode(x)[0])

    def losses(self, x: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if logvar is not None and sample else mu
        recon = self.decoder(z)
        recon_loss = F.mse_loss(recon, x, reduction="none").flatten(1).sum(1).mean()
        kl = gaussian_kl(mu, logvar).mean() if logvar is not None else torch.zeros((), device=x.device)
        return recon, recon_loss, kl

    def training_step(self, batch: ImageBatch, batch_idx: int) -> torch.Tensor:
        _, recon_loss, kl = self.losses(batch.images, sample=True)
        loss = recon_loss + self.hparams.beta * kl
        self.log("train/loss", loss, prog_bar=True)
        if self.hparams.variational:
            self.log_dict({"train/recon": recon_loss, "train/kl": kl})
        return loss

    def score(self, batch: ImageBatch, batch_idx: int, stage: str) -> None:
        x, scores = batch.images, self.scores[stage]
        recon, recon_loss, kl = self.losses(x, sample=False)
        n = len(x)
        scores["loss"].update(recon_loss + self.hparams.beta * kl, weight=n)
        scores["recon"].update(recon_loss, weight=n)
        scores["kl"].update(kl, weight=n)
        scores["mse"].update((recon + 1) / 2, (x + 1) / 2)
        scores["psnr"].update((recon + 1) / 2, (x + 1) / 2)
        if stage == "val" and batch_idx == 0:  # the grid logged at validation
            self.examples = torch.stack([x[: self.hparams.n_images], recon[: self.hparams.n_images]])

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        scores = self.scores[stage]
        metrics = {f"{stage}/{name}": scores[name].compute() for name in ("loss", "mse", "psnr")}
        if self.hparams.variational:
            recon, kl = scores["recon"].compute(), scores["kl"].compute()
            metrics.update({f"{stage}/recon": recon, f"{stage}/kl": kl, f"{stage}/elbo": recon + kl})
        for metric in scores.values():
            metric.reset()
        return metrics

    prediction_files = ("latents.npz",)

    def predict_step(self, batch: ImageBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"index": batch.index, "latent": self.encode(batch.images)[0], "label": batch.labels}

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.stage_metrics("val"), prog_bar=True)
        if self.examples is not None and not self.trainer.sanity_checking:
            rows = list(self.examples)
            if self.hparams.variational:
                rows.append(self.sample(len(rows[0])))
            self.last_sample = image_grid(rows)
            log_image(self.logger, "val/reconstructions", self.last_sample, self.global_step)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Images decoded from latents drawn from the prior, at a fixed seed (the training RNG is untouched)."""
        with seeded(seed, self.device):
            z = torch.randn(n, self.hparams.latent_dim, device=self.device)
        with evaluating(self.decoder) as decoder:
            return decoder(z)
