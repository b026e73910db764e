"""scripts/ablation.py end to end on a tiny GPT: the table it prints and the plot it saves."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import ROOT


def test_the_ablation_writes_its_table_and_plot(tmp_path):
    out = tmp_path / "ablation"
    done = subprocess.run([sys.executable, "scripts/ablation.py", "--quick", "--arms", "2019", "muon", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("| 2019") or line.startswith("| muon")]
    assert len(rows) == 2  # one row an arm
    results = json.loads((out / "ablation.json").read_text())["results"]
    for arm in ("2019", "muon"):
        (run,) = results[arm]["seeds"]
        steps = [step for step, _, _ in run["curve"]]
        assert steps == [0, 10, 20] and run["curve"][-1][2] < run["curve"][0][2]  # evaluated every 10 steps, and it learned
    pixels = np.asarray(Image.open(out / "ablation_loss_vs_time.png").convert("RGB"))
    assert pixels.std() > 10  # lines on the plot, not a blank image
