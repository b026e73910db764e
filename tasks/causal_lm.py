"""Causal language modelling: predict each next token; the objective behind GPT."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from datamodules.labels import IGNORE
from tasks.base import Task, check_optimizer_args
from tasks.checkpoints import load_state, read_checkpoint, state_under
from tasks.hparams import save_hyperparameters
from tasks.rng import evaluating, seeded


class CausalLM(Task):
    """Next-token prediction with a decoder network (e.g. ``tasks.nets.GPT``).

    Batches are windows of ``T + 1`` token ids; the first ``T`` are the input, the last ``T`` the
    targets. Or pairs ``(tokens (B, T + 1), targets (B, T))`` whose targets are ``-100`` where
    nothing is scored (prompt and padding positions: ``datamodules.prompts.PromptResponseDataModule``).
    Logs ``train/loss``, ``val/loss``, ``val/ppl`` (per scored token) and, at every validation, a
    sample generated from ``sample_prompt`` (at a fixed seed, without touching the training RNG).

    Args:
        net: the network; ``forward(idx)`` returns logits ``(B, T, vocab)``.
        lr, weight_decay, betas: AdamW; decay applies to matrices only.
        warmup_steps, min_lr_ratio: linear warmup, then cosine decay to ``min_lr_ratio * lr`` at the
            run's last step.
        sample_prompt, sample_tokens, temperature, top_k: the sample logged at every validation.
        compile: compile the network in place with ``torch.compile`` (checkpoints stay interchangeable).
        init_ckpt: start from the network weights of this checkpoint of the platform (its ``net``, or a
            distillation's ``student.net``), with a fresh optimizer and schedule at step 0: fine-tuning.
            Loaded when the task is built, so a ``--ckpt_path`` resume then replaces them.
    """

    networks = ("net",)

    def __init__(
        self,
        net: nn.Module,
        lr: float = 6e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        sample_prompt: str = "The",
        sample_tokens: int = 40,
        temperature: float = 0.8,
        top_k: int | None = 50,
        compile: bool = False,
        init_ckpt: str | None = None,
    ):
        super().__init__()
        check_optimizer_args(lr, warmup_steps, min_lr_ratio)
        save_hyperparameters(self)
        self.net = net
        if init_ckpt:
            load_net_weights(self.net, init_ckpt)
        self.val_loss = MeanMetric()
        self.sample: str | None = None

    def setup(self, stage: str) -> None:
        self.check_data(self.trainer.datamodule)

    def check_data(self, datamodule) -> None:
        """Refuse data the network cannot read (shared with distillation, which checks both models)."""
        data_vocab, net_vocab = getattr(datamodule, "vocab_size", None), getattr(self.net, "vocab_size", None)
        if data_vocab and net_vocab and net_vocab < data_vocab:
            raise ValueError(f"net vocab_size={net_vocab} is smaller than the tokenizer's vocabulary ({data_vocab}): expected at least {data_vocab}")
        block_size = getattr(datamodule, "block_size", None)
        if block_size and block_size > getattr(self.net, "block_size", block_size):
            raise ValueError(f"data.block_size={block_size} exceeds the model's context, net block_size={self.net.block_size}: lower the first or raise the second")

    def logits_and_targets(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, vocab)`` of every predicted position and their targets ``(N,)`` (``-100``: not scored)."""
        tokens, targets = batch if isinstance(batch, (tuple, list)) else (batch, batch[:, 1:])
        logits = self.net(tokens[:, :-1])
        return logits.flatten(0, 1), targets.flatten()

    def loss(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
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

    def tokens_in(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> int:
        """Tokens the network processes, padding included."""
        tokens = batch[0] if isinstance(batch, (tuple, list)) else batch
        return tokens[:, :-1].numel()

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.evaluate(*self.logits_and_targets(batch))

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics(), prog_bar=True, sync_dist=False)
        tokenizer = getattr(self.trainer.datamodule, "tokenizer", None)
        if tokenizer is not None and self.hparams.sample_tokens > 0 and not self.trainer.sanity_checking:
            self.sample = self.generate(self.hparams.sample_prompt, self.hparams.sample_tokens, tokenizer=tokenizer)
            if hasattr(self.logger, "log_text"):
                self.logger.log_text("samples", columns=["step", "text"], data=[[self.global_step, self.sample]])

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, temperature: float | None = None, top_k: int | None = None, tokenizer=None, seed: int = 0) -> str:
        """Continue ``prompt``; sampling uses its own seed, leaving the global RNG state as it was."""
        tokenizer = tokenizer or self.trainer.datamodule.tokenizer
        ids = tokenizer.encode_batch([prompt])[0] or [tokenizer.eos_id]
        idx = torch.tensor([ids], device=self.device)
        temperature = self.hparams.temperature if temperature is None else temperature
        top_k = self.hparams.top_k if top_k is None else top_k
        with evaluating(self.net) as net, seeded(seed, self.device):
            out = net.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k)
        return tokenizer.decode(out[0].tolist())


def load_net_weights(net: nn.Module, path: str) -> None:
    """Load the weights of a checkpoint's ``net`` (or a distillation's ``student.net``) into ``net``;
    one-line errors name both sides of a mismatch."""
    checkpoint = read_checkpoint(path, what="init_ckpt")
    prefix = next((p for p in ("net", "student.net") if state_under(checkpoint, p)), None)
    if prefix is None:
        found = sorted({k.split(".")[0] for k in checkpoint.get("state_dict", {})})
        raise ValueError(f"init_ckpt {path}: no network 'net' in it (found prefixes: {', '.join(found) or 'none'})")
    load_state(net, checkpoint, prefix, f"init_ckpt {path}")
