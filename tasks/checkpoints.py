"""Networks out of this platform's checkpoints: a task saves each injected network's config
(``class_path``/``init_args``) in its hyperparameters, so the network can be rebuilt without the
user repeating its architecture."""

import importlib
import os
import pickle
import zipfile
from pathlib import Path

import torch
from lightning.fabric.utilities.load import _load_distributed_checkpoint
from torch import nn
from torch.distributed.checkpoint import FileSystemReader


def read_checkpoint(path: str, what: str = "checkpoint", tensors: bool = True) -> dict:
    """Load a checkpoint weights-only (no code from the file runs), memory-mapped so it costs little;
    ``what`` names the setting the path came from in the one-line errors. A sharded checkpoint (a
    directory, one shard per process: FSDP2) is consolidated in memory, or, with ``tensors=False``,
    read for its metadata and the shapes of its tensors (meta tensors) only."""
    if is_sharded(path):
        return read_sharded(path, tensors)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} {path}: not a checkpoint (expected a file that torch.save or Lightning wrote)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(f"{what} {path}: refused, it holds Python objects that weights-only loading does not run ({first_line})") from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{what} {path}: not a readable checkpoint ({err})") from err


def is_sharded(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ".metadata"))  # torch.distributed.checkpoint's index


def read_sharded(path: str, tensors: bool = True) -> dict:
    if tensors:
        return _load_distributed_checkpoint(Path(path))
    checkpoint = torch.load(os.path.join(path, "meta.pt"), map_location="cpu", weights_only=True)  # what Lightning saves beside the shards
    shapes = FileSystemReader(path).read_metadata().state_dict_metadata
    checkpoint["state_dict"] = {
        k.removeprefix("state_dict."): torch.empty(m.size, device="meta") for k, m in shapes.items() if k.startswith("state_dict.") and hasattr(m, "size")
    }
    return checkpoint


def build(spec):
    """Instantiate a saved config: ``{class_path, init_args}`` dicts (nested ones too) become objects."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, name = spec["class_path"].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)(**{k: build(v) for k, v in (spec.get("init_args") or {}).items()})
    if isinstance(spec, dict):
        return {k: build(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [build(v) for v in spec]
    return spec


def networks_of(checkpoint: dict) -> dict[str, dict]:
    """The networks a checkpoint can rebuild, by state_dict prefix: ``net``, ``encoder``, and a
    distillation's student's, ``student.net``/``student.backbone``."""
    found = {}
    for key, spec in checkpoint.get("hyper_parameters", {}).items():
        if isinstance(spec, dict) and "class_path" in spec:
            found[key] = spec
            for inner, inner_spec in (spec.get("init_args") or {}).items():
                if isinstance(inner_spec, dict) and "class_path" in inner_spec:
                    found[f"{key}.{inner}"] = inner_spec
    return found


def state_under(checkpoint: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of ``state_dict`` under ``prefix.``, with the prefix taken off."""
    prefix += "."
    return {k[len(prefix) :]: v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith(prefix)}


def load_state(module: nn.Module, checkpoint: dict, prefix: str, what: str) -> None:
    """Load the tensors under ``prefix`` of a checkpoint's state_dict (all of them for ``""``) into
    ``module``; one-line errors name both sides of a mismatch."""
    state = state_under(checkpoint, prefix) if prefix else dict(checkpoint["state_dict"])
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
    module.load_state_dict(state)


def load_network(ckpt_path: str, key: str | tuple[str, ...], what: str = "checkpoint") -> tuple[nn.Module, str]:
    """The network stored under ``key`` (or the first of several keys present), rebuilt from its saved
    config and loaded with its weights; returns it and the key it was found under."""
    return rebuild_network(read_checkpoint(ckpt_path, what), key, f"{what} {ckpt_path}")


def rebuild_network(checkpoint: dict, key: str | tuple[str, ...], what: str) -> tuple[nn.Module, str]:
    """``load_network`` for a checkpoint already read."""
    found = networks_of(checkpoint)
    keys = (key,) if isinstance(key, str) else key
    match = next((k for k in keys if k in found), None)
    if match is None:
        raise ValueError(f"{what}: no {' or '.join(map(repr, keys))} network in it; it holds {', '.join(found) or 'none this platform can rebuild'}")
    network = build(found[match])
    load_state(network, checkpoint, match, what)
    return network, match


def load_task(ckpt_path: str):
    """The task (LightningModule) a checkpoint of this platform holds, rebuilt from its hyperparameters
    and loaded with its weights. A distillation checkpoint gives its student as a plain task of its
    kind (Classification, CausalLM). Arguments that name other checkpoints (``*_ckpt``) are dropped:
    the weights they would load are in this checkpoint."""
    checkpoint = read_checkpoint(ckpt_path)
    hparams, prefix = dict(checkpoint.get("hyper_parameters", {})), ""
    class_path = checkpoint.get("task") or hparams.get("_class_path")  # ours, or LightningCLI's record
    if not class_path:
        raise ValueError(f"{ckpt_path}: no task class recorded (expected a checkpoint written by `python -m platform fit`)")
    spec = {"class_path": class_path, "init_args": hparams}
    if class_path.rsplit(".", 1)[-1] == "Distillation":
        spec, prefix = hparams["student"], "student"
    # "_class_path" and the like are LightningCLI's records, not arguments
    spec = {**spec, "init_args": {k: (None if k.endswith("_ckpt") else v) for k, v in spec["init_args"].items() if not k.startswith("_")}}
    task = build(spec)
    task.hparams.update({k: v for k, v in spec["init_args"].items() if k not in task.hparams})  # the networks' configs, so it saves as it loaded
    load_state(task, checkpoint, prefix, ckpt_path)
    return task
