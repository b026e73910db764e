"""W&B: offline without credentials, one run across a resume, the nested config logged once."""

import os

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
    first, second = read_run(os.path.join(runs, "gpt_nano"))
    assert first["run_id"] == second["run_id"] == open(os.path.join(runs, "gpt_nano", "wandb_id")).read().strip()
    assert first["group"] == "gpt_nano" and {"CausalLM", "TextDataModule", "gpt_nano"} <= set(first["tags"])

    # the whole nested config, once: no flattened duplicates of the model's hyperparameters
    config = second["config"]
    assert config["model"]["init_args"]["net"]["init_args"]["vocab_size"] == 257
    assert config["trainer"]["max_steps"] == 20 and "lr" not in config and "net" not in config

    steps = [[row["trainer/global_step"] for row in s["history"] if "train/loss" in row] for s in (first, second)]
    assert steps[0] and steps[1] and max(steps[0]) < min(steps[1])  # the step axis continues
    assert any("val/loss" in row for row in second["history"])
