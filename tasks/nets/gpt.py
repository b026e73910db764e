"""A GPT in one file, after nanoGPT: pre-LayerNorm decoder blocks, causal self-attention through
``scaled_dot_product_attention`` (flash or memory-efficient kernels on a GPU), tied embeddings.
With ``causal=False`` the same blocks attend both ways: a BERT-style encoder for masked LM.

The pieces of the newer recipe (modded-nanogpt, Llama) are switches on the same network, each off by
default, so a checkpoint made before loads as it is: rotary positions, QK-norm, RMSNorm, ReLU² or
SwiGLU MLPs, an untied zero-initialized head, and logit soft-capping."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.checks import fraction, positive
from tasks.nets.pooling import pool

NORMS, POSITIONS, ACTIVATIONS = ("layernorm", "rmsnorm"), ("learned", "rotary"), ("gelu", "relu2", "swiglu")


class Rotary(nn.Module):
    """Rotary position embeddings (Su et al., 2021), as Llama applies them: the two halves of each head's
    channels rotated by angles that grow with the position, so attention sees relative positions."""

    def __init__(self, head_dim: int, block_size: int, base: float = 10_000.0):
        super().__init__()
        angles = torch.outer(torch.arange(block_size).float(), base ** (-torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("cos", angles.cos(), persistent=False)  # computed, not learned: not in checkpoints
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos, sin = self.cos[: x.size(-2)].to(x.dtype), self.sin[: x.size(-2)].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, causal: bool, rotary: int | None = None, qk_norm: bool = False):
        super().__init__()
        self.n_head, self.causal, self.qk_norm = n_head, causal, qk_norm
        self.rotary = Rotary(n_embd // n_head, rotary) if rotary else None  # rotary: the longest context
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if self.qk_norm:  # unit-RMS queries and keys: attention logits stay bounded at high learning rates
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        dropout = self.dropout if self.training else 0.0
        keys = None if self.causal or mask is None else mask[:, None, None, :]  # both ways: no token attends to padding
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=dropout, is_causal=self.causal)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    """``gelu`` (GPT-2) or ``relu2`` (ReLU squared, modded-nanogpt) on 4x the width; ``swiglu`` (Llama)
    gates on 8/3 of it, so its three matrices hold as many parameters as the other two's."""

    def __init__(self, n_embd: int, dropout: float, bias: bool, activation: str = "gelu"):
        super().__init__()
        self.activation = activation
        hidden = 4 * n_embd if activation != "swiglu" else (8 * n_embd // 3 + 7) // 8 * 8
        self.fc = nn.Linear(n_embd, 2 * hidden if activation == "swiglu" else hidden, bias=bias)
        self.proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.activation == "swiglu":
            gate, h = h.chunk(2, dim=-1)
            h = F.silu(gate) * h
        else:
            h = F.relu(h).square() if self.activation == "relu2" else F.gelu(h)
        return self.dropout(self.proj(h))


def make_norm(kind: str, n_embd: int, bias: bool) -> nn.Module:
    return nn.LayerNorm(n_embd, bias=bias) if kind == "layernorm" else nn.RMSNorm(n_embd)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, causal: bool = True, norm: str = "layernorm",
                 rotary: int | None = None, qk_norm: bool = False, activation: str = "gelu"):  # fmt: skip
        super().__init__()
        self.ln_1 = make_norm(norm, n_embd, bias)
        self.attn = SelfAttention(n_embd, n_head, dropout, bias, causal, rotary, qk_norm)
        self.ln_2 = make_norm(norm, n_embd, bias)
        self.mlp = MLP(n_embd, dropout, bias, activation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer. ``forward(idx)`` returns logits ``(B, T, vocab_size)``; with
    ``causal=False``, an encoder whose logits at a position predict its own (masked) token, as BERT's.

    Args:
        vocab_size: size of the token vocabulary; ``None`` takes the data's (``from_data``).
        block_size: the longest context the model accepts (position embeddings); ``None`` takes the
            data's, the length of its training sequences.
        n_layer, n_head, n_embd: depth, attention heads and width.
        dropout: on attention weights, residual branches and embeddings; in [0, 1).
        bias: biases in Linear and LayerNorm layers (GPT-2 has them; without is a little faster).
        causal: each token attends to those before it (GPT); False: to all of them (BERT), for ``tasks.MaskedLM``.
        norm: ``layernorm`` (GPT-2) or ``rmsnorm``.
        positions: ``learned`` position embeddings (GPT-2) or ``rotary`` ones applied to queries and keys.
        qk_norm: RMS-normalize queries and keys per head before attention.
        activation: the MLP's, ``gelu``, ``relu2`` or ``swiglu``.
        tie_embeddings: the output head is the token embedding (GPT-2); False: a head of its own, zero at init.
        logit_softcap: logits become ``cap * tanh(logits / cap)``, bounded by ``cap``; None: as they are.
        activation_checkpointing: for long contexts: recompute each block in backward, not store its activations (up to 1/3 more compute).
    """

    from_data = {"vocab_size": "vocab_size", "block_size": "block_size"}

    def __init__(
        self,
        vocab_size: int | None = None,
        block_size: int | None = None,
        n_layer: int = 6,
        n_head: int = 6,
        n_embd: int = 384,
        dropout: float = 0.0,
        bias: bool = False,
        causal: bool = True,
        norm: str = "layernorm",
        positions: str = "learned",
        qk_norm: bool = False,
        activation: str = "gelu",
        tie_embeddings: bool = True,
        logit_softcap: float | None = None,
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        positive(self, vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        if n_embd % n_head:
            raise ValueError(f"{type(self).__name__} n_embd={n_embd}, n_head={n_head}: expected n_embd divisible by n_head")
        fraction(self, dropout=dropout)
        for name, value, choices in (("norm", norm, NORMS), ("positions", positions, POSITIONS), ("activation", activation, ACTIVATIONS)):
            if value not in choices:
                raise ValueError(f"{type(self).__name__} {name}={value!r}: expected one of {', '.join(choices)}")
        if positions == "rotary" and (n_embd // n_head) % 2:
            raise ValueError(f"{type(self).__name__} n_embd={n_embd}, n_head={n_head}: rotary positions need an even head width, got {n_embd // n_head}")
        if logit_softcap is not None and not logit_softcap > 0:
            raise ValueError(f"{type(self).__name__} logit_softcap={logit_softcap}: expected a positive number, or None for no cap")
        self.vocab_size, self.block_size, self.n_layer, self.n_embd, self.causal = vocab_size, block_size, n_layer, n_embd, causal
        self.out_dim = n_embd  # the width of features(), for heads built on top
        self.activation_checkpointing = activation_checkpointing
        self.logit_softcap = logit_softcap
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd) if positions == "learned" else None
        self.drop = nn.Dropout(dropout)
        rotary = block_size if positions == "rotary" else None
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias, causal, norm, rotary, qk_norm, activation) for _ in range(n_layer))
        self.ln_f = make_norm(norm, n_embd, bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.wte.weight  # tied input/output embeddings

        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
        if not tie_embeddings:  # modded-nanogpt: the first steps learn from a head that predicts uniformly
            nn.init.zeros_(self.lm_head.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def features(self, idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states ``(B, T, n_embd)``: what a classifier or probe builds on. ``mask`` (real
        tokens, padding on the right) keeps a bidirectional model's tokens from attending to padding; causal
        attention never lets a real token see it."""
        T = idx.size(1)
        if T > self.block_size:
            raise ValueError(f"sequence length {T} exceeds the model's block_size {self.block_size}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        x = self.drop(x)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:  # non-reentrant checkpointing replays the RNG: dropout masks match
            x = checkpoint(block, x, mask, use_reentrant=False) if recompute else block(x, mask)
        return self.ln_f(x)

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary of hidden states ``(..., n_embd)``: the head (tied to the embeddings
        by default), soft-capped where ``logit_softcap`` says."""
        logits = self.lm_head(hidden)
        return logits if self.logit_softcap is None else self.logit_softcap * torch.tanh(logits / self.logit_softcap)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.token_logits(self.features(idx))

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L T C."""
        n_params = sum(p.numel() for p in self.parameters()) - (self.wpe.weight.numel() if self.wpe is not None else 0)
        return 6 * n_params + 12 * self.n_layer * seq_len * self.n_embd

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens; temperature 0 is greedy."""
        if not self.causal:
            raise ValueError("GPT causal=False: a bidirectional encoder predicts masked tokens, it does not generate: expected causal: true")
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.block_size :])[:, -1, :]
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, next_id), dim=1)
        return idx


class GPTEncoder(GPT):
    """GPT's final hidden states pooled into one vector per sequence (``out_dim = n_embd``): a text
    encoder for contrastive learning (SimCSE) and classification. Same weights as GPT, so a CausalLM
    checkpoint seeds it."""

    def __init__(self, vocab_size: int | None = None, block_size: int | None = None, n_layer: int = 6, n_head: int = 6,
                 n_embd: int = 384, dropout: float = 0.1, pooling: str = "mean", **kwargs):  # fmt: skip
        """``pooling``: ``mean`` or ``last``; ``**kwargs``: the rest of ``GPT``'s arguments."""
        super().__init__(vocab_size, block_size, n_layer, n_head, n_embd, dropout, **kwargs)
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling={pooling!r}: expected 'mean' or 'last'")
        self.pooling = pooling

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return pool(self.features(idx), None, self.pooling)
