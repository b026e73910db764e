"""The README's example objective (section "Adding an objective or a data source") runs as written:
its Python block, saved as a module, trains through the real CLI with its YAML block as the config,
and the checkpoint's encoder seeds a tasks.Classification."""

import os
import re
from pathlib import Path

import pytest
import torch
import yaml

from core.checkpoints import read_checkpoint, record
from tasks import Classification
from tests.conftest import ROOT
from tests.helpers import command, fit

README = os.path.join(ROOT, "README.md")
MODULE = "rotation_example"  # the name the example's module gets here (a user saves it as tasks/<name>.py)


def between_markers(text: str, name: str, language: str) -> str:
    """The fenced ``language`` block between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        pytest.fail(f"{README}: no {start} ... {end} markers (the example of 'Adding an objective or a data source')")
    inside = text.split(start, 1)[1].split(end, 1)[0]
    block = re.search(rf"```{language}\n(.*?)```", inside, re.DOTALL)
    if block is None:
        pytest.fail(f"{README}: no ```{language} block between {start} and {end}")
    return block.group(1)


def test_readme_example_objective(tmp_path, monkeypatch):
    text = Path(README).read_text(encoding="utf-8")
    code = between_markers(text, "example-objective", "python")
    config = yaml.safe_load(between_markers(text, "example-config", "yaml"))

    (tmp_path / f"{MODULE}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    class_path = config["model"]["class_path"]
    assert class_path.startswith("tasks."), f"the example config's model is {class_path}: expected a class in tasks/"
    config["model"]["class_path"] = f"{MODULE}.{class_path.rpartition('.')[2]}"  # tasks.rotation.Rotation -> rotation_example.Rotation
    cfg = tmp_path / "rotation.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))

    printed = fit(
        "--config", str(cfg), "--run.dir", str(tmp_path / "runs"), "--trainer.max_steps", "6",
        "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2", "--trainer.logger", "false",
    )  # fmt: skip

    assert re.search(r"final val/loss: \d", printed), printed
    assert "val/acc" in printed, printed
    ckpt_path = tmp_path / "runs" / "rotation" / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(str(ckpt_path))
    assert checkpoint["global_step"] == 6
    assert record(checkpoint)["main_network"] == "encoder"
    assert record(checkpoint)["task"] == config["model"]["class_path"]

    classifier = Classification(backbone_ckpt=str(ckpt_path), num_classes=10)  # the architecture from the checkpoint
    encoder = {k.removeprefix("encoder."): v for k, v in checkpoint["state_dict"].items() if k.startswith("encoder.")}
    backbone = classifier.backbone.state_dict()
    assert encoder and encoder.keys() == backbone.keys()
    for name, tensor in encoder.items():
        assert torch.equal(backbone[name], tensor), name

    # validating is testing too: Task's test_step scores the test split with the same score and stage_metrics
    tested = command("test", "--config", str(cfg), "--run.dir", str(tmp_path / "runs"), "--ckpt_path", "last", "--trainer.limit_test_batches", "2")
    assert re.search(r"test/acc\W+0\.\d", tested) and re.search(r"test/loss\W+\d", tested), tested
