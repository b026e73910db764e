import re

import pytest
import torch

from tasks.nets import GPT, GPTEncoder, HuggingFace


def tiny_gpt(**kw) -> GPT:
    return GPT(**{"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16, **kw})


def test_attention_is_causal():
    torch.manual_seed(0)
    model = tiny_gpt().eval()
    x = torch.randint(0, 50, (2, 12))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 50  # change only the future
    assert torch.allclose(model(x)[:, :8], model(y)[:, :8], atol=1e-6)
    assert not torch.allclose(model(x)[:, 8:], model(y)[:, 8:])


def test_embeddings_are_tied_and_shapes_follow_the_config():
    model = tiny_gpt()
    assert model.lm_head.weight is model.wte.weight
    assert model(torch.zeros(3, 5, dtype=torch.long)).shape == (3, 5, 50)


def test_dropout_only_in_training():
    model = tiny_gpt(dropout=0.5)
    x = torch.randint(0, 50, (2, 8))
    assert not torch.equal(model.train()(x), model(x))
    assert torch.equal(model.eval()(x), model(x))


def test_generate_extends_the_prompt_and_greedy_is_deterministic():
    model = tiny_gpt().eval()
    prompt = torch.tensor([[1, 2, 3]])
    out = model.generate(prompt, max_new_tokens=20, temperature=0)  # longer than block_size: crops context
    assert out.shape == (1, 23) and torch.equal(out[:, :3], prompt)
    assert torch.equal(out, model.generate(prompt, max_new_tokens=20, temperature=0))
    sampled = model.generate(prompt, max_new_tokens=5, temperature=1.0, top_k=1)
    assert torch.equal(sampled, out[:, :8])  # top_k=1 is greedy


def test_rejects_a_missing_vocabulary_and_a_context_too_long():
    with pytest.raises(ValueError, match="vocab_size=None"):
        GPT(vocab_size=None)
    with pytest.raises(ValueError, match="exceeds the model's block_size 16"):
        tiny_gpt()(torch.zeros(1, 17, dtype=torch.long))


def loss_and_grads(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """One forward and backward from seed 0: the loss, every parameter's gradient, and how many times
    the first block's attention ran (twice when the block is recomputed in backward)."""
    calls = []
    attention = model.blocks[0].attn if hasattr(model, "blocks") else model.model.encoder.layer[0].attention
    hook = attention.register_forward_pre_hook(lambda *_: calls.append(1))  # pre: a recomputation may stop early
    torch.manual_seed(0)
    out = model(x)
    loss = out.float().pow(2).mean() if out.dim() == 2 else torch.nn.functional.cross_entropy(out.flatten(0, 1), x.flatten())
    loss.backward()
    hook.remove()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}, len(calls)


def assert_same_loss_and_grads(plain: torch.nn.Module, checkpointed: torch.nn.Module, x: torch.Tensor) -> None:
    checkpointed.load_state_dict(plain.state_dict())  # strict: the same keys, so checkpoints interchange
    loss, grads, calls = loss_and_grads(plain, x)
    loss_ckpt, grads_ckpt, calls_ckpt = loss_and_grads(checkpointed, x)
    assert (calls, calls_ckpt) == (1, 2)  # the checkpointed block really ran again in backward
    assert torch.allclose(loss, loss_ckpt, rtol=1e-6, atol=1e-7)
    assert grads.keys() == grads_ckpt.keys()
    for name in grads:
        assert torch.allclose(grads[name], grads_ckpt[name], rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_activation_checkpointing_changes_memory_not_the_numbers(dropout):
    """The same loss and gradients with blocks recomputed in backward; with dropout too, because the
    recomputation replays the RNG and so draws the same masks."""
    torch.manual_seed(1)
    plain = tiny_gpt(dropout=dropout)
    assert_same_loss_and_grads(plain, tiny_gpt(dropout=dropout, activation_checkpointing=True), torch.randint(0, 50, (2, 16)))


def test_activation_checkpointing_keeps_checkpoints_and_skips_inference():
    """The state_dict keys are the same (checkpoints load either way, GPTEncoder too); without grad or
    in eval mode each block runs once."""
    for cls in (GPT, GPTEncoder):
        plain = cls(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
        checkpointed = cls(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, activation_checkpointing=True)
        assert list(plain.state_dict()) == list(checkpointed.state_dict())
        assert checkpointed.activation_checkpointing
    calls = []
    checkpointed.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        checkpointed(x)
    checkpointed.eval()(x).sum().backward()
    assert len(calls) == 2


def test_huggingface_activation_checkpointing(monkeypatch):
    """The same option on a Hugging Face model (a tiny BERT, dropout 0.1): the same loss and gradients,
    each layer recomputed; a model that cannot checkpoint is named in a one-line error."""
    import transformers

    tiny = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    torch.manual_seed(1)
    plain = HuggingFace("minilm", pretrained=False, config=tiny)
    checkpointed = HuggingFace("minilm", pretrained=False, config=tiny, activation_checkpointing=True)
    assert_same_loss_and_grads(plain, checkpointed, torch.randint(1, 100, (2, 12)))
    monkeypatch.setattr(transformers.BertPreTrainedModel, "supports_gradient_checkpointing", False)
    with pytest.raises(ValueError, match="model='minilm': BertModel does not support activation_checkpointing"):
        HuggingFace("minilm", pretrained=False, config=tiny, activation_checkpointing=True)


MODERN = {"norm": "rmsnorm", "positions": "rotary", "qk_norm": True, "activation": "relu2", "tie_embeddings": False, "logit_softcap": 15.0}


def test_the_default_gpt_keeps_the_layout_earlier_checkpoints_have():
    """Every newer piece is off by default: the parameters are GPT-2's, by the names checkpoints hold."""
    names = set(tiny_gpt().state_dict())
    per_block = {"ln_1.weight", "attn.qkv.weight", "attn.proj.weight", "ln_2.weight", "mlp.fc.weight", "mlp.proj.weight"}
    assert names == {"wte.weight", "wpe.weight", "ln_f.weight", "lm_head.weight"} | {f"blocks.{i}.{n}" for i in range(2) for n in per_block}
    model = tiny_gpt()
    assert model.lm_head.weight is model.wte.weight


@pytest.mark.parametrize("switch", [{k: v} for k, v in MODERN.items()] + [MODERN, {"activation": "swiglu"}])
def test_each_piece_of_the_modern_recipe_is_a_switch_that_trains(switch):
    torch.manual_seed(0)
    model = tiny_gpt(**switch)
    x = torch.randint(0, 50, (2, 16))
    loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 50  # still causal, whatever the pieces
    model.eval()
    assert torch.allclose(model(x)[:, :8], model(y)[:, :8], atol=1e-5)


def test_what_each_piece_does():
    torch.manual_seed(0)
    x = torch.randint(0, 50, (2, 16))
    untied = tiny_gpt(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.wte.weight and not untied.lm_head.weight.any()  # zero at init: uniform predictions
    assert torch.allclose(torch.nn.functional.cross_entropy(untied(x).flatten(0, 1), x.flatten()), torch.log(torch.tensor(50.0)))
    capped = tiny_gpt(logit_softcap=0.5)
    assert capped(x).abs().max() < 0.5
    rotary = tiny_gpt(positions="rotary", causal=False).eval()
    with torch.no_grad():  # sharper attention than at init, where every weight is about equal
        for block in rotary.blocks:
            block.attn.qkv.weight.mul_(30)
    assert rotary.wpe is None and not any("wpe" in n or "rotary" in n for n in rotary.state_dict())  # computed, not learned
    swapped = x.clone()
    swapped[:, [3, 7]] = x[:, [7, 3]]  # without positions, attention both ways would give token 3's output at 7
    assert not torch.allclose(rotary(x)[:, 3], rotary(swapped)[:, 7], atol=1e-4)
    assert isinstance(tiny_gpt(norm="rmsnorm").ln_f, torch.nn.RMSNorm)
    swiglu, gelu = tiny_gpt(activation="swiglu"), tiny_gpt()
    assert abs(sum(p.numel() for p in swiglu.parameters()) / sum(p.numel() for p in gelu.parameters()) - 1) < 0.1  # about as many parameters
    assert GPTEncoder(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16, positions="rotary")(x).shape == (2, 16)


@pytest.mark.parametrize(
    "switch, message",
    [
        ({"norm": "batchnorm"}, "GPT norm='batchnorm': expected one of layernorm, rmsnorm"),
        ({"positions": "alibi"}, "GPT positions='alibi': expected one of learned, rotary"),
        ({"activation": "tanh"}, "GPT activation='tanh': expected one of gelu, relu2, swiglu"),
        ({"logit_softcap": 0}, "GPT logit_softcap=0: expected a positive number, or None for no cap"),
        ({"positions": "rotary", "n_embd": 18, "n_head": 6}, "rotary positions need an even head width, got 3"),
    ],
)
def test_a_recipe_switch_with_a_bad_value_is_refused(switch, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_gpt(**switch)
