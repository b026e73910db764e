"""Run directories: every run gets its own, deterministic one, so resuming finds it again.

    runs/<name>/            config.yaml, wandb_id, checkpoints/last.ckpt, wandb/
    runs/<name>-2/          a second fresh run of the same name (the first is never overwritten)
"""

import glob
import os
import re

from core.checkpoints import is_sharded


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


def newest_checkpoint(run_dir: str) -> str | None:
    """The run's newest checkpoint: ``checkpoints/last.ckpt``, or a ``hpc_ckpt_N.ckpt`` that Lightning
    saved into the run directory when SLURM signalled a preemption, whichever was written last."""
    candidates = [last_checkpoint(run_dir), *glob.glob(os.path.join(run_dir, "hpc_ckpt_*.ckpt"))]
    found = [p for p in candidates if os.path.exists(p)]  # a file, or a directory of shards
    return max(found, key=os.path.getmtime, default=None)


def resolve_ckpt_path(ckpt_path: str, runs_dir: str, name: str) -> str:
    """``last`` (the newest run of ``name`` that has a last checkpoint), a run directory, or a file."""
    if ckpt_path == "last":
        candidates = [c for c in map(newest_checkpoint, run_dirs(runs_dir, name)) if c]
        if not candidates:
            raise FileNotFoundError(
                f"--ckpt_path last: no checkpoint to resume, {last_checkpoint(os.path.join(runs_dir, name))} does not exist "
                f"(runs of {name!r} are looked up in {runs_dir}/; set --run.name to pick another)"
            )
        return candidates[-1]
    if os.path.isdir(ckpt_path) and not is_sharded(ckpt_path):
        path = newest_checkpoint(ckpt_path)
        if path is None:
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: a directory without checkpoints/last.ckpt; expected a run directory")
        return path
    if not os.path.exists(ckpt_path):
        raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such file; expected 'last', a run directory or a .ckpt file")
    return ckpt_path


def run_dir_of(ckpt_path: str) -> str | None:
    """The run directory a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` or ``<run>/hpc_ckpt_N.ckpt``."""
    parent = os.path.dirname(ckpt_path)
    if os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent)
    return parent if os.path.basename(ckpt_path).startswith("hpc_ckpt_") else None
