"""Classification: a backbone (pretrained here, from a Hugging Face model, or fresh) plus a linear head."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from core.batches import ImageBatch, TextBatch
from core.checkpoints import load_state, read_checkpoint, record, saved_tokenizer
from core.checks import fraction
from core.data import DataInfo
from core.labels import UNLABELED
from tasks.base import STAGES, Task
from tasks.checkpoints import main_network
from tasks.images import confusion_figure, figure_image
from tasks.nets.pooling import POOLINGS, pool
from tasks.optim import layer_decay_scale

MODES = ("finetune", "linear_probe")


class Classification(Task):
    """A backbone and a linear head, trained with cross-entropy on labelled data.

    On a ``TextBatch`` the backbone's hidden states ``features(ids, mask)`` are pooled over the real
    tokens; on an ``ImageBatch`` the backbone's output is the feature vector. ``UNLABELED`` examples
    take no part in the loss.

    Validation and test log ``loss``, ``acc``, macro ``f1``, ``precision`` and ``recall`` (``val/...``,
    ``test/...``); a test also draws its confusion matrix, the class names on its axes
    (``<run>/confusion_matrix.png``, and ``test/confusion_matrix`` to a logger that takes images). ``predict``
    writes ``predictions.csv``: a row per example, ``index`` (its position in the source) and what the data
    says of the input (the text; an image file's path), ``label`` (empty where unknown), ``predicted`` and the
    probability of every class, a column ``p_<class>`` each.

    Args:
        backbone: a network from ``tasks.nets`` (``GPT``, ``GPTEncoder``, ``ConvEncoder``,
            ``HuggingFace``...). Optional with ``backbone_ckpt``, which then rebuilds it from the
            checkpoint's own hyperparameters.
        backbone_ckpt: a checkpoint of this platform whose main network initializes the backbone: the
            GPT of a CausalLM run, the encoder of a reconstruction or contrastive run, the backbone of a
            classifier, a distillation's student's.
        num_classes: the head's outputs; None takes the data's (``from_data``).
        mode: ``finetune`` trains everything; ``linear_probe`` freezes the backbone (eval mode, no
            gradients) and trains the head alone.
        pooling: for sequences: ``mean`` over the real tokens, the ``last`` real token (what a causal
            model has read everything by), or the ``first`` (BERT's [CLS]).
        layer_decay: layer-wise learning-rate decay: each transformer block learns at ``layer_decay``
            times the rate of the block above it (1.0: off).
        head_dropout: dropout on the pooled features.
        **kwargs: ``optimizer``, ``schedule``, ``compile`` (``tasks.base.Task``).
    """

    networks = ("backbone",)
    from_data = {"num_classes": "num_classes"}

    def __init__(
        self,
        backbone: nn.Module | None = None,
        backbone_ckpt: str | None = None,
        num_classes: int | None = None,
        mode: str = "finetune",
        pooling: str = "mean",
        layer_decay: float = 1.0,
        head_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in MODES or pooling not in POOLINGS:
            raise ValueError(f"mode={mode!r}, pooling={pooling!r}: expected mode in {MODES} and pooling in {POOLINGS}")
        if not num_classes or num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: expected at least 2 (set it, or let the datamodule provide it)")
        if not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay={layer_decay}: expected a number in (0, 1]")
        fraction(self, head_dropout=head_dropout)
        self.backbone_tokenizer = None  # the tokenizer backbone_ckpt's data was tokenized with, if it saved one
        if backbone_ckpt:
            backbone = self._from_checkpoint(backbone, backbone_ckpt)
        if backbone is None:
            raise ValueError("Classification: no backbone; expected model.backbone (a network config) or model.backbone_ckpt (a checkpoint)")
        width = getattr(backbone, "out_dim", None)  # the one attribute a backbone must declare
        if not width:
            raise ValueError(f"backbone {type(backbone).__name__}: its feature width is unknown (expected an out_dim attribute)")
        self.backbone, self.num_classes = backbone, num_classes
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(width, num_classes))
        if mode == "linear_probe":  # frozen: no gradients, dropout off, normalization statistics kept
            self.backbone.requires_grad_(False).eval()  # Lightning keeps the mode a module is built in
        metrics = MetricCollection({
            "acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=UNLABELED),
            "f1": MulticlassF1Score(num_classes, average="macro", ignore_index=UNLABELED),
            "precision": MulticlassPrecision(num_classes, average="macro", ignore_index=UNLABELED),
            "recall": MulticlassRecall(num_classes, average="macro", ignore_index=UNLABELED),
        })  # fmt: skip
        self.metrics = nn.ModuleDict({stage: metrics.clone(prefix=f"{stage}/") for stage in STAGES})
        self.losses = nn.ModuleDict({stage: MeanMetric() for stage in STAGES})
        self.confusion = MulticlassConfusionMatrix(num_classes, ignore_index=UNLABELED)  # of the test

    def _from_checkpoint(self, backbone: nn.Module | None, path: str) -> nn.Module:
        """The configured backbone loaded with the checkpoint's weights, or, when none is configured,
        the checkpoint's network rebuilt from its saved config (recorded here, so that this task's
        own checkpoints rebuild without the backbone checkpoint)."""
        checkpoint = read_checkpoint(path, what="backbone_ckpt")
        self.backbone_tokenizer = saved_tokenizer(checkpoint)
        if backbone is None:
            backbone, self.hparams["backbone"] = main_network(checkpoint, f"backbone_ckpt {path}")
            return backbone
        load_state(backbone, checkpoint, record(checkpoint)["main_network"], f"backbone_ckpt {path}")
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

    @property
    def num_outputs(self) -> int:
        """The size of each prediction: the classes (what a distillation's teacher and student share)."""
        return self.num_classes

    # -- the data must fit the model ---------------------------------------------------------
    def use_data(self, info: DataInfo) -> None:
        if info.num_classes and info.num_classes != self.num_classes:
            names = ", ".join(info.classes[:6])
            raise ValueError(f"model num_classes={self.num_classes} does not match the data's {info.num_classes} classes ({names}): expected {info.num_classes}")
        self.data = info
        tokenizer = info.tokenizer
        if tokenizer is None:
            return
        data_vocab, net_vocab = tokenizer.vocab_size, getattr(self.backbone, "vocab_size", None)  # image backbones have none
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
    def features(self, batch: TextBatch | ImageBatch) -> torch.Tensor:
        if isinstance(batch, ImageBatch):
            return self.backbone(batch.images)
        return pool(self.backbone.features(batch.input_ids, batch.mask), batch.mask, self.hparams.pooling)

    def logits_and_targets(self, batch: TextBatch | ImageBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, classes)`` and labels ``(B,)``."""
        if self.hparams.mode == "linear_probe":
            with torch.no_grad():
                features = self.features(batch)
        else:
            features = self.features(batch)
        return self.head(features), batch.labels

    def evaluate(self, logits: torch.Tensor, targets: torch.Tensor, stage: str = "val") -> None:
        self.losses[stage].update(F.cross_entropy(logits.float(), targets, ignore_index=UNLABELED), weight=(targets != UNLABELED).sum())
        self.metrics[stage].update(logits, targets)
        if stage == "test":
            self.confusion.update(logits, targets)

    def figures(self) -> dict[str, torch.Tensor]:
        """The confusion matrix of the test just scored, as an image (a distillation logs its student's)."""
        matrix = self.confusion.compute()
        self.confusion.reset()
        return {"confusion_matrix": figure_image(confusion_figure(matrix, self.class_names))}

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.data.classes or tuple(str(c) for c in range(self.num_classes))

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        results = {f"{stage}/loss": self.losses[stage].compute(), **self.metrics[stage].compute()}
        self.losses[stage].reset()
        self.metrics[stage].reset()
        return results

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        logits, labels = self.logits_and_targets(batch)
        labeled = labels != UNLABELED
        loss = F.cross_entropy(logits.float(), labels, ignore_index=UNLABELED)
        accuracy = ((logits.argmax(-1) == labels) & labeled).sum() / labeled.sum().clamp(min=1)
        self.log_dict({"train/loss": loss, "train/acc": accuracy}, prog_bar=True)
        return loss

    def score(self, batch, batch_idx: int, stage: str) -> None:
        self.evaluate(*self.logits_and_targets(batch), stage)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.stage_metrics("val"), prog_bar=True)

    prediction_files = ("predictions.csv",)

    def predict_step(self, batch, batch_idx: int) -> dict[str, list]:
        logits, labels = self.logits_and_targets(batch)
        probabilities = logits.float().softmax(-1)
        classes = self.class_names
        return {
            "index": batch.index.tolist(),
            "label": [classes[i] if i != UNLABELED else "" for i in labels.tolist()],
            "predicted": [classes[i] for i in probabilities.argmax(-1).tolist()],
            **{f"p_{name}": [round(p, 6) for p in column] for name, column in zip(classes, probabilities.T.tolist())},
        }
