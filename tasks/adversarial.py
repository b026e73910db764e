"""Adversarial training: a GAN with manual optimization of a generator and a critic."""

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from core.batches import ImageBatch
from core.checks import positive
from core.data import DataInfo
from tasks.base import Task
from tasks.checkpoints import load_network
from tasks.images import image_grid, log_image
from tasks.losses import GAN_LOSSES, discriminator_loss, generator_loss, gradient_penalty
from tasks.nets import ConvEncoder
from tasks.optim import param_groups, scale_learning_rates
from tasks.rng import evaluating, seeded


class FrozenFeatures(nn.Module):
    """A feature extractor for FID that stays in eval mode and out of every optimizer."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.num_features = encoder.out_dim

    def train(self, mode: bool = True) -> "FrozenFeatures":
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class GAN(Task):
    """A generator maps noise to images; a critic (discriminator) scores images as real or generated.

    Each training step (an ``ImageBatch``) updates the critic once and, every ``n_critic`` steps, the
    generator; the gradients of each are clipped explicitly to ``clip_grad`` (norm). Each network gets
    its own ``optimizer`` (the critic's rate times ``critic_lr_scale``) and ``schedule`` (stepped with it). ``loss``: ``non_saturating``
    (the original GAN's critic loss, -log D(G(z)) for the generator), ``hinge``, or ``wgan_gp``
    (Wasserstein loss with gradient penalty ``gp_weight``; use a critic without batch norm).
    ``trainer.max_steps`` counts optimizer steps of both networks.

    At every validation: ``val/fid``, the Fréchet distance between the features of the validation
    images and of as many generated ones, and a grid of samples. The features come from
    ``fid_encoder_ckpt`` (the main network, an encoder, of a reconstruction or contrastive run on the
    same data) or, without one, from a fixed randomly initialized conv encoder; compare FIDs only under
    one extractor. ``test`` logs ``test/fid``, against the test images. ``predict`` draws one sample per test
    image (a batch's from the seed of its number, as test does) and writes them as ``samples.npz``, ``images``
    ``(N, C, H, W)`` in [0, 1] and the ``seed`` each was drawn from (``GAN.sample(batch size, seed)``), and the
    first 64 as a grid, ``samples.png``. ``**kwargs``: ``optimizer``, ``schedule``, ``compile`` (``tasks.base.Task``).
    """

    networks = ("generator", "discriminator")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int = 64,
        loss: str = "non_saturating",
        n_critic: int = 1,
        gp_weight: float = 10.0,
        clip_grad: float = 10.0,
        critic_lr_scale: float = 1.0,
        fid_encoder_ckpt: str | None = None,
        n_images: int = 16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loss not in GAN_LOSSES:
            raise ValueError(f"loss={loss!r}: expected one of {', '.join(GAN_LOSSES)}")
        if latent_dim <= 0 or n_critic < 1 or min(clip_grad, critic_lr_scale) <= 0:
            raise ValueError(f"latent_dim={latent_dim}, n_critic={n_critic}, clip_grad={clip_grad}, critic_lr_scale={critic_lr_scale}: expected all positive")
        positive(self, n_images=n_images)
        if getattr(generator, "in_dim", latent_dim) != latent_dim:
            raise ValueError(f"generator in_dim={generator.in_dim} does not match latent_dim={latent_dim}: expected them equal")
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        self.fid_encoder_ckpt = fid_encoder_ckpt
        self.fid: FrechetInceptionDistance | None = None  # built in setup, when the image shape is known

    def use_data(self, info: DataInfo) -> None:
        self.data = info
        if self.fid is not None:
            return
        if self.fid_encoder_ckpt:
            encoder = load_network(self.fid_encoder_ckpt, what="fid_encoder_ckpt")
        else:
            if info.image_shape is None:
                raise ValueError("GAN: the data declares no image_shape: expected images (datamodules.ImageDataModule)")
            channels, size, _ = info.image_shape
            with seeded(0):  # the same random extractor in every run
                encoder = ConvEncoder(channels, size, width=32, out_dim=64, norm=False)
        self.fid = FrechetInceptionDistance(feature=FrozenFeatures(encoder), normalize=True).to(self.device)

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.hparams.latent_dim, device=self.device)

    def training_step(self, batch: ImageBatch, batch_idx: int) -> None:
        h = self.hparams
        real = batch.images
        opt_g, opt_d = self.optimizers()
        schedule_g, schedule_d = self.lr_schedulers() or (None, None)  # schedule: null keeps the rates constant

        fake = self.generator(self.noise(len(real))).detach()
        d_loss = discriminator_loss(h.loss, self.discriminator(real), self.discriminator(fake))
        if h.loss == "wgan_gp":
            d_loss = d_loss + h.gp_weight * gradient_penalty(self.discriminator, real, fake)
        self._step(opt_d, d_loss, schedule_d)
        self.log("train/d_loss", d_loss, prog_bar=True)

        if (batch_idx + 1) % h.n_critic == 0:
            g_loss = generator_loss(h.loss, self.discriminator(self.generator(self.noise(len(real)))))
            self._step(opt_g, g_loss, schedule_g)
            self.log("train/g_loss", g_loss, prog_bar=True)

    def _step(self, optimizer, loss: torch.Tensor, schedule) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip_grad, gradient_clip_algorithm="norm")
        optimizer.step()
        if schedule is not None:
            schedule.step()

    def score(self, batch: ImageBatch, batch_idx: int, stage: str) -> None:
        real = batch.images  # one FID metric serves validation and test, which never run at once
        self.fid.update((real + 1) / 2, real=True)
        self.fid.update((self.sample(len(real), seed=batch_idx) + 1) / 2, real=False)

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        metrics = {f"{stage}/fid": self.fid.compute()}
        self.fid.reset()
        return metrics

    prediction_files = ("samples.npz", "samples.png")

    def predict_step(self, batch: ImageBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        images = (self.sample(len(batch.images), seed=batch_idx) + 1) / 2
        return {"images": images, "seed": torch.full((len(images),), batch_idx)}

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.stage_metrics("val"), prog_bar=True)
        if not self.trainer.sanity_checking:
            self.last_sample = image_grid(list(self.sample(self.hparams.n_images).chunk(2)))
            log_image(self.logger, "val/samples", self.last_sample, self.global_step)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Generated images from a fixed seed, leaving the training RNG untouched."""
        with seeded(seed, self.device):
            z = self.noise(n)
        with evaluating(self.generator) as generator:
            return generator(z)

    def configure_optimizers(self):
        optimizers = [scale_learning_rates(self.make_optimizer(param_groups(network))) for network in (self.generator, self.discriminator)]
        for group in optimizers[1].param_groups:
            group["lr"] *= self.hparams.critic_lr_scale
        if self.make_schedule is None:
            return optimizers
        # max_steps counts the steps of both networks: the critic steps once a batch, the generator every n_critic batches
        n_critic = self.hparams.n_critic
        batches = int(self.trainer.estimated_stepping_batches) * n_critic // (n_critic + 1)
        return optimizers, [self.make_schedule(optimizers[0], max(1, batches // n_critic)), self.make_schedule(optimizers[1], batches)]
