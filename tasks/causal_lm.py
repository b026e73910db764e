"""Causal language modelling: predict each next token; the objective behind GPT."""

import torch
import torch.nn.functional as F
from torch import nn

from core.batches import TokenBatch
from core.checks import non_negative, positive_or_none
from core.labels import IGNORE
from tasks.language_model import LanguageModel
from tasks.rng import evaluating, seeded


class CausalLM(LanguageModel):
    """Next-token prediction with a decoder network (e.g. ``tasks.nets.GPT``) on ``TokenBatch``es:
    pretraining windows, or prompt/response pairs whose targets are ``IGNORE`` outside the response.
    Logs ``train/loss``, ``val/loss``, ``val/ppl`` (per scored token) and, at every validation, a
    sample generated from ``sample_prompt`` (at a fixed seed, without touching the training RNG).

    Args:
        net: the network: ``forward(idx)`` returns logits ``(B, T, vocab_size)``; it has ``vocab_size``,
            ``block_size`` and ``generate``; a GPT with ``causal: false`` is refused (``tasks.MaskedLM``).
        sample_prompt, sample_tokens, temperature, top_k: the sample logged at every validation.
        **kwargs: ``init_ckpt`` (``tasks.language_model.LanguageModel``), ``optimizer``, ``schedule``,
            ``compile`` (``tasks.base.Task``).
    """

    def __init__(
        self,
        net: nn.Module,
        sample_prompt: str = "The",
        sample_tokens: int = 40,
        temperature: float = 0.8,
        top_k: int | None = 50,
        **kwargs,
    ):
        if getattr(net, "causal", True) is False:
            raise ValueError("CausalLM: net causal=False sees the tokens it should predict: expected causal: true, or tasks.MaskedLM for a bidirectional net")
        super().__init__(net, **kwargs)
        non_negative(self, sample_tokens=sample_tokens)
        positive_or_none(self, top_k=top_k)

    def logits_and_targets(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, vocab)`` of every predicted position and their targets ``(N,)`` (``IGNORE``: not scored)."""
        return self.net(batch.input_ids).flatten(0, 1), batch.targets.flatten()

    def loss(self, batch: TokenBatch) -> torch.Tensor:
        logits, targets = self.logits_and_targets(batch)
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)

    def validation_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self.evaluate(*self.logits_and_targets(batch))

    def sample(self) -> str | None:
        return self.generate(self.hparams.sample_prompt, self.hparams.sample_tokens) if self.hparams.sample_tokens > 0 else None

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
