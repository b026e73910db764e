import torch

from tasks.nets import GPT


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
    import pytest

    with pytest.raises(ValueError, match="vocab_size=None"):
        GPT(vocab_size=None)
    with pytest.raises(ValueError, match="exceeds the model's block_size 16"):
        tiny_gpt()(torch.zeros(1, 17, dtype=torch.long))
