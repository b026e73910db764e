"""Reading this platform's checkpoints: weights-only (nothing in a file runs), memory-mapped, sharded
ones (a directory of FSDP2 shards) consolidated, and refused in one line when they are not what a
setting expects.

Every checkpoint a task writes carries a record, ``checkpoint["platform"]``:

    format        CHECKPOINT_FORMAT when it was written
    task          the task's class path, which ``tasks.checkpoints.load_task`` rebuilds
    main_network  where its main network sits (``net``; a distillation's ``student.net``): the one a
                  later run takes as its backbone, its init_ckpt, its teacher's network, its FID encoder
"""

import os
import pickle
import zipfile

import torch
from torch import nn
from torch.distributed.checkpoint import FileSystemReader

from core.compat import load_distributed_checkpoint

CHECKPOINT_FORMAT = 2  # 1: before 2026-12-02, when tasks took lr, weight_decay... and batches were tuples


def read_checkpoint(path: str, what: str = "checkpoint", tensors: bool = True) -> dict:
    """Load a checkpoint of this platform; ``what`` names the setting the path came from in the one-line
    errors. A sharded checkpoint is consolidated in memory, or, with ``tensors=False``, read for its
    metadata and the shapes of its tensors (meta tensors) only."""
    if is_sharded(path):
        checkpoint = read_sharded(path, tensors)
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} {path}: no such file")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{what} {path}: not a checkpoint (expected a file that torch.save or Lightning wrote)")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as err:
            first_line = str(err).strip().splitlines()[0]
            raise ValueError(f"{what} {path}: refused, it holds Python objects that weights-only loading does not run ({first_line})") from err
        except (RuntimeError, EOFError) as err:
            raise ValueError(f"{what} {path}: not a readable checkpoint ({err})") from err
    check_format(checkpoint, f"{what} {path}")
    return checkpoint


def check_format(checkpoint: dict, what: str) -> None:
    record = checkpoint.get("platform")
    if isinstance(record, dict) and record.get("format") == CHECKPOINT_FORMAT:
        return
    if isinstance(record, dict):
        raise ValueError(f"{what}: checkpoint format {record.get('format')}, expected {CHECKPOINT_FORMAT}: written by another version of this platform")
    if "task" in checkpoint or "hyper_parameters" in checkpoint:
        raise ValueError(
            f"{what}: written before 2026-12-02 by an earlier version of this platform, whose tasks took their optimizer "
            f"and data arguments differently: expected a checkpoint of format {CHECKPOINT_FORMAT} (retrain it with this version)"
        )
    raise ValueError(f"{what}: not a checkpoint of this platform (no record of its task): expected one written by `python -m platform fit`")


def is_sharded(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ".metadata"))  # torch.distributed.checkpoint's index


def read_sharded(path: str, tensors: bool = True) -> dict:
    if tensors:
        return load_distributed_checkpoint(path)
    checkpoint = torch.load(os.path.join(path, "meta.pt"), map_location="cpu", weights_only=True)  # what Lightning saves beside the shards
    shapes = FileSystemReader(path).read_metadata().state_dict_metadata
    checkpoint["state_dict"] = {
        k.removeprefix("state_dict."): torch.empty(m.size, device="meta") for k, m in shapes.items() if k.startswith("state_dict.") and hasattr(m, "size")
    }
    return checkpoint


def record(checkpoint: dict) -> dict:
    """The platform's record in a checkpoint (see the module's docstring)."""
    return checkpoint["platform"]


def saved_tokenizer(checkpoint: dict) -> str | None:
    """The tokenizer (its ``to_str``) that a text datamodule saved in a checkpoint, if any."""
    return next((v["tokenizer"] for v in checkpoint.values() if isinstance(v, dict) and isinstance(v.get("tokenizer"), str)), None)


def network_config(checkpoint: dict, path: str) -> dict | None:
    """The saved config (``class_path``/``init_args``) of the network at ``path`` in the task's
    hyperparameters: ``net`` is ``hyper_parameters["net"]``, ``student.net`` the student's ``net``."""
    config = checkpoint.get("hyper_parameters", {})
    *tasks, name = path.split(".")
    for task in tasks:
        config = (config.get(task) or {}).get("init_args", {})
    spec = config.get(name)
    return spec if isinstance(spec, dict) and "class_path" in spec else None


def state_under(checkpoint: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of ``state_dict`` under ``prefix.`` (all of them for ``""``), the prefix taken off."""
    state = checkpoint.get("state_dict", {})
    if not prefix:
        return dict(state)
    return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}


def check_fits(module: nn.Module, state: dict[str, torch.Tensor], what: str, prefix: str = "") -> None:
    """Refuse tensors that do not fit ``module``: names on one side only, or another shape; the line
    names both sides of the first mismatch."""
    own, dot = module.state_dict(), f"{prefix}." if prefix else ""
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(
            f"{what}: its {prefix or 'weights'} does not fit the model (in the model only: {missing[:3] or 'none'}, "
            f"in the checkpoint only: {unexpected[:3] or 'none'}): expected the same architecture"
        )
    for name, tensor in own.items():
        if state[name].shape != tensor.shape:
            raise ValueError(f"{what}: {dot}{name} has shape {tuple(state[name].shape)} in the checkpoint and {tuple(tensor.shape)} in the model")


def load_state(module: nn.Module, checkpoint: dict, prefix: str, what: str) -> None:
    """Load the tensors under ``prefix`` of a checkpoint's state_dict into ``module``, once they fit."""
    state = state_under(checkpoint, prefix)
    check_fits(module, state, what, prefix)
    module.load_state_dict(state)
