"""Masked language modelling: predict chosen tokens from both sides of them; the objective behind BERT."""

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from core.batches import TokenBatch
from core.checks import fraction
from core.data import DataInfo
from core.labels import IGNORE
from tasks.base import STAGES
from tasks.language_model import LanguageModel
from tasks.rng import evaluating

MASKED, RANDOM = 0.8, 0.1  # BERT's shares of the chosen positions: the mask token, a random token; the rest stay


def mask_tokens(ids: torch.Tensor, mask_id: int, special_ids: torch.Tensor, ordinary_ids: torch.Tensor, rate: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """BERT's corruption of token ids ``(B, T)``: each position but the special ones (padding, end of text,
    ``[CLS]``...) is chosen with probability ``rate``; of those, 80% become ``mask_id``, 10% a random one of
    ``ordinary_ids`` and 10% stay as they are. Returns the corrupted ids and the targets: the original token
    at each chosen position, ``IGNORE`` elsewhere. Drawn on the ids' device from ``generator`` (None: the
    global RNG, which the run saves and restores, so a resumed run draws the same masks)."""
    draw = {"device": ids.device, "generator": generator}
    chosen = (torch.rand(ids.shape, **draw) < rate) & ~torch.isin(ids, special_ids)
    how = torch.rand(ids.shape, **draw)
    random_ids = ordinary_ids[torch.randint(len(ordinary_ids), ids.shape, **draw)]
    inputs = torch.where(chosen & (how < MASKED), mask_id, ids)
    inputs = torch.where(chosen & (how >= MASKED) & (how < MASKED + RANDOM), random_ids, inputs)
    return inputs, torch.where(chosen, ids, IGNORE)


class MaskedLM(LanguageModel):
    """Masked-token prediction with a bidirectional network (``tasks.nets.GPT`` with ``causal: false``, or
    ``tasks.nets.HuggingFace`` with ``mlm_head: true``) on ``TokenBatch``es: the windows' own tokens are
    the targets, not shifted by one. The loss is taken on the chosen positions only. Validation masks
    each batch the same way at every validation (a seed per batch), apart from the training RNG.

    Logs ``train/loss``, ``val/loss``, ``val/ppl`` and ``val/mlm_acc`` (on the masked positions); the
    summary sets ``val/mlm_acc`` beside that of always predicting the most frequent token, and, at each
    validation, the model fills the ``[MASK]``s of ``sample_text``. ``test`` logs ``test/loss``, ``test/ppl`` and
    ``test/mlm_acc``, masking each batch as validation does.

    Args:
        net: the network: ``features(idx)`` and ``token_logits(hidden)``, whose head shares the token embeddings.
        mask_rate: the share of positions chosen (BERT: 0.15).
        sample_text: a sentence with ``[MASK]`` in it, the model's fill logged at each validation; "" for none.
        **kwargs: ``init_ckpt`` (``tasks.language_model.LanguageModel``), ``optimizer``, ``schedule``,
            ``compile`` (``tasks.base.Task``).
    """

    def __init__(self, net: nn.Module, mask_rate: float = 0.15, sample_text: str = "The government said the [MASK] would rise.", **kwargs):
        if getattr(net, "causal", False):
            raise ValueError("MaskedLM: net causal=True lets a token see only those before it: expected causal: false, a bidirectional net")
        super().__init__(net, **kwargs)
        fraction(self, mask_rate=mask_rate)
        if mask_rate == 0:
            raise ValueError("MaskedLM mask_rate=0: nothing would be predicted: expected a share in (0, 1), BERT's is 0.15")
        self.accuracies = nn.ModuleDict({stage: MeanMetric() for stage in STAGES})
        self.target_counts: torch.Tensor | None = None  # how often each token is a validation target (this process's)
        self.baseline_acc: float | None = None  # the most frequent target's share: the accuracy of always predicting it

    def use_data(self, info: DataInfo) -> None:
        super().use_data(info)
        tokenizer = info.tokenizer
        if tokenizer is None:
            return  # a BPE still to be trained: setup checks it once it is
        if getattr(tokenizer, "mask_id", None) is None:
            raise ValueError(
                f"MaskedLM: data.tokenizer={getattr(tokenizer, 'name', type(tokenizer).__name__)!r} has no mask token: "
                "expected one that reserves [MASK] (bpe, bytes, or a BERT's own, such as minilm)"
            )
        if self.hparams.sample_text and tokenizer.mask_id not in tokenizer.encode_special(self.hparams.sample_text):
            raise ValueError(f"MaskedLM sample_text={self.hparams.sample_text!r}: expected a sentence with [MASK] in it, or '' for no sample")
        for name, ids in (("special_ids", sorted(tokenizer.special_ids)), ("ordinary_ids", list(tokenizer.ordinary_ids))):
            self.register_buffer(name, torch.tensor(ids, dtype=torch.long, device=self.device), persistent=False)

    def masked(self, batch: TokenBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, vocab)`` at the N chosen positions of a batch's windows, and the tokens there."""
        inputs, targets = mask_tokens(batch.input_ids, self.data.tokenizer.mask_id, self.special_ids, self.ordinary_ids, self.hparams.mask_rate, generator)
        chosen = targets != IGNORE
        return self.net.token_logits(self.net.features(inputs)[chosen]), targets[chosen]

    def loss(self, batch: TokenBatch) -> torch.Tensor:
        logits, targets = self.masked(batch)
        return F.cross_entropy(logits.float(), targets)

    def score(self, batch: TokenBatch, batch_idx: int, stage: str) -> None:
        logits, targets = self.masked(batch, torch.Generator(self.device).manual_seed(batch_idx))
        self.evaluate(logits, targets, stage)
        self.accuracies[stage].update((logits.argmax(-1) == targets).float().mean(), weight=len(targets))
        if stage == "val":
            counts = torch.bincount(targets, minlength=self.net.vocab_size)
            self.target_counts = counts if self.target_counts is None else self.target_counts + counts

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        if stage == "val" and self.target_counts is not None:
            self.baseline_acc = float(self.target_counts.max() / self.target_counts.sum().clamp(min=1))
            self.target_counts = None
        metrics = {**super().stage_metrics(stage), f"{stage}/mlm_acc": self.accuracies[stage].compute()}
        self.accuracies[stage].reset()
        return metrics

    def summary(self) -> list[str]:
        acc = self.trainer.callback_metrics.get("val/mlm_acc")
        if acc is None or self.baseline_acc is None:
            return super().summary()
        return [*super().summary(), f"  val/mlm_acc: {float(acc):.4f} (always predicting the most frequent token: {self.baseline_acc:.4f})"]

    def sample(self) -> str | None:
        return self.fill(self.hparams.sample_text) if self.hparams.sample_text else None

    @torch.no_grad()
    def fill(self, text: str, tokenizer=None) -> str:
        """``text`` with each ``[MASK]`` replaced by the model's most likely ordinary token, and those tokens."""
        tokenizer = tokenizer or self.data.tokenizer
        idx = torch.tensor([tokenizer.encode_special(text)], device=self.device)
        where = idx[0] == tokenizer.mask_id
        with evaluating(self.net) as net:
            logits = net.token_logits(net.features(idx)[0, where]).float()
        logits[:, self.special_ids] = float("-inf")
        predicted = logits.argmax(-1)
        filled = idx[0].masked_scatter(where, predicted)
        words = ", ".join(repr(tokenizer.decode([i]).strip()) for i in predicted.tolist())
        return f"{tokenizer.decode(filled.tolist())}  ([MASK]: {words})"

