"""Contrastive learning: SimCLR on images (two augmented views), SimCSE on text (dropout as the noise)."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from core.batches import ImageBatch, TokenBatch
from core.checks import positive
from core.data import DataInfo
from core.labels import UNLABELED
from tasks.base import STAGES, Task
from tasks.checkpoints import init_from
from tasks.losses import nt_xent
from tasks.rng import seeded


class Contrastive(Task):
    """An encoder plus a projection head trained with NT-Xent: two views of each sample must find
    each other among all other samples of the (global) batch.

    Views come from ``augment`` (e.g. ``tasks.augment.ImageAugment``), or, without one, from the
    encoder's own dropout: the same input encoded twice (SimCSE). Under DDP the projections of all
    ranks are gathered, so every rank's samples are negatives for every other's.

    Batches are ``ImageBatch``es or ``TokenBatch``es (whose targets are not used). With labelled data
    (``num_classes``, the data's by ``from_data``), two standard evaluations of the
    encoder are logged at every validation: ``val/probe_acc``, a linear probe trained online on
    detached features (it cannot shape the encoder), and ``val/knn_acc``, a k-nearest-neighbour vote
    (cosine, over the training images' features) for each validation image. ``test`` logs the same as
    ``test/...`` on the test split. ``predict`` writes ``embeddings.npz``: ``index`` (each example's position in
    the source), ``embedding`` (``(N, out_dim)``, the encoder's features, what a probe or a search reads) and,
    for labelled data, ``label``.

    Args:
        encoder: inputs -> features (``out_dim``); e.g. ``tasks.nets.ConvEncoder`` or ``GPTEncoder``.
        projection_dim: output of the 2-layer projection head the loss sees (SimCLR).
        temperature: NT-Xent's temperature, > 0.
        augment: makes a view of a batch; None encodes the input twice with dropout on.
        num_classes: for the probe and kNN; None (no labels) turns them off.
        knn_k: neighbours that vote.
        init_ckpt: start the encoder from the main network of this checkpoint (SimCSE from a pretrained
            GPT: a CausalLM checkpoint seeds a ``GPTEncoder`` of its size).
        **kwargs: ``optimizer``, ``schedule``, ``compile`` (``tasks.base.Task``).
    """

    networks = ("encoder",)
    from_data = {"num_classes": "num_classes"}

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 64,
        temperature: float = 0.2,
        augment: nn.Module | None = None,
        num_classes: int | None = None,
        knn_k: int = 20,
        init_ckpt: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if temperature <= 0 or projection_dim <= 0:
            raise ValueError(f"temperature={temperature}, projection_dim={projection_dim}: expected both > 0")
        positive(self, knn_k=knn_k)
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"Contrastive num_classes={num_classes}: expected at least 2, or None (no labels: no probe nor kNN)")
        self.encoder, self.augment = encoder, augment
        if init_ckpt:
            init_from(self.encoder, init_ckpt)
        width = encoder.out_dim
        self.projector = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection_dim))
        self.probe = nn.Linear(width, num_classes) if num_classes else None
        self.losses = nn.ModuleDict({stage: MeanMetric() for stage in STAGES})
        accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=UNLABELED) if num_classes else None
        self.probe_accuracies = nn.ModuleDict({stage: accuracy.clone() for stage in STAGES}) if num_classes else None
        self.features: list[tuple[torch.Tensor, torch.Tensor]] = []  # of the validation or test under way, for kNN

    def use_data(self, info: DataInfo) -> None:
        if self.augment is not None and info.image_shape and hasattr(self.augment, "check_fits"):  # an augment may say what it fits
            self.augment.check_fits(info.image_shape)
        self.data = info

    @staticmethod
    def split(batch: ImageBatch | TokenBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(inputs, labels): images with their labels, or token ids without any."""
        return (batch.images, batch.labels) if isinstance(batch, ImageBatch) else (batch.input_ids, None)

    def contrastive_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NT-Xent of two views of ``x``, and the features of the first view."""
        views = (self.augment(x), self.augment(x)) if self.augment is not None else (x, x)
        h1, h2 = self.encoder(views[0]), self.encoder(views[1])
        z1, z2 = self.projector(h1), self.projector(h2)
        if self.trainer.world_size > 1:  # negatives from every rank; gradients flow back through the gather
            z1, z2 = (self.all_gather(z, sync_grads=True).flatten(0, 1) for z in (z1, z2))
        return nt_xent(z1, z2, self.hparams.temperature), h1

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = self.split(batch)
        loss, h = self.contrastive_loss(x)
        self.log("train/loss", loss, prog_bar=True)
        if self.probe is not None and y is not None:
            # unlabelled images (-1) take no part; the mean is taken on the device: nothing waits on the host
            probe_loss = F.cross_entropy(self.probe(h.detach()), y, ignore_index=UNLABELED, reduction="sum") / (y != UNLABELED).sum().clamp(min=1)
            self.log("train/probe_loss", probe_loss)
            loss = loss + probe_loss
        return loss

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.stage_metrics("val"), prog_bar=True)

    prediction_files = ("embeddings.npz",)

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = self.split(batch)
        return {"index": batch.index, "embedding": self.encoder(x), **({"label": y} if y is not None else {})}

    def score(self, batch, batch_idx: int, stage: str) -> None:
        x, y = self.split(batch)
        # fixed-seed views with dropout as in training, leaving the training RNG untouched
        with seeded(batch_idx, self.device):
            self.encoder.train(self.augment is None)
            loss, _ = self.contrastive_loss(x)
            self.encoder.eval()
        self.losses[stage].update(loss, weight=len(x))
        if self.probe is not None and y is not None:
            h = self.encoder(x)
            self.probe_accuracies[stage].update(self.probe(h), y)
            self.features.append((F.normalize(h, dim=1), y))

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        metrics = {f"{stage}/loss": self.losses[stage].compute()}
        self.losses[stage].reset()
        if self.features:
            metrics[f"{stage}/probe_acc"] = self.probe_accuracies[stage].compute()
            metrics[f"{stage}/knn_acc"] = self.knn_accuracy()
            self.probe_accuracies[stage].reset()
            self.features.clear()
        return metrics

    @torch.no_grad()
    def knn_accuracy(self) -> torch.Tensor:
        """Share of validation (or test) samples whose k nearest training samples (cosine) vote their label."""
        # the loader fit already has: building one anew (or its iterator) would draw from the training RNG
        loader = self.trainer.train_dataloader or self.trainer.datamodule.train_dataloader()
        train_set = loader.dataset
        bank, bank_labels = [], []
        for start in range(0, len(train_set), 256):  # no DataLoader: creating its iterator draws from the RNG
            batch = loader.collate_fn([train_set[i] for i in range(start, min(start + 256, len(train_set)))])
            x, y = self.split(batch)
            bank.append(F.normalize(self.encoder(x.to(self.device)), dim=1))
            bank_labels.append(y.to(self.device))
        bank, bank_labels = torch.cat(bank), torch.cat(bank_labels)
        labeled = bank_labels != UNLABELED  # labelled images only vote
        bank, bank_labels = bank[labeled], bank_labels[labeled]
        features, labels = (torch.cat(t) for t in zip(*self.features))
        features, labels = features[labels != UNLABELED], labels[labels != UNLABELED]
        neighbours = (features @ bank.T).topk(min(self.hparams.knn_k, len(bank)), dim=1).indices
        votes = F.one_hot(bank_labels[neighbours], self.hparams.num_classes).sum(dim=1)
        return (votes.argmax(dim=1) == labels).float().mean()
