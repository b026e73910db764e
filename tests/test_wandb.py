"""W&B: offline without credentials, one run across a resume, the nested config logged once."""

import math
import os

import wandb

from tests.wandb_records import read_run


def test_offline_run_resumes_into_the_same_wandb_run(cli, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    cli_args = ["fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "20"]

    def run(*extra):
        monkeypatch.delenv("WANDB_MODE", raising=False)  # no credentials: the platform goes offline itself
        return cli(*cli_args, *extra, wandb_mode=None)

    runs = run("--trainer.max_steps", "10")
    out = capsys.readouterr().out
    assert "upload with: wandb sync" in out, out
    run("--ckpt_path", "last")
    wandb.teardown()  # wandb.finish can return before W&B's service has written the run file out; its exit cannot
    first, second = read_run(os.path.join(runs, "gpt_nano"))
    assert first["run_id"] == second["run_id"] == open(os.path.join(runs, "gpt_nano", "wandb_id")).read().strip()
    assert first["group"] == "gpt_nano" and {"CausalLM", "TextDataModule", "gpt_nano"} <= set(first["tags"])

    # the whole nested config, once: no flattened duplicates of the model's hyperparameters
    config = second["config"]
    assert config["model"]["init_args"]["net"]["init_args"]["vocab_size"] == 261
    assert config["trainer"]["max_steps"] == 20 and "lr" not in config and "net" not in config

    steps = [[row["trainer/global_step"] for row in s["history"] if "train/loss" in row] for s in (first, second)]
    assert steps[0] and steps[1] and max(steps[0]) < min(steps[1])  # the step axis continues
    assert any("val/loss" in row for row in second["history"])


def test_a_test_of_the_run_logs_its_test_metrics_into_the_runs_wandb_run(cli, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", os.devnull)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline: no credentials
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "4", "--trainer.limit_val_batches", "1", wandb_mode=None)
    cli("test", "--config", "configs/gpt_nano.yaml", "--ckpt_path", "last", "--trainer.limit_test_batches", "2", wandb_mode=None)
    wandb.teardown()
    fit, test = read_run(os.path.join(runs, "gpt_nano"))
    assert fit["run_id"] == test["run_id"]
    tested = [row for row in test["history"] if "test/loss" in row]
    assert len(tested) == 1 and 0 < tested[0]["test/loss"] < 10 and abs(tested[0]["test/ppl"] - math.exp(tested[0]["test/loss"])) < 1e-3
    assert not any("test/loss" in row for row in fit["history"])


def test_other_loggers_replace_wandb(cli, tmp_path):
    """W&B is optional: a CSV or TensorBoard logger takes its place, and a resume keeps what the
    first segment wrote (the CSV logger opens a new version instead of overwriting)."""
    csv = ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path / "csv")]
    runs = cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "10", *csv)
    cli("fit", "--config", "configs/gpt_nano.yaml", "--ckpt_path", "last", *csv)
    metrics = sorted((tmp_path / "csv" / "lightning_logs").glob("version_*/metrics.csv"))
    assert len(metrics) == 2 and all("train/loss" in m.read_text() for m in metrics)
    assert not (tmp_path / "runs" / "gpt_nano" / "wandb").exists()

    tensorboard = ["--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tmp_path / "tb")]
    cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "5", *tensorboard)
    assert list((tmp_path / "tb").glob("lightning_logs/version_0/events.out.tfevents.*"))
    assert os.path.isfile(os.path.join(runs, "gpt_nano-2", "checkpoints", "last.ckpt"))
