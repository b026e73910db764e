import os
import sys

import pytest
import yaml

from litlab.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> str:
    """One token cache for the whole session: each corpus is tokenized once."""
    return str(tmp_path_factory.mktemp("tokens"))


@pytest.fixture
def cli(tmp_path, token_cache, monkeypatch):
    """Run ``python -m platform`` in-process, with runs under tmp_path and W&B disabled unless asked."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("sys.argv", ["python -m platform"])
    runs = tmp_path / "runs"

    def run(*args: str, wandb_mode: str | None = "disabled") -> str:
        if wandb_mode:
            monkeypatch.setenv("WANDB_MODE", wandb_mode)
        if "wandb" in sys.modules:  # W&B caches its environment per process: start each run afresh
            sys.modules["wandb"].teardown()
        subcommand, rest = args[0], list(args[1:])
        config = yaml.safe_load(open(rest[rest.index("--config") + 1]))
        if config["data"]["class_path"] == "datamodules.TextDataModule":
            rest += ["--data.init_args.cache_dir", token_cache]
        main([subcommand, *rest, "--run.dir", str(runs), "--trainer.enable_progress_bar", "false"])
        return str(runs)

    return run
