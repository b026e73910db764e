"""scripts/benchmark.py's building blocks: its plain loop trains exactly as ``python -m platform fit``
does, and SpeedMonitor's windows are read back from a CSV log as the script expects."""

import argparse
import importlib.util
import json
import os

import pytest
import torch

from litlab.cli import PlatformCLI
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def bench():  # not "benchmark": pytest-benchmark owns that fixture name
    spec = importlib.util.spec_from_file_location("benchmark", os.path.join(ROOT, "scripts", "benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_loop_trains_as_fit_does(bench, tmp_path, token_cache, monkeypatch):
    """Same network, data order, dropout, AdamW groups, schedule and clipping: the weights after three
    plain steps are those after a three-step fit, bit for bit; so the benchmark compares like with like."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr("sys.argv", ["python -m platform"])  # LightningCLI warns about pytest's own arguments
    args = ["--config", "configs/gpt_nano.yaml", "--data.init_args.cache_dir", token_cache, "--trainer.max_steps", "3"]
    quiet = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    fit = PlatformCLI(args=["fit", *args, "--run.dir", str(tmp_path), *quiet])
    built = bench.build(args[1], args[2:])
    built.datamodule.prepare_data()
    built.datamodule.setup("fit")
    step = bench.plain_step(built.model.net, built.model, built.trainer, built.datamodule)
    tokens = [step() for _ in range(3)]
    assert tokens == [8 * 64] * 3  # batch_size x block_size, as TokenBatch.tokens counts
    fitted, plain = fit.model.net.state_dict(), step.net.state_dict()
    assert all(torch.equal(fitted[k], plain[k]) for k in fitted)

    result = bench.plain_loop("configs/gpt_nano.yaml", args[2:], warmup=1, steps=5)  # one window: log_every_n_steps is 5
    assert len(result["rates"]) == 1 and result["rates"][0] > 0 and "mfu" not in result  # no known peak FLOP/s on a CPU


def test_fit_and_plain_windows_alternate_in_the_fit_process(bench, cli, tmp_path):
    """The benchmark's fit runs the plain loop between its own windows: after 5 warm-up steps, windows
    of 5 steps (gpt_nano's log_every_n_steps) alternate, each side timed over whole windows."""
    windows = tmp_path / "windows.json"
    interleave = {"class_path": "scripts.benchmark.InterleavedPlainLoop", "init_args": {"path": str(windows), "warmup": 5}}
    cli("fit", "--config", "configs/gpt_nano.yaml", "--trainer.max_steps", "15", "--trainer.logger", "false",
        "--trainer.callbacks", json.dumps([interleave]))  # fmt: skip
    measured = json.loads(windows.read_text())
    assert len(measured["fit"]) == len(measured["plain"]) == 2  # steps 6-10 and 11-15, each followed by 5 plain steps
    assert all(rate > 0 for rate in measured["fit"] + measured["plain"])
    assert measured["mfu_per_token_per_sec"] is None  # no known peak FLOP/s on a CPU


def test_speed_windows_are_read_from_the_csv_log(bench, tmp_path):
    # as CSVLogger writes SpeedMonitor's values: global step s at logger step s - 1, beside other rows
    (tmp_path / "metrics.csv").write_text(
        "epoch,lr-AdamW/pg1,perf/samples_per_sec,perf/time_to_first_step,perf/tokens_per_sec,step,train/loss\n"
        ",0.0004,,,,9,\n0,,3.6,5.5,400.0,9,7.9\n0,,4.8,5.5,600.0,19,7.3\n0,,5.0,5.5,300.0,29,6.9\n"
    )
    windows = bench.speed_windows(str(tmp_path / "metrics.csv"))
    assert [w["end"] for w in windows] == [10, 20, 30]
    assert windows[0]["time_to_first_step"] == 5.5
    assert bench.measured(windows, warmup=10, steps=20) == [600.0, 300.0]  # steps 11-30
    assert bench.measured(windows, warmup=30, steps=10) == []


def test_the_tokenize_section_builds_each_corpus_and_reports_its_memory(tmp_path):
    """--quick: BBC News, and BBC News repeated to 1 and 5 MB of JSONL, each built in a fresh process (which
    imports the script by its module name, as ``python scripts/benchmark.py`` makes it importable)."""
    bench = importlib.import_module("scripts.benchmark")
    out = bench.section_tokenize(argparse.Namespace(quick=True), str(tmp_path))
    assert list(out) == ["bbc_news", "1mb", "5mb"]
    for name, mb in (("1mb", 1), ("5mb", 5)):
        assert abs(out[name]["corpus_mb"] - mb) < 0.01 and out[name]["tokens"] > 200_000 * mb
    assert all(0 < r["above_baseline_mb"] < r["peak_rss_mb"] and r["mb_per_sec"] > 0 for r in out.values())
    rows = bench.table({"tokenize": out})
    assert [row[0].split(":")[0] for row in rows] == [
        "token cache of BBC News as it ships", "token cache of BBC News repeated to 1 MB of JSONL", "token cache of BBC News repeated to 5 MB of JSONL"]  # fmt: skip
    assert os.listdir(tmp_path) == ["tokens-bbc"]  # the repeated corpora and their caches are removed as they go


def test_the_generate_section_times_both_loops_on_the_same_tokens(bench):
    """--quick: a 1-layer gpt_small-shaped net; both contexts (one that fits the 256 tokens, gpt_small's own that
    slides), the same greedy tokens asserted inside, and a row per context."""
    out = bench.section_generate(argparse.Namespace(quick=True))
    assert out["new_tokens"] == 256 and out["net"]["n_layer"] == 1 and out["net"]["positions"] == "rotary"
    for context in (512, 128):
        r = out[f"context_{context}"]
        assert r["same_tokens"] and r["cached_tokens_per_sec"] > 0 and r["uncached_tokens_per_sec"] > 0
        assert r["ratio"] == r["cached_tokens_per_sec"] / r["uncached_tokens_per_sec"]
    rows = bench.table({"generate": out})
    assert [row[0] for row in rows] == [f"generate: gpt_small's net, context {c}, 256 new tokens greedy: KV cache vs full recompute, tokens/s"
                                        for c in (512, 128)]  # fmt: skip
    assert rows[1][-1].endswith("the context is full after 120 new tokens, then slides") and "slides" not in rows[0][-1]
