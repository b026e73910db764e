"""Weights & Biases for every fit: online with credentials, offline (synced later) without."""

import netrc
import os
import secrets
import sys

from lightning.pytorch.loggers import WandbLogger


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
