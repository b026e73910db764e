"""What the device can run: bf16 by default on GPUs that have it, fp32 on a CPU unless asked, and a
strategy or precision the device cannot run refused before anything is built, with what to use instead."""

import subprocess
import sys

import pytest
import torch

from litlab.cli import PlatformCLI
from litlab.hardware import default_precision
from tests.conftest import ROOT
from tests.helpers import error_line

NANO = ["--config", "configs/gpt_nano.yaml", "--trainer.logger", "false"]


@pytest.fixture
def gpu(monkeypatch):
    """Pretend to be on a CUDA GPU of a given compute capability (nothing here touches it for real)."""

    def make(capability: tuple[int, int], name: str) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)

    return make


def test_bf16_is_the_default_on_gpus_that_have_it(gpu):
    assert default_precision("auto") == default_precision("cpu") == "32-true"  # this machine: a CPU
    gpu((9, 0), "NVIDIA H100")
    assert default_precision("auto") == default_precision("gpu") == "bf16-mixed"
    assert default_precision("cpu") == "32-true"  # asked for the CPU
    gpu((7, 0), "Tesla V100")
    assert default_precision("auto") == "32-true"


def test_a_cpu_run_is_fp32_unless_bf16_is_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    common = [*NANO, "--run.dir", str(tmp_path)]
    assert PlatformCLI(common, run=False).trainer.precision == "32-true"
    assert PlatformCLI([*common, "--config", "configs/trainer/bf16.yaml"], run=False).trainer.precision == "bf16-mixed"


def test_fsdp_on_a_cpu_is_refused_with_what_to_use_instead(cli, capsys):
    line = error_line(cli, capsys, "fit", *NANO, "--config", "configs/trainer/fsdp.yaml", "--trainer.accelerator", "auto")
    assert "trainer.strategy=FSDPStrategy needs CUDA GPUs" in line and "configs/trainer/fsdp2.yaml" in line


@pytest.mark.parametrize("precision", ["16", "16-mixed"])
def test_fp16_on_a_cpu_is_refused_not_run_as_bf16(cli, capsys, precision):
    line = error_line(cli, capsys, "fit", *NANO, "--trainer.precision", precision, "--trainer.accelerator", "cpu")
    assert line.startswith(f"error: trainer.precision={precision}: fp16 mixed precision needs a CUDA GPU and this run is on the CPU: use --trainer.precision bf16-mixed or 32-true")


def test_bf16_on_a_gpu_without_it_is_refused_with_what_to_use_instead(cli, capsys, gpu):
    gpu((7, 5), "Tesla T4")
    line = error_line(cli, capsys, "fit", *NANO, "--trainer.precision", "bf16-mixed")
    assert "trainer.precision=bf16-mixed: the Tesla T4 (compute capability 7.5) has no bf16" in line and "16-mixed" in line


KEEP_FREED = """
import resource, torch
from litlab.hardware import keep_freed_memory

def faults():  # page faults of steps 11-30 of steps that each allocate, fill and free a 64 MiB tensor
    for step in range(30):
        if step == 10:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(16 << 20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
keep_freed_memory()
print(default, min(faults() for _ in range(3)))  # the best of 3: the kernel may reclaim kept pages meanwhile (DAMON)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_kept_for_the_next_step():
    """On a CPU, a step's large tensors reuse the memory the previous step freed instead of mapping it
    afresh (page faults on every page): what keep_freed_memory, set by `python -m platform`, is for."""
    out = subprocess.run([sys.executable, "-c", KEEP_FREED], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    default, kept = map(int, out.stdout.split())
    assert default > 20 * 16_000  # every step faulted in its 16,384 pages
    assert kept < default / 100
