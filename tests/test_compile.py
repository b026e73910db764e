"""``compile: true`` for every task: its networks are compiled in place, so that a compiled run's
checkpoint holds the eager model's keys and an eager run goes on from it, and the other way round."""

import functools
import os

import pytest
import torch
from torch._dynamo.utils import counters

from tasks.checkpoints import main_network

DIGITS = ["--data.init_args.source", "digits", "--data.init_args.batch_size", "32"]
TINY_GPT = [f"--model.init_args.backbone.init_args.{k}" for k in ("n_layer", "n_embd")]
CLASSIFIER = ["--model.init_args.backbone_ckpt", "null", "--data.init_args.tokenizer", "bytes", "--data.init_args.max_length", "32",
              "--data.init_args.labels_per_class", "4", "--data.init_args.batch_size", "4", TINY_GPT[0], "1", TINY_GPT[1], "32"]  # fmt: skip
TASKS = {  # a config of each task, and how compile is switched on in it
    "gpt_nano": ([], "--model.init_args.compile"),  # CausalLM
    "vae": (DIGITS, "--model.init_args.compile"),  # Reconstruction
    "simclr": (DIGITS, "--model.init_args.compile"),  # Contrastive
    "gan": (DIGITS, "--model.init_args.compile"),  # GAN
    "classify_bbc_gpt": (CLASSIFIER, "--model.init_args.compile"),  # Classification
    "distill_gpt_small": (["--model.init_args.teacher_ckpt", "{runs}/gpt_nano/checkpoints/last.ckpt", "--data.init_args.corpus", "kjv",
                           "--data.init_args.tokenizer", "bytes", "--data.init_args.block_size", "32",
                           "--model.init_args.student.init_args.net.init_args.n_embd", "16"], "--model.init_args.student.init_args.compile"),
}  # fmt: skip
STEPS = ["--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]


@pytest.fixture
def tracing_compile(monkeypatch):
    """``nn.Module.compile`` with the ``aot_eager`` backend: Dynamo captures the graphs and AOTAutograd
    their backward, as with Inductor, without the minute of C++ code generation per network."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))  # nn.Module.compile calls it too
    torch._dynamo.reset()
    counters.clear()


@pytest.mark.parametrize("config", TASKS)
def test_every_task_compiles_in_place(cli, tmp_path, tracing_compile, config):
    args, flag = TASKS[config]
    runs = str(tmp_path / "runs")
    if config == "distill_gpt_small":  # the teacher
        cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "1", *STEPS)
    args = [a.replace("{runs}", runs) for a in args]
    cli("fit", "--config", f"configs/{config}.yaml", *args, flag, "true", "--trainer.max_steps", "2", *STEPS)
    assert counters["stats"]["unique_graphs"] > 0, "nothing was compiled"

    last = os.path.join(runs, config, "checkpoints", "last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert not [k for k in checkpoint["state_dict"] if "_orig_mod" in k]
    main_network(checkpoint, last)  # the main network, rebuilt eager, takes its weights: the keys match exactly
    counters.clear()
    cli("fit", "--config", f"configs/{config}.yaml", *args, "--trainer.max_steps", "4", *STEPS, "--ckpt_path", last)  # eager from compiled
    assert not counters["stats"]["unique_graphs"], "the resumed run compiled, though its command line did not ask"
    assert torch.load(last, weights_only=True)["global_step"] >= 4


def test_the_main_job_compiled_with_inductor_trains_as_eager(cli, tmp_path, monkeypatch):
    """gpt_nano: 2 eager steps, then 2 compiled ones (Inductor, C++ on this CPU) from that checkpoint,
    end where 4 eager steps end, up to the rounding of fused kernels."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    # one block: Inductor's C++ code generation takes about a second per kernel on this CPU
    no_dropout = ["--model.init_args.net.init_args.dropout", "0", "--model.init_args.net.init_args.n_layer", "1", "--run.checkpoint_every", "2", *STEPS]
    straight = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "4", *no_dropout, "--run.name", "straight")
    cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "4", *no_dropout, "--run.name", "mixed",
        "--trainer.callbacks", '[{"class_path": "tests.helpers.StopAtStep", "init_args": {"step": 2}}]')  # fmt: skip
    torch._dynamo.reset()
    counters.clear()
    cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "4", *no_dropout, "--run.name", "mixed",
        "--model.init_args.compile", "true", "--ckpt_path", "last")  # fmt: skip
    assert counters["stats"]["unique_graphs"] > 0
    expected = torch.load(os.path.join(straight, "straight", "checkpoints", "last.ckpt"), weights_only=True)["state_dict"]
    resumed = torch.load(os.path.join(straight, "mixed", "checkpoints", "last.ckpt"), weights_only=True)["state_dict"]
    assert resumed.keys() == expected.keys()
    far = [k for k in expected if not torch.allclose(resumed[k], expected[k], rtol=1e-4, atol=1e-5)]
    assert not far, f"the compiled steps went elsewhere: {far[:5]}"
