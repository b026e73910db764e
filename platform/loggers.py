"""Weights & Biases for every fit: online with credentials, offline (synced later) without."""

import netrc
import os
import secrets

from lightning.pytorch.loggers import WandbLogger


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(run_dir: str, name: str, project: str, config) -> WandbLogger:
    """A W&B logger writing to ``<run_dir>/wandb``. The run id is kept in ``<run_dir>/wandb_id``, so a
    resumed run logs into the same W&B run. Offline unless credentials exist or WANDB_MODE says otherwise."""
    os.makedirs(run_dir, exist_ok=True)
    id_file = os.path.join(run_dir, "wandb_id")
    if os.path.exists(id_file):
        run_id = open(id_file).read().strip()
    else:
        run_id = secrets.token_hex(4)
        with open(id_file, "w") as f:
            f.write(run_id + "\n")
    offline = "WANDB_MODE" not in os.environ and not has_wandb_credentials()
    model = config.model.class_path.rsplit(".", 1)[-1]
    data = config.data.class_path.rsplit(".", 1)[-1]
    return WandbLogger(
        name=os.path.basename(run_dir), project=project, save_dir=run_dir, id=run_id, offline=offline,
        group=name, tags=[model, data, name], job_type="fit",
    )  # fmt: skip


def wandb_sync_hint(logger: WandbLogger) -> str:
    run = logger.experiment
    if getattr(run, "offline", False) or os.environ.get("WANDB_MODE") == "offline":
        return f"offline in {run.dir.rsplit('/files', 1)[0]}; upload with: wandb sync {run.dir.rsplit('/files', 1)[0]}"
    return getattr(run, "url", None) or "disabled"
