"""A GPT in one file, after nanoGPT: pre-LayerNorm decoder blocks, causal self-attention through
``scaled_dot_product_attention`` (flash or memory-efficient kernels on a GPU), tied embeddings.
With ``causal=False`` the same blocks attend both ways: a BERT-style encoder for masked LM.

The pieces of the newer recipe (modded-nanogpt, Llama) are switches on the same network, each off by
default, so a checkpoint made before loads as it is: rotary positions, QK-norm, RMSNorm, ReLU² or
SwiGLU MLPs, an untied zero-initialized head, and logit soft-capping.

Generation (``generate``, ``stream``) keeps a ``KVCache``: the prompt is run once, then each new token
attends to the cached keys and values of those before it, instead of re-running the whole context."""

import math
from collections.abc import Iterator

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

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``x`` (..., T, head_dim) at positions ``start .. start + T - 1``."""
        cos, sin = self.cos[start : start + x.size(-2)].to(x.dtype), self.sin[start : start + x.size(-2)].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class KVCache:
    """The keys and values of the tokens a GPT has seen, per layer, for generation: each layer's are
    preallocated for ``block_size`` positions (B, n_head, block_size, head_dim) at its first ``store``,
    in the dtype and on the device of its keys. ``pos``: the positions filled, the next token's position."""

    def __init__(self, n_layer: int, block_size: int):
        self.block_size, self.pos = block_size, 0
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the keys and values (B, H, T, D) of the new positions ``pos .. pos + T - 1`` of ``layer``;
        return those of every position so far. ``pos`` moves on once all layers have stored (``GPT.features``)."""
        if self.keys[layer] is None:
            shape = (k.size(0), k.size(1), self.block_size, k.size(3))
            self.keys[layer], self.values[layer] = k.new_zeros(shape), v.new_zeros(shape)
        end = self.pos + k.size(2)
        self.keys[layer][:, :, self.pos : end] = k
        self.values[layer][:, :, self.pos : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class SelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, causal: bool, rotary: int | None = None, qk_norm: bool = False):
        super().__init__()
        self.n_head, self.causal, self.qk_norm = n_head, causal, qk_norm
        self.rotary = Rotary(n_embd // n_head, rotary) if rotary else None  # rotary: the longest context
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """``cache`` (generation, causal only): ``x`` holds the tokens after the ``cache.pos`` cached ones,
        which they attend to as well; ``layer`` is this block's index in it."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if self.qk_norm:  # unit-RMS queries and keys: attention logits stay bounded at high learning rates
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        start = 0 if cache is None else cache.pos
        if self.rotary is not None:
            q, k = self.rotary(q, start), self.rotary(k, start)
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            keys = None if self.causal or mask is None else mask[:, None, None, :]  # both ways: no token attends to padding
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=dropout, is_causal=self.causal)
        else:
            k, v = cache.store(layer, k, v)
            # SDPA's is_causal aligns its mask top-left, wrong once the queries are fewer than the keys: new token i
            # (position start + i) sees keys 0 .. start + i; a single new token sees them all, no mask needed
            causal = None if T == 1 else torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal, dropout_p=dropout)
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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
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

    def features(self, idx: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states ``(B, T, n_embd)``: what a classifier or probe builds on. ``mask`` (real
        tokens, padding on the right) keeps a bidirectional model's tokens from attending to padding; causal
        attention never lets a real token see it. With a ``cache`` (generation), ``idx`` holds the tokens
        after the cached ones, at positions ``cache.pos ..``; their keys and values are added to it."""
        T = idx.size(1)
        start = 0 if cache is None else cache.pos
        if start + T > self.block_size:
            raise ValueError(f"sequence length {start + T} exceeds the model's block_size {self.block_size}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
        x = self.drop(x)
        if cache is not None:
            for layer, block in enumerate(self.blocks):
                x = block(x, cache=cache, layer=layer)
            cache.pos += T
            return self.ln_f(x)
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
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_id: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:  # fmt: skip
        """``idx`` (B, T) extended by up to ``max_new_tokens`` sampled tokens: (B, T + n).

        Args:
            temperature: divides the logits; 0 is greedy (argmax).
            top_k: sample from the ``top_k`` most likely tokens only; None: all of them.
            top_p: nucleus sampling: from the fewest most likely tokens whose probability reaches ``top_p``; None or 1: all.
            eos_id: end-of-text: a row that samples it stops there, and is padded with ``eos_id`` after it while
                other rows go on; generation ends when every row has (so n may be less than ``max_new_tokens``).
            generator: the random numbers of sampling (a seed: ``torch.Generator(device).manual_seed(s)``), which
                leave torch's global RNG untouched; None draws from the global RNG.
            use_cache: keep a ``KVCache``: run the prompt once, then one token at a time. False re-runs the whole
                context for every token (the reference: same tokens under greedy decoding).

        Past ``block_size`` tokens the context slides, as without a cache: each step sees the last ``block_size``
        tokens, whose positions have all moved, so the cached keys no longer apply and the remaining tokens
        are computed without the cache. The outputs equal ``use_cache=False``'s either way.
        """
        steps = self.new_tokens(idx, max_new_tokens, temperature, top_k, top_p, eos_id, generator, use_cache)
        return torch.cat([idx, *steps], dim=1)

    def stream(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, eos_id: int | None = None, generator: torch.Generator | None = None,
               use_cache: bool = True) -> Iterator[int]:  # fmt: skip
        """One prompt's new token ids (``idx`` is (1, T)), each yielded as soon as it is sampled, for a terminal;
        the end-of-text token ``eos_id`` too, after which it stops. Arguments as ``generate``'s."""
        if idx.size(0) != 1:
            raise ValueError(f"stream: one prompt at a time, got a batch of {idx.size(0)}: expected idx (1, T); generate() takes batches")
        for next_id in self.new_tokens(idx, max_new_tokens, temperature, top_k, top_p, eos_id, generator, use_cache):
            yield next_id.item()

    @torch.no_grad()
    def new_tokens(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, eos_id: int | None = None, generator: torch.Generator | None = None,
                   use_cache: bool = True) -> Iterator[torch.Tensor]:  # fmt: skip
        """Each step's new tokens (B, 1), as ``generate`` samples them."""
        if not self.causal:
            raise ValueError("GPT causal=False: a bidirectional encoder predicts masked tokens, it does not generate: expected causal: true")
        cache = KVCache(self.n_layer, self.block_size) if use_cache else None
        features = type(self).features  # eager: a task's compile replaces the instance's, which would recompile at every position
        finished = torch.zeros(idx.size(0), 1, dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            if cache is None or idx.size(1) > self.block_size:  # no cache, or the window slides: re-run it whole
                logits = self(idx[:, -self.block_size :])[:, -1, :]
            else:  # the tokens not in the cache yet: the prompt at first, then the last one sampled
                logits = self.token_logits(features(self, idx[:, cache.pos :], cache=cache)[:, -1, :])
            next_id = sample_next(logits, temperature, top_k, top_p, generator)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished, eos_id)  # rows that stopped are padded
                finished |= next_id == eos_id
            yield next_id
            idx = torch.cat((idx, next_id), dim=1)
            if finished.all():
                return


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """The next token (B, 1) from logits (B, vocab): the argmax at temperature 0, else drawn from the softmax of
    ``logits / temperature`` restricted to the ``top_k`` most likely tokens, then to the nucleus of ``top_p``."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # a token is dropped once those more likely than it hold top_p: the most likely one always stays
        dropped = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.masked_fill(dropped.scatter(-1, order, dropped), float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)


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
