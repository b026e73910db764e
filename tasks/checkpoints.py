"""Networks out of this platform's checkpoints: a task saves each injected network's config
(``class_path``/``init_args``) in its hyperparameters, so the network can be rebuilt without the
user repeating its architecture."""

import importlib
import os
import pickle
import zipfile

import torch
from torch import nn


def read_checkpoint(path: str, what: str = "checkpoint") -> dict:
    """Load a checkpoint weights-only (no code from the file runs), memory-mapped so it costs little;
    ``what`` names the setting the path came from in the one-line errors."""
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


def load_network(ckpt_path: str, key: str, what: str = "checkpoint") -> nn.Module:
    """The network stored under ``key`` (e.g. ``encoder``, ``net``) of a checkpoint, with its weights."""
    checkpoint = read_checkpoint(ckpt_path, what)
    spec = checkpoint.get("hyper_parameters", {}).get(key)
    if not isinstance(spec, dict) or "class_path" not in spec:
        found = [k for k, v in checkpoint.get("hyper_parameters", {}).items() if isinstance(v, dict) and "class_path" in v]
        raise ValueError(f"{ckpt_path}: no network {key!r} in its hyperparameters; expected one of {found or 'none found'}")
    module, name = spec["class_path"].rsplit(".", 1)
    network = getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))
    prefix = f"{key}."
    network.load_state_dict({k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    return network
