"""What causal and masked language modelling share: a network over a vocabulary, the data it must fit,
the loss and perplexity of validation and test, and a text sample logged at every validation."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from core.data import DataInfo
from core.labels import IGNORE
from tasks.base import STAGES, Task
from tasks.checkpoints import init_from


class LanguageModel(Task):
    """Base of ``tasks.CausalLM`` and ``tasks.MaskedLM``. A subclass defines ``loss(batch)``, what
    validation and test score (``score(batch, batch_idx, stage)``, through ``evaluate``) and ``sample()``,
    the text it makes at each validation. Test logs what validation does, as ``test/...``.

    Args:
        net: the network: ``features(idx, mask)`` gives hidden states, ``token_logits(hidden)`` the logits
            over the vocabulary; it has ``vocab_size`` and ``block_size``.
        init_ckpt: start from the main network of this checkpoint of the platform (a language model's net,
            a distillation's student's), with a fresh optimizer and schedule at step 0: fine-tuning, or
            continued pretraining. Loaded when the task is built, so a ``--ckpt_path`` resume then replaces it.
        **kwargs: ``optimizer``, ``schedule``, ``compile`` (``tasks.base.Task``).
    """

    networks = ("net",)

    def __init__(self, net: nn.Module, init_ckpt: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        if init_ckpt:
            init_from(self.net, init_ckpt)
        self.losses = nn.ModuleDict({stage: MeanMetric() for stage in STAGES})

    @property
    def num_outputs(self) -> int:
        """The size of each prediction: the vocabulary (what a distillation's teacher and student share)."""
        return self.net.vocab_size

    def use_data(self, info: DataInfo) -> None:
        if info.vocab_size and self.net.vocab_size < info.vocab_size:
            raise ValueError(f"net vocab_size={self.net.vocab_size} is smaller than the tokenizer's vocabulary ({info.vocab_size}): expected at least {info.vocab_size}")
        block_size = getattr(self.net, "block_size", None)
        if info.block_size and block_size and info.block_size > block_size:
            raise ValueError(f"data.block_size={info.block_size} exceeds the model's context, net block_size={block_size}: lower the first or raise the second")
        self.data = info

    def evaluate(self, logits: torch.Tensor, targets: torch.Tensor, stage: str = "val") -> None:
        """Add a validation (or test) batch's predictions ``(N, vocab)`` to the metrics (shared with distillation),
        weighted by the number of scored targets (``IGNORE``: not scored)."""
        scored = (targets != IGNORE).sum()
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")
        self.losses[stage].update(loss / scored.clamp(min=1), weight=scored)

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        loss = self.losses[stage].compute()
        self.losses[stage].reset()
        return {f"{stage}/loss": loss, f"{stage}/ppl": loss.exp()}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.stage_metrics("val"), prog_bar=True, sync_dist=False)
        if self.data.tokenizer is not None and not self.trainer.sanity_checking:
            self.last_sample = self.sample()
            if self.last_sample is not None and hasattr(self.logger, "log_text"):
                self.logger.log_text("samples", columns=["step", "text"], data=[[self.global_step, self.last_sample]])

    def summary(self) -> list[str]:
        """The final val/loss beside the unigram entropy of the validation tokens (where the data knows it):
        the loss of a model that knows only how often each token occurs."""
        loss, datamodule = self.trainer.callback_metrics.get("val/loss"), self.trainer.datamodule
        reference = datamodule.reference_loss() if hasattr(datamodule, "reference_loss") else None
        if loss is None or reference is None:
            return []
        gap = reference - float(loss)
        return [f"  unigram entropy of the val tokens: {reference:.4f} (val/loss is {abs(gap):.2f} nats {'below' if gap >= 0 else 'above'})"]

    def sample(self) -> str | None:
        """The text this model makes at a validation, for the logger and the summary; None: none."""
        return None
