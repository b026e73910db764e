"""Weights & Biases for every fit: online with credentials, offline (synced later) without; and the same
metrics in a file of the run, ``metrics.jsonl``, for reading offline."""

import json
import netrc
import os
import secrets
import sys
import time

from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(run_dir: str, name: str, project: str, config) -> WandbLogger:
    """A W&B logger writing to ``<run_dir>/wandb``, offline unless there are credentials or WANDB_MODE
    says otherwise. The run id is kept in ``<run_dir>/wandb_id`` (written when the fit starts), so a
    resumed run logs into the same W&B run."""
    id_file = os.path.join(run_dir, "wandb_id")
    run_id = open(id_file).read().strip() if os.path.exists(id_file) else secrets.token_hex(4)
    offline = "WANDB_MODE" not in os.environ and not has_wandb_credentials()
    model = config.model.class_path.rsplit(".", 1)[-1]
    data = config.data.class_path.rsplit(".", 1)[-1]
    return WandbLogger(
        name=os.path.basename(run_dir), project=project, save_dir=run_dir, id=run_id, offline=offline,
        group=name, tags=[model, data, name], job_type="fit",
    )  # fmt: skip


def wandb_sync_hint(logger: WandbLogger) -> str:
    if os.environ.get("WANDB_MODE") == "disabled":
        return "disabled (WANDB_MODE=disabled)"
    run = logger.experiment
    if run.offline:
        run_dir = os.path.dirname(run.dir)  # .../wandb/offline-run-<time>-<id>/files
        return f"offline in {run_dir}; upload with: wandb sync {run_dir}"
    return run.url


def finish_wandb(exit_code: int = 0) -> None:
    """Close the W&B run of this process, if one was started, so that a later run in the same process
    (tests, notebooks) starts its own instead of silently reusing it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


class MetricsFile(Logger):
    """Every scalar the run logs (what W&B gets), one JSON line per logging call, in ``<run>/metrics.jsonl``:
    ``{"step": optimizer steps done, "wall_s": seconds since the run began, resumes included, <metric>: value...}``.

    Readable offline (``python -m platform compare``). A resumed fit first drops the lines logged after its
    checkpoint's step (the resumed run logs those steps again); a metric already written at a step is not written
    again, so each metric has each step once, across resumes too, and no gap. Rank 0 writes it."""

    def __init__(self, path: str, start_time: float, resume_step: int | None = None):
        super().__init__()
        self.path, self.start_time, self.resume_step = path, start_time, resume_step
        self.offset, self.written, self.ready = 0.0, set(), False

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> str:
        return ""

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the run's config.yaml holds them

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if not self.ready:
            self._start()
        step = (step or 0) + 1  # Lightning's step is the optimizer steps done, less one
        row = {k: float(v) for k, v in metrics.items() if (step, k) not in self.written}
        if row:
            wall = round(self.offset + time.perf_counter() - self.start_time, 3)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "wall_s": wall, **row}) + "\n")
            self.written.update((step, k) for k in row)  # Lightning logs `epoch` with each call of a step: once

    def _start(self) -> None:
        """A resume keeps what was logged up to its checkpoint (rewritten aside, then renamed into place)."""
        self.ready = True
        if self.resume_step is None or not os.path.exists(self.path):
            return
        kept = [row for row in read_metrics(self.path) if row["step"] <= self.resume_step]
        with open(f"{self.path}.partial", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in kept)
        os.replace(f"{self.path}.partial", self.path)
        self.offset = kept[-1]["wall_s"] if kept else 0.0
        self.written = {(row["step"], k) for row in kept if row["step"] == self.resume_step for k in row}


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl``; a last line cut short by a kill is left out."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise ValueError(f"{path}: line {len(rows) + 1} is not JSON; expected the metrics the platform wrote") from None
    return rows
