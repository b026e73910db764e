"""Run directories: every run gets its own, deterministic one, so resuming finds it again.

    runs/<name>/            config.yaml, wandb_id, checkpoints/last.ckpt, wandb/
    runs/<name>-2/          a second fresh run of the same name (the first is never overwritten)

A run's name is one path component (``check_run_name``), so a run is always a directory directly
inside ``run.dir``: never outside it, never nested where ``--ckpt_path last`` would not look.
"""

import glob
import os
import re

from core.checkpoints import is_sharded

RUN_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # ASCII only: a name that is the same directory on every file system


def check_run_name(name: str) -> str:
    """``name``, if it can name a run: one path component of ASCII letters, digits, ``-``, ``_`` and
    ``.``, and neither ``.`` nor ``..``; else a one-line ValueError naming it. Checked before anything
    is created, so a bad name (``../../x``, ``a/b``, an absolute path, a config file's name with a
    space) never writes outside ``run.dir``."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"run.name={name!r}: expected one path component of letters, digits, '-', '_' and '.' (not '.' or '..'); "
            "the name defaults to the config file's, set --run.name to choose another"
        )
    return name


def run_dir(runs_dir: str, name: str) -> str:
    """The directory of the run ``name``: ``runs/<name>``, once ``name`` is checked (``check_run_name``)."""
    return os.path.join(runs_dir, check_run_name(name))


def run_dirs(runs_dir: str, name: str) -> list[str]:
    """Existing runs of ``name``, oldest first: ``name``, ``name-2``, ``name-3``, ..."""
    check_run_name(name)
    if not os.path.isdir(runs_dir):
        return []
    pattern = re.compile(rf"{re.escape(name)}(?:-(\d+))?")
    found = [(int(m.group(1) or 1), d) for d in os.listdir(runs_dir) if (m := pattern.fullmatch(d))]
    return [os.path.join(runs_dir, d) for _, d in sorted(found)]


def new_run_dir(runs_dir: str, name: str) -> str:
    """The directory for a fresh run: ``runs/<name>``, or the next free ``runs/<name>-N``."""
    taken = run_dirs(runs_dir, name)  # checks the name
    if not taken:
        return run_dir(runs_dir, name)
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
    """``last`` (the newest run of ``name`` that has a last checkpoint), ``best`` (the newest that kept a
    best one, ``run.monitor``), a run directory, or a file.
    ``name`` is checked whatever ``ckpt_path`` is: the CLI falls back on ``runs/<name>`` for a file
    outside any run directory."""
    check_run_name(name)
    if ckpt_path == "last":
        candidates = [c for c in map(newest_checkpoint, run_dirs(runs_dir, name)) if c]
        if not candidates:
            raise FileNotFoundError(
                f"--ckpt_path last: no checkpoint to resume, {last_checkpoint(run_dir(runs_dir, name))} does not exist "
                f"(runs of {name!r} are looked up in {runs_dir}/; set --run.name to pick another)"
            )
        return candidates[-1]
    if ckpt_path == "best":
        candidates = [c for c in (os.path.join(d, "checkpoints", "best.ckpt") for d in run_dirs(runs_dir, name)) if os.path.exists(c)]
        if not candidates:
            raise FileNotFoundError(
                f"--ckpt_path best: {os.path.join(run_dir(runs_dir, name), 'checkpoints', 'best.ckpt')} does not exist: a fit keeps one "
                f"when it monitors a metric (--run.monitor val/loss); runs of {name!r} are looked up in {runs_dir}/"
            )
        return candidates[-1]
    if os.path.isdir(ckpt_path) and not is_sharded(ckpt_path):
        path = newest_checkpoint(ckpt_path)
        if path is None:
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: a directory without checkpoints/last.ckpt; expected a run directory")
        return path
    if not os.path.exists(ckpt_path):
        raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such file or run directory; expected 'last', 'best', a run directory or a .ckpt file")
    return ckpt_path


def run_dir_of(ckpt_path: str) -> str | None:
    """The run directory a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` or ``<run>/hpc_ckpt_N.ckpt``."""
    parent = os.path.dirname(ckpt_path)
    if os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent)
    return parent if os.path.basename(ckpt_path).startswith("hpc_ckpt_") else None


def check_writable(runs_dir: str) -> None:
    """``run.dir``, or the directory it will be created in, is a directory this process can write."""
    existing = os.path.abspath(runs_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        what = "not a directory" if not os.path.isdir(existing) else "not writable"
        where = "it is" if existing == os.path.abspath(runs_dir) else f"{existing} is"
        raise ValueError(f"run.dir={runs_dir}: cannot write runs there, {where} {what}: expected a directory this user can write (set --run.dir)")


def free_path(path: str) -> str:
    """``path``, or ``<stem>-2<ext>``, ``-3``... beside it: an earlier file (predictions, a plot) is never overwritten."""
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(path):
        n += 1
        path = f"{stem}-{n}{ext}"
    return path


def add_checkpoint_arguments(parser) -> None:
    """The options that name a run's checkpoint, for the commands on a run's files (``generate``, ``export``)."""
    parser.add_argument("--ckpt_path", required=True, help="a run directory (its newest checkpoint), a .ckpt file, or last/best of the run --name")
    parser.add_argument("--name", help="the run whose checkpoint --ckpt_path last or best means (run_dir/NAME)")
    parser.add_argument("--run_dir", default="runs", help="where the runs are (default: runs)")


def find_checkpoint(args, command: str) -> str:
    """The checkpoint the options of ``add_checkpoint_arguments`` name: a run directory's newest, a ``.ckpt`` file,
    or ``last``/``best`` of the run ``--name``."""
    if args.ckpt_path in ("last", "best") and args.name is None:
        raise ValueError(
            f"{command} --ckpt_path {args.ckpt_path}: of which run? expected --name NAME (the run {args.run_dir}/NAME), a run directory or a .ckpt file"
        )
    return resolve_ckpt_path(args.ckpt_path, args.run_dir, args.name or "run")  # the name matters to last and best alone
