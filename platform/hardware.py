"""What the device can run: the default precision, and strategies and precisions refused up front,
with a line that says what to use instead, rather than a failure minutes into a run."""

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
    GPUs, and bf16 on a GPU without it."""
    cuda = on_cuda(trainer.get("accelerator"))
    strategy = _name(trainer.get("strategy"))
    if strategy in FSDP_STRATEGIES and not cuda:
        raise ValueError(
            f"trainer.strategy={strategy} needs CUDA GPUs and this run is on the CPU: use --config configs/trainer/fsdp2.yaml "
            "(FSDP2 through ModelParallelStrategy, which also runs on CPUs) or --config configs/trainer/ddp.yaml"
        )
    precision = str(trainer.get("precision") or "")
    if cuda and precision.startswith("bf16") and torch.cuda.is_available() and not bf16_supported():
        major, minor = torch.cuda.get_device_capability()
        raise ValueError(
            f"trainer.precision={precision}: the {torch.cuda.get_device_name()} (compute capability {major}.{minor}) has no bf16, "
            "which needs 8.0 or later: use --trainer.precision 16-mixed"
        )


def _name(value) -> str | None:
    """A strategy's or accelerator's name, given as a string or as a ``class_path`` config."""
    if value is None or isinstance(value, str):
        return value
    class_path = value.get("class_path") if hasattr(value, "get") else None
    return class_path.rsplit(".", 1)[-1] if class_path else type(value).__name__
