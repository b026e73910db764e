"""Causal language modelling: predict each next token; the objective behind GPT."""

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.text.rouge import ROUGEScore

from core.batches import TokenBatch
from core.checks import non_negative, positive, positive_or_none
from core.labels import IGNORE
from tasks.language_model import LanguageModel
from tasks.rng import evaluating, seeded


class CausalLM(LanguageModel):
    """Next-token prediction with a decoder network (e.g. ``tasks.nets.GPT``) on ``TokenBatch``es:
    pretraining windows, or prompt/response pairs whose targets are ``IGNORE`` outside the response.
    Logs ``train/loss``, ``val/loss``, ``val/ppl`` (per scored token) and, at every validation, a
    sample generated from ``sample_prompt`` (at a fixed seed, without touching the training RNG).

    ``test`` logs ``test/loss`` and ``test/ppl`` and, on prompt/response pairs, ``test/rougeL``: the ROUGE-L F1
    (torchmetrics, words lower-cased, no stemming) of the response generated greedily from each prompt, stopped
    at the end-of-text token or after ``response_tokens``, against the real one. ``predict`` writes
    ``predictions.jsonl``, a line per example, ``index``, ``prompt``, ``reference`` and ``generated`` (greedy):

    - prompt/response pairs: the prompt, its real response and the one generated as at test;
    - windows of a corpus: the window's first ``block_size // 2`` tokens are the prompt, the rest of the window
      (``block_size + 1 - block_size // 2`` tokens) its reference, and as many tokens are generated, read on
      across an end-of-text as the reference is; ``index`` is the window's position in the test split.

    Args:
        net: the network: ``forward(idx)`` returns logits ``(B, T, vocab_size)``; it has ``vocab_size``,
            ``block_size`` and ``generate``; a GPT with ``causal: false`` is refused (``tasks.MaskedLM``).
        sample_prompt, sample_tokens, temperature, top_k: the sample logged at every validation.
        response_tokens: the most tokens generated for a response at test and predict.
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
        response_tokens: int = 32,
        **kwargs,
    ):
        if getattr(net, "causal", True) is False:
            raise ValueError("CausalLM: net causal=False sees the tokens it should predict: expected causal: true, or tasks.MaskedLM for a bidirectional net")
        super().__init__(net, **kwargs)
        non_negative(self, sample_tokens=sample_tokens)
        positive_or_none(self, top_k=top_k)
        positive(self, response_tokens=response_tokens)
        self.rouge = ROUGEScore(rouge_keys="rougeL")  # its default tokenizer and normalizer need no download (stemming would: nltk)
        self.rouge_scored = False  # whether this test had prompt/response pairs

    def logits_and_targets(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, vocab)`` of every predicted position and their targets ``(N,)`` (``IGNORE``: not scored)."""
        return self.net(batch.input_ids).flatten(0, 1), batch.targets.flatten()

    def loss(self, batch: TokenBatch) -> torch.Tensor:
        logits, targets = self.logits_and_targets(batch)
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)

    def score(self, batch: TokenBatch, batch_idx: int, stage: str) -> None:
        self.evaluate(*self.logits_and_targets(batch), stage)
        if stage == "test" and batch.prompt_lengths is not None:  # responses are generated at test alone: validation stays fast
            _, references, generated = self.responses(batch)
            self.rouge.update(generated, references)
            self.rouge_scored = True

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        metrics = super().stage_metrics(stage)
        if stage == "test" and self.rouge_scored:
            metrics["test/rougeL"] = self.rouge.compute()["rougeL_fmeasure"]
            self.rouge.reset()
            self.rouge_scored = False
        return metrics

    # -- predict: responses generated greedily ------------------------------------------
    prediction_files = ("predictions.jsonl",)

    def predict_step(self, batch: TokenBatch, batch_idx: int) -> dict[str, list]:
        prompts, references, generated = self.responses(batch)
        return {"index": batch.index.tolist(), "prompt": prompts, "reference": references, "generated": generated}

    def responses(self, batch: TokenBatch) -> tuple[list[str], list[str], list[str]]:
        """The batch's prompts, their references and the model's greedy continuations, as text (see the class's docstring)."""
        tokenizer = self.data.tokenizer
        if tokenizer is None:
            raise ValueError("CausalLM: the data has no tokenizer to write text with: expected a text datamodule")
        if batch.prompt_lengths is not None:  # prompt/response pairs: the response is what is scored, up to its end-of-text
            prompts = [ids[:n] for ids, n in zip(batch.input_ids, batch.prompt_lengths.tolist())]
            references = [targets[targets != IGNORE] for targets in batch.targets]
            references = [ids[ids != tokenizer.eos_id] if tokenizer.eos_id is not None else ids for ids in references]
            generated = self.complete(prompts, self.hparams.response_tokens, stop_at=tokenizer.eos_id)
        else:  # windows: the first half is the prompt, the rest of the window (the last target too) the reference
            half = batch.input_ids.shape[1] // 2
            windows = torch.cat([batch.input_ids, batch.targets[:, -1:]], dim=1)
            prompts, references = list(windows[:, :half]), list(windows[:, half:])
            generated = self.complete(prompts, windows.shape[1] - half)
        return [tokenizer.decode(ids.tolist()) for ids in prompts], [tokenizer.decode(ids.tolist()) for ids in references], generated

    @torch.no_grad()
    def complete(self, prompts: list[torch.Tensor], max_new_tokens: int, stop_at: int | None = None) -> list[str]:
        """The greedy continuation of each prompt (token ids), as text, cut before the first ``stop_at`` token (a row
        that reaches it stops; the network pads it with ``stop_at`` while others go on). Prompts of one length are
        generated as one batch: the network takes no padding mask."""
        by_length = defaultdict(list)
        for row, ids in enumerate(prompts):
            by_length[len(ids)].append(row)
        continuations: list[list[int]] = [[] for _ in prompts]
        with evaluating(self.net) as net:
            for length, rows in by_length.items():
                new = net.generate(torch.stack([prompts[row] for row in rows]), max_new_tokens, temperature=0, eos_id=stop_at)[:, length:]
                for row, ids in zip(rows, new.tolist()):
                    continuations[row] = ids[: ids.index(stop_at)] if stop_at in ids else ids
        return [self.data.tokenizer.decode(ids) for ids in continuations]

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
