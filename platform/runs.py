"""Run directories: every run gets its own, deterministic one, so resuming finds it again.

    runs/<name>/            config.yaml, wandb_id, checkpoints/last.ckpt, wandb/
    runs/<name>-2/          a second fresh run of the same name (the first is never overwritten)
"""

import os
import pickle
import re

import torch


def run_dirs(runs_dir: str, name: str) -> list[str]:
    """Existing runs of ``name``, oldest first: ``name``, ``name-2``, ``name-3``, ..."""
    if not os.path.isdir(runs_dir):
        return []
    pattern = re.compile(rf"{re.escape(name)}(?:-(\d+))?")
    found = [(int(m.group(1) or 1), d) for d in os.listdir(runs_dir) if (m := pattern.fullmatch(d))]
    return [os.path.join(runs_dir, d) for _, d in sorted(found)]


def new_run_dir(runs_dir: str, name: str) -> str:
    """The directory for a fresh run: ``runs/<name>``, or the next free ``runs/<name>-N``."""
    taken = run_dirs(runs_dir, name)
    if not taken:
        return os.path.join(runs_dir, name)
    last = os.path.basename(taken[-1])
    number = int(last.rsplit("-", 1)[1]) if last != name else 1
    return os.path.join(runs_dir, f"{name}-{number + 1}")


def last_checkpoint(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints", "last.ckpt")


def resolve_ckpt_path(ckpt_path: str, runs_dir: str, name: str) -> str:
    """``last`` (the newest run of ``name`` that has a last checkpoint), a run directory, or a file."""
    if ckpt_path == "last":
        candidates = [d for d in run_dirs(runs_dir, name) if os.path.isfile(last_checkpoint(d))]
        if not candidates:
            raise FileNotFoundError(
                f"--ckpt_path last: no checkpoint to resume, {last_checkpoint(os.path.join(runs_dir, name))} does not exist "
                f"(runs of {name!r} are looked up in {runs_dir}/; set --run.name to pick another)"
            )
        return last_checkpoint(candidates[-1])
    if os.path.isdir(ckpt_path):
        path = last_checkpoint(ckpt_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: a directory without {os.path.relpath(path, ckpt_path)}; expected a run directory")
        return path
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such file; expected 'last', a run directory or a .ckpt file")
    return ckpt_path


def run_dir_of(ckpt_path: str) -> str | None:
    """The run directory a checkpoint belongs to, if it sits in ``<run>/checkpoints/``."""
    parent = os.path.dirname(os.path.abspath(ckpt_path))
    return os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else None


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint weights-only (no code from the file runs), memory-mapped so it costs little."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(f"--ckpt_path {path}: refused, it holds Python objects that weights-only loading does not run ({first_line})") from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"--ckpt_path {path}: not a readable checkpoint ({err})") from err


def check_fits(model: torch.nn.Module, checkpoint: dict, path: str) -> None:
    """Refuse a checkpoint whose tensors do not have the configured model's shapes."""
    saved = checkpoint.get("state_dict", {})
    for name, tensor in model.state_dict().items():
        if name in saved and saved[name].shape != tensor.shape:
            raise ValueError(
                f"--ckpt_path {path} does not fit the configured model: {name} has shape {tuple(saved[name].shape)} "
                f"in the checkpoint and {tuple(tensor.shape)} in the model"
            )
