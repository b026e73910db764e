"""Classification: a backbone (pretrained here, from a Hugging Face model, or fresh) plus a linear head."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassPrecision, MulticlassRecall

from tasks.base import Task, check_optimizer_args
from datamodules.tokenizers import saved_tokenizer
from tasks.checkpoints import load_state, networks_of, read_checkpoint, rebuild_network, state_under
from tasks.hparams import save_hyperparameters
from tasks.optim import layer_decay_scale

# where a checkpoint of each task keeps the network that can serve as a backbone, in order of preference
BACKBONE_KEYS = ("backbone", "encoder", "net", "student.backbone", "student.net")
MODES = ("finetune", "linear_probe")
POOLINGS = ("mean", "last", "first")


class Classification(Task):
    """A backbone and a linear head, trained with cross-entropy on labelled data.

    Text batches are ``(ids, mask, labels)``: the backbone's hidden states ``features(ids, mask)``
    are pooled over the real tokens. Image batches are ``(images, labels)``: the backbone's output
    is the feature vector. Labels of -1 (unlabelled examples) take no part in the loss.

    Args:
        backbone: a network from ``tasks.nets`` (``GPT``, ``GPTEncoder``, ``ConvEncoder``,
            ``HuggingFace``...). Optional with ``backbone_ckpt``, which then rebuilds it from the
            checkpoint's own hyperparameters.
        backbone_ckpt: a checkpoint of this platform whose network initializes the backbone: the GPT
            of a CausalLM run, the encoder of a reconstruction or contrastive run, the backbone of a
            classifier, a distillation's student.
        num_classes: the head's outputs; None takes the data's.
        mode: ``finetune`` trains everything; ``linear_probe`` freezes the backbone (eval mode, no
            gradients) and trains the head alone.
        pooling: for sequences: ``mean`` over the real tokens, the ``last`` real token (what a causal
            model has read everything by), or the ``first`` (BERT's [CLS]).
        layer_decay: layer-wise learning-rate decay: each transformer block learns at ``layer_decay``
            times the rate of the block above it (1.0: off).
        head_dropout: dropout on the pooled features.
        compile: compile the backbone in place with ``torch.compile``.
    """

    networks = ("backbone",)

    def __init__(
        self,
        backbone: nn.Module | None = None,
        backbone_ckpt: str | None = None,
        num_classes: int | None = None,
        mode: str = "finetune",
        pooling: str = "mean",
        layer_decay: float = 1.0,
        head_dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 20,
        min_lr_ratio: float = 0.1,
        compile: bool = False,
    ):
        super().__init__()
        if mode not in MODES or pooling not in POOLINGS:
            raise ValueError(f"mode={mode!r}, pooling={pooling!r}: expected mode in {MODES} and pooling in {POOLINGS}")
        if not num_classes or num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: expected at least 2 (set it, or let the datamodule provide it)")
        if not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay={layer_decay}: expected a number in (0, 1]")
        check_optimizer_args(lr, warmup_steps, min_lr_ratio)
        save_hyperparameters(self)
        self.backbone_tokenizer = None  # the tokenizer backbone_ckpt's data was tokenized with, if it saved one
        if backbone_ckpt:
            backbone = self._from_checkpoint(backbone, backbone_ckpt)
        if backbone is None:
            raise ValueError("Classification: no backbone; expected model.backbone (a network config) or model.backbone_ckpt (a checkpoint)")
        width = getattr(backbone, "out_dim", None)
        if not width:
            raise ValueError(f"backbone {type(backbone).__name__}: its feature width is unknown (expected an out_dim attribute)")
        self.backbone, self.num_classes = backbone, num_classes
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(width, num_classes))
        if mode == "linear_probe":  # frozen: no gradients, dropout off, normalization statistics kept
            self.backbone.requires_grad_(False).eval()  # Lightning keeps the mode a module is built in
        metrics = MetricCollection({
            "acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=-1),
            "f1": MulticlassF1Score(num_classes, average="macro", ignore_index=-1),
            "precision": MulticlassPrecision(num_classes, average="macro", ignore_index=-1),
            "recall": MulticlassRecall(num_classes, average="macro", ignore_index=-1),
        })  # fmt: skip
        self.metrics = nn.ModuleDict({stage: metrics.clone(prefix=f"{stage}/") for stage in ("val", "test")})
        self.losses = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def _from_checkpoint(self, backbone: nn.Module | None, path: str) -> nn.Module:
        """The configured backbone loaded with the checkpoint's weights, or, when none is configured,
        the checkpoint's network rebuilt from its saved config (recorded here, so that this task's
        own checkpoints rebuild without the backbone checkpoint)."""
        checkpoint = read_checkpoint(path, what="backbone_ckpt")
        self.backbone_tokenizer = saved_tokenizer(checkpoint)
        if backbone is None:
            backbone, key = rebuild_network(checkpoint, BACKBONE_KEYS, f"backbone_ckpt {path}")
            self.hparams["backbone"] = networks_of(checkpoint)[key]
            return backbone
        key = next((k for k in BACKBONE_KEYS if state_under(checkpoint, k)), None)
        if key is None:
            raise ValueError(f"backbone_ckpt {path}: no backbone in it (expected tensors under {', '.join(BACKBONE_KEYS)})")
        load_state(backbone, checkpoint, key, f"backbone_ckpt {path}")
        return backbone

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.mode == "linear_probe":
            self.backbone.eval()
        return self

    def lr_scale(self):
        if self.hparams.layer_decay == 1.0:
            return None
        return layer_decay_scale([n for n, _ in self.named_parameters()], self.hparams.layer_decay)

    # -- the data must fit the model ---------------------------------------------------------
    def setup(self, stage: str) -> None:
        self.check_data(self.trainer.datamodule)

    def check_data(self, datamodule) -> None:
        classes = getattr(datamodule, "num_classes", None)
        if classes and classes != self.num_classes:
            names = ", ".join(getattr(datamodule, "classes", [])[:6])
            raise ValueError(f"model num_classes={self.num_classes} does not match the data's {classes} classes ({names}): expected {classes}")
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is None:
            return
        data_vocab, net_vocab = tokenizer.vocab_size, getattr(self.backbone, "vocab_size", None)
        if net_vocab and not data_vocab <= net_vocab < data_vocab + 64:  # a vocabulary padded to a multiple of 64 is fine
            raise ValueError(
                f"data.tokenizer has {data_vocab} tokens but the backbone embeds {net_vocab}: "
                "tokenize with the backbone's own tokenizer (for a checkpoint: data.tokenizer: <the checkpoint>)"
            )
        if self.backbone_tokenizer is not None and tokenizer.to_str() != self.backbone_tokenizer:
            raise ValueError(
                f"data.tokenizer is not the one backbone_ckpt {self.hparams.backbone_ckpt} was trained with: "
                f"expected data.tokenizer: {self.hparams.backbone_ckpt}"
            )

    # -- forward, shared with distillation -----------------------------------------------------
    def features(self, batch) -> torch.Tensor:
        if len(batch) == 2:  # (images, labels)
            return self.backbone(batch[0])
        ids, mask, _ = batch
        h = self.backbone.features(ids, mask)
        if self.hparams.pooling == "first":
            return h[:, 0]
        if self.hparams.pooling == "last":
            return h[torch.arange(len(h), device=h.device), mask.sum(1) - 1]
        weights = mask.unsqueeze(-1).to(h.dtype)
        return (h * weights).sum(1) / weights.sum(1)

    def logits_and_targets(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, classes)`` and labels ``(B,)``."""
        if self.hparams.mode == "linear_probe":
            with torch.no_grad():
                features = self.features(batch)
        else:
            features = self.features(batch)
        return self.head(features), batch[-1]

    def evaluate(self, logits: torch.Tensor, targets: torch.Tensor, stage: str = "val") -> None:
        self.losses[stage].update(F.cross_entropy(logits.float(), targets, ignore_index=-1), weight=(targets >= 0).sum())
        self.metrics[stage].update(logits, targets)

    def val_metrics(self, stage: str = "val") -> dict[str, torch.Tensor]:
        results = {f"{stage}/loss": self.losses[stage].compute(), **self.metrics[stage].compute()}
        self.losses[stage].reset()
        self.metrics[stage].reset()
        return results

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        logits, labels = self.logits_and_targets(batch)
        labeled = labels >= 0
        loss = F.cross_entropy(logits.float(), labels, ignore_index=-1)
        accuracy = ((logits.argmax(-1) == labels) & labeled).sum() / labeled.sum().clamp(min=1)
        self.log_dict({"train/loss": loss, "train/acc": accuracy}, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.evaluate(*self.logits_and_targets(batch), "val")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics("val"), prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.evaluate(*self.logits_and_targets(batch), "test")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.val_metrics("test"))

    def predict_step(self, batch, batch_idx: int) -> dict[str, list]:
        logits, labels = self.logits_and_targets(batch)
        confidence, predicted = logits.float().softmax(-1).max(-1)
        classes = getattr(self.trainer.datamodule, "classes", None) or list(range(self.hparams.num_classes))
        return {
            "label": [classes[i] if i >= 0 else "" for i in labels.tolist()],
            "predicted": [classes[i] for i in predicted.tolist()],
            "confidence": [round(c, 4) for c in confidence.tolist()],
        }

    def tokens_in(self, batch) -> int:
        return batch[0].numel() if len(batch) == 3 else 0  # text: padded tokens seen; images: none
