"""Sizes of zero or less (layers, heads, widths, latents, channels, image sizes...) and other values a
network cannot be built with are refused in one line naming the argument, its value and what was
expected: from Python, and through the CLI before any run directory exists."""

import numpy as np
import pytest

from core.checks import fraction, non_negative, positive, positive_or_none
from tasks import GAN, CausalLM, Classification, Contrastive, Reconstruction
from tasks.nets import GPT, ConvDecoder, ConvEncoder, GPTEncoder, HuggingFace, MLPDecoder, MLPEncoder
from tests.helpers import error_line

HINT = " (set it, or let the datamodule provide it)"  # where an argument the data fills in is left unset
GPT_SIZES = {"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}
# each network with arguments it builds with; every one of them is a size
NETWORKS = {
    GPT: GPT_SIZES,
    GPTEncoder: GPT_SIZES,
    MLPEncoder: {"in_channels": 1, "image_size": 8, "hidden": 8, "out_dim": 4},
    MLPDecoder: {"out_channels": 1, "image_size": 8, "hidden": 8, "in_dim": 4},
    ConvEncoder: {"in_channels": 1, "image_size": 8, "width": 4, "out_dim": 4},
    ConvDecoder: {"out_channels": 1, "image_size": 8, "width": 4, "in_dim": 4},
}


def gpt(**kw) -> GPT:
    return GPT(**{**GPT_SIZES, **kw})


def reconstruction(**kw) -> Reconstruction:
    return Reconstruction(ConvEncoder(1, 8, width=4, out_dim=8), ConvDecoder(1, 8, width=4, in_dim=4), **{"latent_dim": 4, **kw})


def gan(**kw) -> GAN:
    return GAN(ConvDecoder(1, 8, width=4, in_dim=4), ConvEncoder(1, 8, width=4, out_dim=1), **{"latent_dim": 4, **kw})


def contrastive(**kw) -> Contrastive:
    return Contrastive(ConvEncoder(1, 8, width=4, out_dim=8), **kw)


def classification(**kw) -> Classification:
    return Classification(ConvEncoder(1, 8, width=4, out_dim=8), **{"num_classes": 3, **kw})


def causal_lm(**kw) -> CausalLM:
    return CausalLM(gpt(), **kw)


def huggingface(**config) -> HuggingFace:
    tiny = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    return HuggingFace("minilm", pretrained=False, config={**tiny, **config})


@pytest.mark.parametrize(
    "network, arg, value",
    [(network, arg, value) for network, sizes in NETWORKS.items() for arg in sizes for value in (0, -1)],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_every_size_of_every_network_must_be_positive(network, arg, value):
    with pytest.raises(ValueError) as refused:
        network(**{**NETWORKS[network], arg: value})
    assert str(refused.value) == f"{network.__name__} {arg}={value}: expected a positive int"


@pytest.mark.parametrize(
    "build, message",
    [
        # what the data fills in, left unset outside the CLI: a hint where it comes from
        (lambda: gpt(vocab_size=None), "GPT vocab_size=None: expected a positive int" + HINT),
        (lambda: GPTEncoder(vocab_size=50), "GPTEncoder block_size=None: expected a positive int" + HINT),
        (lambda: ConvEncoder(1, None), "ConvEncoder image_size=None: expected a positive int" + HINT),
        (lambda: MLPDecoder(None, 8), "MLPDecoder out_channels=None: expected a positive int" + HINT),
        # other values a network cannot be built with
        (lambda: gpt(n_layer=2.0), "GPT n_layer=2.0: expected a positive int"),
        (lambda: gpt(n_head=True), "GPT n_head=True: expected a positive int"),
        (lambda: gpt(n_embd=30, n_head=4), "GPT n_embd=30, n_head=4: expected n_embd divisible by n_head"),
        (lambda: GPTEncoder(**{**GPT_SIZES, "n_embd": 15}), "GPTEncoder n_embd=15, n_head=2: expected n_embd divisible by n_head"),
        (lambda: gpt(dropout=1.0), "GPT dropout=1.0: expected a number in [0, 1)"),
        (lambda: gpt(dropout=-0.1), "GPT dropout=-0.1: expected a number in [0, 1)"),
        (lambda: GPTEncoder(**GPT_SIZES, dropout=1.5), "GPTEncoder dropout=1.5: expected a number in [0, 1)"),
        # the tasks: sizes checked before (their messages kept), and those checked now
        (lambda: reconstruction(latent_dim=0), "latent_dim=0, beta=1.0: expected latent_dim > 0 and beta >= 0"),
        (lambda: reconstruction(latent_dim=-1), "latent_dim=-1, beta=1.0: expected latent_dim > 0 and beta >= 0"),
        (lambda: reconstruction(n_images=0), "Reconstruction n_images=0: expected a positive int"),
        (lambda: gan(latent_dim=0), "latent_dim=0, n_critic=1, clip_grad=10.0, critic_lr_scale=1.0: expected all positive"),
        (lambda: gan(n_critic=0), "latent_dim=4, n_critic=0, clip_grad=10.0, critic_lr_scale=1.0: expected all positive"),
        (lambda: gan(n_images=-1), "GAN n_images=-1: expected a positive int"),
        (lambda: contrastive(projection_dim=0), "temperature=0.2, projection_dim=0: expected both > 0"),
        (lambda: contrastive(knn_k=0), "Contrastive knn_k=0: expected a positive int"),
        (lambda: contrastive(num_classes=0), "Contrastive num_classes=0: expected at least 2, or None (no labels: no probe nor kNN)"),
        (lambda: contrastive(num_classes=1), "Contrastive num_classes=1: expected at least 2, or None (no labels: no probe nor kNN)"),
        (lambda: classification(num_classes=0), "num_classes=0: expected at least 2 (set it, or let the datamodule provide it)"),
        (lambda: classification(num_classes=-1), "num_classes=-1: expected at least 2 (set it, or let the datamodule provide it)"),
        (lambda: classification(head_dropout=1.0), "Classification head_dropout=1.0: expected a number in [0, 1)"),
        (lambda: causal_lm(top_k=0), "CausalLM top_k=0: expected a positive int or None"),
        (lambda: causal_lm(sample_tokens=-1), "CausalLM sample_tokens=-1: expected an int >= 0"),
        # a Hugging Face model's config, checked before the model is built
        (lambda: huggingface(num_hidden_layers=0), "HuggingFace config.num_hidden_layers=0: expected a positive int"),
        (lambda: huggingface(num_attention_heads=0), "HuggingFace config.num_attention_heads=0: expected a positive int"),
        (lambda: huggingface(hidden_size=-1), "HuggingFace config.hidden_size=-1: expected a positive int"),
        (lambda: huggingface(intermediate_size=0), "HuggingFace config.intermediate_size=0: expected a positive int"),
        (lambda: huggingface(vocab_size=0), "HuggingFace config.vocab_size=0: expected a positive int"),
        (lambda: huggingface(max_position_embeddings=0), "HuggingFace config.max_position_embeddings=0: expected a positive int"),
        (lambda: huggingface(hidden_dropout_prob=1.0), "HuggingFace config.hidden_dropout_prob=1.0: expected a number in [0, 1)"),
    ],
)
def test_bad_values_are_refused_in_one_line(build, message):
    with pytest.raises(ValueError) as refused:
        build()
    assert str(refused.value) == message


def test_the_edges_of_what_is_accepted_still_build():
    assert gpt(n_head=16, dropout=0.0).out_dim == 16  # one channel per head
    assert GPTEncoder(**{**GPT_SIZES, "n_layer": 1}, dropout=0.99).out_dim == 16
    assert ConvEncoder(np.int64(1), np.int64(7), width=1, out_dim=1).out_dim == 1  # numpy ints are ints
    assert MLPDecoder(1, 1, hidden=1, in_dim=1).shape == (1, 1, 1)
    assert contrastive(num_classes=None).probe is None and contrastive(num_classes=2).probe is not None
    assert causal_lm(top_k=None, sample_tokens=0).hparams.top_k is None
    assert classification(head_dropout=0.0).num_classes == 3
    assert huggingface(hidden_dropout_prob=0.0).out_dim == 16


def test_the_checks_name_the_first_bad_value():
    positive("Net", a=1, b=np.int32(2))
    positive_or_none("Net", a=None, b=3)
    non_negative("Net", a=0)
    fraction("Net", p=0.0, q=0.5)
    with pytest.raises(ValueError, match=r"^Net b=0: expected a positive int$"):
        positive("Net", a=1, b=0, c=-1)
    with pytest.raises(ValueError, match=r"^Net a=None: expected a positive int$"):  # no from_data: no hint
        positive("Net", a=None)
    with pytest.raises(ValueError, match=r"^Net a=-1: expected a positive int or None$"):
        positive_or_none("Net", a=-1)
    with pytest.raises(ValueError, match=r"^Net a=-1: expected an int >= 0$"):
        non_negative("Net", a=-1)
    with pytest.raises(ValueError, match=r"^Net p=1: expected a number in \[0, 1\)$"):
        fraction("Net", p=1)


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("gpt_nano", ["--model.init_args.net.init_args.n_layer", "0"], "GPT n_layer=0: expected a positive int"),
        ("gpt_nano", ["--model.init_args.net.init_args.n_head", "-1"], "GPT n_head=-1: expected a positive int"),
        ("gpt_nano", ["--model.init_args.net.init_args.n_head", "0"], "GPT n_head=0: expected a positive int"),
        ("gpt_nano", ["--model.init_args.net.init_args.n_head", "3"], "GPT n_embd=32, n_head=3: expected n_embd divisible by n_head"),
        ("gpt_nano", ["--model.init_args.net.init_args.dropout", "1"], "GPT dropout=1.0: expected a number in [0, 1)"),
        ("gpt_nano", ["--model.init_args.top_k", "0"], "CausalLM top_k=0: expected a positive int or None"),
        ("vae", ["--model.init_args.encoder.init_args.width", "0"], "ConvEncoder width=0: expected a positive int"),
        ("autoencoder", ["--model.init_args.decoder.init_args.width", "0"], "ConvDecoder width=0: expected a positive int"),
        ("gan", ["--model.init_args.latent_dim", "0"], "latent_dim=0, n_critic=1, clip_grad=10.0, critic_lr_scale=1.0: expected all"),
        ("gan", ["--model.init_args.generator.init_args.in_dim", "0"], "ConvDecoder in_dim=0: expected a positive int"),
        ("simclr", ["--model.init_args.encoder.init_args.out_dim", "-1"], "ConvEncoder out_dim=-1: expected a positive int"),
    ],
)
def test_bad_sizes_through_the_cli_get_one_line_and_no_run(cli, capsys, tmp_path, config, overrides, message):
    vision = [] if config.startswith("gpt") else ["--data.init_args.source", "digits"]
    args = ["--config", f"configs/{config}.yaml", *vision, "--trainer.logger", "false", "--trainer.max_steps", "1", *overrides]
    line = error_line(cli, capsys, "fit", *args)
    assert line.startswith(f"error: {message}"), line
    runs = tmp_path / "runs"  # where the cli fixture puts runs
    assert not runs.exists() or not any(runs.iterdir())
