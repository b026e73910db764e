"""What the device can run: the default precision, and strategies and precisions refused up front,
with a line that says what to use instead, rather than a failure minutes into a run; and the CPU
allocator setting training wants."""

import ctypes
import sys

import torch

FSDP_STRATEGIES = ("fsdp", "fsdp_cpu_offload", "FSDPStrategy")


def on_cuda(accelerator) -> bool:
    """Whether ``trainer.accelerator`` (``auto``, ``gpu``, ``cuda``, ``cpu``...) puts the run on CUDA GPUs."""
    name = _name(accelerator)
    return name in ("gpu", "cuda", "CUDAAccelerator") or (name in ("auto", None) and torch.cuda.is_available())


def bf16_supported() -> bool:
    """Native bf16 (Ampere, compute capability 8.0, and later), not the slow emulation of older GPUs."""
    return torch.cuda.get_device_capability() >= (8, 0)


def default_precision(accelerator) -> str:
    """bf16 mixed precision on GPUs that have it; fp32 elsewhere (a CPU runs bf16 only when asked)."""
    return "bf16-mixed" if on_cuda(accelerator) and bf16_supported() else "32-true"


def check_device(trainer) -> None:
    """Refuse, before anything is built, what this device cannot run: FSDP (FSDPStrategy) without
    GPUs, fp16 mixed precision on the CPU (Lightning would silently run bf16 instead), and bf16 on a
    GPU without it."""
    cuda = on_cuda(trainer.get("accelerator"))
    strategy = _name(trainer.get("strategy"))
    if strategy in FSDP_STRATEGIES and not cuda:
        raise ValueError(
            f"trainer.strategy={strategy} needs CUDA GPUs and this run is on the CPU: use --config configs/trainer/fsdp2.yaml "
            "(FSDP2 through ModelParallelStrategy, which also runs on CPUs) or --config configs/trainer/ddp.yaml"
        )
    precision = str(trainer.get("precision") or "")
    if not cuda and precision in ("16", "16-mixed"):
        raise ValueError(
            f"trainer.precision={precision}: fp16 mixed precision needs a CUDA GPU and this run is on the CPU: "
            "use --trainer.precision bf16-mixed or 32-true"
        )
    if cuda and precision.startswith("bf16") and torch.cuda.is_available() and not bf16_supported():
        major, minor = torch.cuda.get_device_capability()
        raise ValueError(
            f"trainer.precision={precision}: the {torch.cuda.get_device_name()} (compute capability {major}.{minor}) has no bf16, "
            "which needs 8.0 or later: use --trainer.precision 16-mixed"
        )


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for the next step instead of returning it to the kernel.

    By default every tensor over its mmap threshold (at most 32 MiB: a gpt_small step's logits are
    more) is mapped on allocation and unmapped when freed, and the heap is trimmed as it shrinks:
    about 1.5 million page faults in 35 gpt_small steps on a CPU, and 10-15% of the step time. With
    both thresholds at 1 GiB the same steps take 0.2 million, for the same peak memory (what
    jemalloc or tcmalloc would do). Nothing changes on other C libraries or on GPU memory."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and others: not glibc
        return
    mallopt = getattr(libc, "mallopt", None)
    if mallopt:
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
        mallopt(M_MMAP_THRESHOLD, 1 << 30)
        mallopt(M_TRIM_THRESHOLD, 1 << 30)


def _name(value) -> str | None:
    """A strategy's or accelerator's name, given as a string or as a ``class_path`` config."""
    if value is None or isinstance(value, str):
        return value
    class_path = value.get("class_path") if hasattr(value, "get") else None
    return class_path.rsplit(".", 1)[-1] if class_path else type(value).__name__
