"""Causal language modelling: predict each next token; the objective behind GPT."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from core.batches import TokenBatch
from core.checkpoints import load_state, read_checkpoint, record
from core.checks import non_negative, positive_or_none
from core.data import DataInfo
from core.labels import IGNORE
from tasks.base import Task
from tasks.rng import evaluating, seeded


class CausalLM(Task):
    """Next-token prediction with a decoder network (e.g. ``tasks.nets.GPT``) on ``TokenBatch``es:
    pretraining windows, or prompt/response pairs whose targets are ``IGNORE`` outside the response.
    Logs ``train/loss``, ``val/loss``, ``val/ppl`` (per scored token) and, at every validation, a
    sample generated from ``sample_prompt`` (at a fixed seed, without touching the training RNG).

    Args:
        net: the network: ``forward(idx)`` returns logits ``(B, T, vocab_size)``; it has ``vocab_size``,
            ``block_size`` and ``generate``.
        sample_prompt, sample_tokens, temperature, top_k: the sample logged at every validation.
        init_ckpt: start from the main network of this checkpoint of the platform (a CausalLM's net, a
            distillation's student's), with a fresh optimizer and schedule at step 0: fine-tuning.
            Loaded when the task is built, so a ``--ckpt_path`` resume then replaces them.
        **kwargs: ``optimizer``, ``schedule``, ``compile`` (``tasks.base.Task``).
    """

    networks = ("net",)

    def __init__(
        self,
        net: nn.Module,
        sample_prompt: str = "The",
        sample_tokens: int = 40,
        temperature: float = 0.8,
        top_k: int | None = 50,
        init_ckpt: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        non_negative(self, sample_tokens=sample_tokens)
        positive_or_none(self, top_k=top_k)
        self.net = net
        if init_ckpt:
            checkpoint = read_checkpoint(init_ckpt, what="init_ckpt")
            load_state(self.net, checkpoint, record(checkpoint)["main_network"], f"init_ckpt {init_ckpt}")
        self.val_loss = MeanMetric()

    @property
    def num_outputs(self) -> int:
        """The size of each prediction: the vocabulary (what a distillation's teacher and student share)."""
        return self.net.vocab_size

    def use_data(self, info: DataInfo) -> None:
        if info.vocab_size and self.net.vocab_size < info.vocab_size:
            raise ValueError(f"net vocab_size={self.net.vocab_size} is smaller than the tokenizer's vocabulary ({info.vocab_size}): expected at least {info.vocab_size}")
        if info.block_size and info.block_size > self.net.block_size:
            raise ValueError(f"data.block_size={info.block_size} exceeds the model's context, net block_size={self.net.block_size}: lower the first or raise the second")
        self.data = info

    def logits_and_targets(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, vocab)`` of every predicted position and their targets ``(N,)`` (``IGNORE``: not scored)."""
        return self.net(batch.input_ids).flatten(0, 1), batch.targets.flatten()

    def loss(self, batch: TokenBatch) -> torch.Tensor:
        logits, targets = self.logits_and_targets(batch)
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)

    def evaluate(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a validation batch's predictions to the metrics (shared with distillation), weighted
        by the number of scored targets."""
        scored = (targets != IGNORE).sum()
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")
        self.val_loss.update(loss / scored.clamp(min=1), weight=scored)

    def val_metrics(self) -> dict[str, torch.Tensor]:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        return {"val/loss": loss, "val/ppl": loss.exp()}

    def training_step(self, batch: TokenBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self.evaluate(*self.logits_and_targets(batch))

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics(), prog_bar=True, sync_dist=False)
        if self.data.tokenizer is not None and self.hparams.sample_tokens > 0 and not self.trainer.sanity_checking:
            self.last_sample = self.generate(self.hparams.sample_prompt, self.hparams.sample_tokens)
            if hasattr(self.logger, "log_text"):
                self.logger.log_text("samples", columns=["step", "text"], data=[[self.global_step, self.last_sample]])

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, temperature: float | None = None, top_k: int | None = None, tokenizer=None, seed: int = 0) -> str:
        """Continue ``prompt``; sampling uses its own seed, leaving the global RNG state as it was."""
        tokenizer = tokenizer or self.data.tokenizer
        ids = tokenizer.encode_batch([prompt])[0] or [tokenizer.eos_id]
        idx = torch.tensor([ids], device=self.device)
        temperature = self.hparams.temperature if temperature is None else temperature
        top_k = self.hparams.top_k if top_k is None else top_k
        with evaluating(self.net) as net, seeded(seed, self.device):
            out = net.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k)
        return tokenizer.decode(out[0].tolist())
