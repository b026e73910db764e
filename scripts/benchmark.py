"""Benchmark the platform: ``python -m platform fit`` against a plain PyTorch loop of the same training.

    python scripts/benchmark.py                          # every section, about 17 min on the 2-core CPU
    python scripts/benchmark.py --only fit               # (1) alone, about 6 min
    python scripts/benchmark.py --quick                  # a smoke run of every section: a tiny GPT, few steps

Sections (``--only``):
  fit      gpt_small: tokens/s of ``python -m platform fit`` and of a plain loop (same network, batch,
           optimizer and param groups, schedule, clipping, DataLoader), and their ratio; target >= 0.95
  compile  the same pair with ``--model.init_args.compile true`` (compilation falls in the warm-up)
  data     tokenization MB/s of the BBC corpus (gpt_small's BPE, GPT-2's BPE); train DataLoader tokens/s
           against what training consumes
  tokenize building a token cache (prepare_data: split, BPE, tokens) of BBC News, and of BBC News repeated
           to 5, 50 and 500 MB of JSONL: seconds, MB/s, tokens/s and peak RSS above the process's baseline
  memory   peak memory of the gpt_small fit, without and with activation checkpointing
  gpu      gpt2_124m (bf16, compile, flash attention): tokens/s, MFU and fit/plain; CUDA only
  generate gpt_small's network generating 256 new tokens greedily: tokens/s with the KV cache and re-running the
           whole context for every token (GPT.generate before the cache), the same tokens asserted, and their ratio

The fit side is the real CLI, run as a subprocess from the repo root under a pseudo-terminal (so its
progress bar renders as a user sees it), with W&B replaced by a CSV logger. The plain side runs in
that same process (``InterleavedPlainLoop``): a copy of the network, made before training, trained by
a plain loop on the data and hyperparameters the CLI built, which trains bit for bit as the fit does
(tests/test_benchmark.py). After the warm-up, every window of 10 fit steps is followed by 10 plain
steps; each side is timed over whole windows. Adjacent windows see nearly the same machine, so the
ratio, the median over pairs of adjacent windows, held (0.965 and 1.004 in two runs) on a machine
whose speed drifts by 20-40% between runs minutes apart, where separate runs did not. Figures go to
``--out`` (JSON) and a markdown table beside it (.md); nothing here asserts on timings.
"""

import argparse
import copy
import csv
import glob
import json
import logging
import multiprocessing
import os
import pty
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # scripts.benchmark's callbacks are named by class path in the fit subprocess

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from lightning.fabric.utilities.throughput import get_available_flops  # noqa: E402

from core.labels import IGNORE  # noqa: E402
from datamodules.corpora import read_documents, resolve_files  # noqa: E402
from datamodules.tokenizers import load_tokenizer  # noqa: E402
from litlab.cli import PlatformCLI  # noqa: E402
from litlab.hardware import keep_freed_memory  # noqa: E402
from tasks.optim import param_groups, scale_learning_rates  # noqa: E402

SECTIONS = ("fit", "compile", "data", "tokenize", "memory", "gpu", "generate")
TARGET = 0.95  # fit/plain tokens/s
SMALL, GPT2 = "configs/gpt_small.yaml", "configs/gpt2_124m.yaml"
# --quick: a 1-layer, 64-wide GPT on the same data, so that every section runs in seconds
NET = "--model.init_args.net.init_args."
TINY = [NET + "n_layer", "1", NET + "n_head", "2", NET + "n_embd", "64"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


# -- the fit side: python -m platform fit in a subprocess -------------------------------------------
def run_fit(config: str, overrides: list[str], max_steps: int, workdir: str, name: str, callbacks: tuple[dict, ...] = ()) -> dict:
    """One ``python -m platform fit``; returns the SpeedMonitor windows from its CSV log, its peak RSS
    and exit status. Validation is cut to 2 batches: it runs only outside the measured window
    (every ``val_check_interval`` = 200 steps, and at the end), so this only saves time."""
    csv_dir = os.path.join(workdir, name)
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": csv_dir, "name": "csv"}}
    cmd = [sys.executable, "-m", "platform", "fit", "--config", config, "--run.dir", os.path.join(workdir, "runs"), "--run.name", name,
           "--trainer.max_steps", str(max_steps), "--trainer.limit_val_batches", "2", "--trainer.logger", json.dumps(logger)]  # fmt: skip
    callbacks = list(callbacks)
    if torch.cuda.is_available():  # the child's peak CUDA memory, written when training ends
        callbacks.append({"class_path": "scripts.benchmark.PeakCudaMemory", "init_args": {"path": os.path.join(csv_dir, "cuda.json")}})
    if callbacks:
        cmd += ["--trainer.callbacks", json.dumps(callbacks)]
    cmd += overrides
    env = {**os.environ, "WANDB_MODE": "disabled", "TORCHINDUCTOR_CACHE_DIR": os.path.join(ROOT, ".cache", "inductor")}
    os.makedirs(csv_dir, exist_ok=True)
    log_path = os.path.join(csv_dir, "output.log")
    start = time.perf_counter()
    # a pseudo-terminal: Rich's progress bar renders every step only when it writes to a terminal
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    with open(log_path, "wb") as log:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every writer of the terminal has exited
                break
            if not data:
                break
            log.write(data)
    os.close(master)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"rc": proc.returncode, "wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024, "log": log_path}
    if proc.returncode != 0:
        lines = [ln.strip() for ln in ANSI.sub("\n", open(log_path, errors="replace").read()).splitlines() if ln.strip()]
        result["error"] = next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else "no output")
        return result
    metrics = glob.glob(os.path.join(csv_dir, "csv", "*", "metrics.csv"))
    result["windows"] = speed_windows(metrics[0]) if metrics else []
    cuda = os.path.join(csv_dir, "cuda.json")
    if os.path.exists(cuda):
        result["cuda_max_allocated_mb"] = json.load(open(cuda))["max_allocated_mb"]
    return result


def speed_windows(metrics_csv: str) -> list[dict]:
    """SpeedMonitor's windows from a CSVLogger file: ``end`` (the optimizer step that closed the window),
    ``tokens_per_sec`` and, where known, ``mfu`` and ``time_to_first_step``. Lightning logs the values of
    global step s at logger step s - 1."""
    windows = []
    for row in csv.DictReader(open(metrics_csv)):
        if row.get("perf/tokens_per_sec"):
            window = {"end": int(row["step"]) + 1, "tokens_per_sec": float(row["perf/tokens_per_sec"])}
            for key in ("mfu", "time_to_first_step"):
                if row.get(f"perf/{key}"):
                    window[key] = float(row[f"perf/{key}"])
            windows.append(window)
    return windows


def measured(windows: list[dict], warmup: int, steps: int, key: str = "tokens_per_sec") -> list[float]:
    """The rates of the windows that lie in steps warmup+1 .. warmup+steps."""
    return [w[key] for w in windows if warmup < w["end"] <= warmup + steps and w.get(key)]


class PeakCudaMemory(L.Callback):
    """Given to the fit subprocess on a GPU: writes ``torch.cuda.max_memory_allocated`` when training ends."""

    def __init__(self, path: str):
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with open(self.path, "w") as f:
            json.dump({"max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}, f)


class InterleavedPlainLoop(L.Callback):
    """Given to the fit: after ``warmup`` steps, each window of ``log_every_n_steps`` fit steps is
    followed by a window of as many steps of the plain loop, in the same process, on a copy of the
    network made before training (the same initial weights, data order and hyperparameters; the plain
    side warms up, and compiles, before the first window). Writes each side's tokens/s per window to
    ``path``. A fit window and the plain window after it run seconds apart on the same machine, so
    their ratio is free of what other work on the machine does between separate runs."""

    def __init__(self, path: str, warmup: int):
        self.path, self.warmup, self.fit, self.plain = path, warmup, [], []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.net = copy.deepcopy(pl_module.net)  # before configure_model compiles the task's own in place

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.step = plain_step(self.net, pl_module, trainer, trainer.datamodule)
        self.sync = torch.cuda.synchronize if self.step.device.type == "cuda" else lambda: None
        self.start, self.tokens = time.perf_counter(), 0  # with no warm-up, the first window starts here

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        done = trainer.global_step - self.warmup
        if done < 0:
            return
        if done == 0:  # the plain side's warm-up
            for _ in range(self.warmup):
                self.step()
        else:
            self.tokens += batch.tokens
            if done % self.step.window:
                return
            self.sync()
            self.fit.append(self.tokens / (time.perf_counter() - self.start))
            self.plain.append(self._plain_window())
        self.sync()
        self.start, self.tokens = time.perf_counter(), 0

    def _plain_window(self) -> float:
        start, tokens = time.perf_counter(), 0
        for _ in range(self.step.window):
            tokens += self.step()
        self.sync()
        return tokens / (time.perf_counter() - start)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        peak = get_available_flops(self.step.device, self.step.dtype)  # None on CPUs
        flops = self.step.net.flops_per_token(self.step.seq_len) if peak and hasattr(self.step.net, "flops_per_token") else None
        with open(self.path, "w") as f:
            json.dump({"fit": self.fit, "plain": self.plain, "mfu_per_token_per_sec": flops / peak if flops else None}, f)


# -- the plain side: the same training without Lightning ---------------------------------------------
def build(config: str, overrides: list[str]) -> PlatformCLI:
    """Model, datamodule and trainer settings exactly as ``python -m platform fit`` would build them
    (config, overrides, seed, vocabulary filled from the data), without running anything."""
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when given args beside this script's own
    try:
        return PlatformCLI(args=["--config", config, *overrides, "--trainer.logger", "false"], run=False)
    finally:
        sys.argv = argv


def plain_step(net: torch.nn.Module, task: L.LightningModule, trainer: L.Trainer, data: L.LightningDataModule):
    """A function that runs one plain training step of ``net`` and returns its tokens: the next batch of
    the datamodule's train loader, forward, loss, backward, clipping, AdamW, schedule, zero_grad; each as
    the task does it (tasks.base.Task, tasks.CausalLM) and with what the trainer was configured with."""
    device = trainer.strategy.root_device
    net = net.to(device).train()
    if task.compile_enabled:
        net.compile()  # in place, as Task.configure_model does
    optimizer = scale_learning_rates(task.make_optimizer(param_groups(net)))  # the config's optimizer and groups, as in Task
    schedule = task.make_schedule(optimizer, trainer.max_steps) if task.make_schedule else None
    precision = str(trainer.precision)
    if precision not in ("32-true", "bf16-mixed"):
        raise ValueError(f"plain loop: precision {precision} is not reproduced here")
    autocast = torch.autocast(device.type, torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    batches = forever(data.train_dataloader())
    params = [p for group in optimizer.param_groups for p in group["params"]]  # in the optimizer's order, as Lightning clips: the norm's sum is order-sensitive

    def step() -> int:
        batch = next(batches)
        inputs, targets = batch.input_ids.to(device, non_blocking=True), batch.targets.to(device, non_blocking=True)
        with autocast:
            logits = net(inputs)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, trainer.gradient_clip_val)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        optimizer.zero_grad(set_to_none=True)
        return batch.tokens

    # what MFU needs: the network's FLOPs per token at this context, and the device's peak at this precision
    step.net, step.device, step.seq_len = net, device, data.block_size
    step.dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
    step.window = trainer.log_every_n_steps  # SpeedMonitor's window, so both sides are timed alike
    return step


def forever(loader):
    """Batches epoch after epoch, as the trainer draws them."""
    while True:
        yield from loader


def plain_loop(config: str, overrides: list[str], warmup: int, steps: int) -> dict:
    """The plain loop's tokens/s in windows of ``log_every_n_steps`` steps over steps warmup+1 ..
    warmup+steps, as SpeedMonitor measures the fit; MFU where the device's peak is known; peak RSS."""
    torch.set_float32_matmul_precision("high")  # as `python -m platform` sets them
    keep_freed_memory()
    quiet()
    cli = build(config, overrides)
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")
    step = plain_step(cli.model.net, cli.model, cli.trainer, cli.datamodule)
    sync = torch.cuda.synchronize if step.device.type == "cuda" else lambda: None
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(steps // step.window):
        sync()
        start, tokens = time.perf_counter(), 0
        for _ in range(step.window):
            tokens += step()
        sync()
        rates.append(tokens / (time.perf_counter() - start))
    result = {"rates": rates}
    peak = get_available_flops(step.device, step.dtype)  # None on CPUs
    if peak and hasattr(step.net, "flops_per_token"):
        result["mfu"] = step.net.flops_per_token(step.seq_len) * max(rates) / peak
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def fresh(function, *args):
    """``function(*args)`` in a new Python process, as the fit runs in one: on a CPU the step time
    depends on the process's allocation history, so both sides start afresh."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def quiet() -> None:
    """Silence the CLI's start-up chatter and known deprecation warnings in the plain loop's process."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(set_vital|LeafSpec).*")


# -- sections ----------------------------------------------------------------------------------------
def compare(config: str, overrides: list[str], args, workdir: str, label: str) -> dict:
    """``args.repeats`` fits, each interleaving its windows with the plain loop's (InterleavedPlainLoop).
    The ratio is the median over pairs of adjacent windows of fit/plain. Beside it, each side's fastest
    window: others' work on a shared machine only ever slows a window down (on 2 cores, one busy
    neighbour makes our 2 threads several times slower), so the fastest are the least disturbed."""
    max_steps = args.warmup + args.steps
    overrides = [*overrides, "--trainer.max_steps", str(max_steps)]
    fits, fit_rates, plain_rates, mfu = [], [], [], None
    for i in range(args.repeats):
        windows = os.path.join(workdir, f"{label}-{i}.json")
        interleave = {"class_path": "scripts.benchmark.InterleavedPlainLoop", "init_args": {"path": windows, "warmup": args.warmup}}
        fit = run_fit(config, overrides, max_steps, workdir, f"{label}-{i}", callbacks=(interleave,))
        if fit["rc"] != 0:
            return {"error": fit["error"], "log": fit["log"]}
        fit.update(json.load(open(windows)))
        fits.append(fit)
        fit_rates, plain_rates, mfu = fit_rates + fit["fit"], plain_rates + fit["plain"], fit["mfu_per_token_per_sec"]
        print(
            f"  {label} {i + 1}/{args.repeats}, tokens/s (best/median window): fit {summary(fit['fit'])}, plain {summary(fit['plain'])}",
            flush=True,
        )
    paired = [f / p for f, p in zip(fit_rates, plain_rates)]
    return {
        "ratio": statistics.median(paired),
        "paired_ratios": paired,
        "fit_tokens_per_sec": max(fit_rates),
        "plain_tokens_per_sec": max(plain_rates),
        "fastest_ratio": max(fit_rates) / max(plain_rates),
        "fit_median": statistics.median(fit_rates),
        "plain_median": statistics.median(plain_rates),
        "windows_per_side": len(fit_rates),
        "fit_mfu": mfu * max(fit_rates) if mfu else None,
        "plain_mfu": mfu * max(plain_rates) if mfu else None,
        "time_to_first_step_s": [w["time_to_first_step"] for f in fits for w in f["windows"][:1] if "time_to_first_step" in w],
        "runs": [{k: f.get(k) for k in ("fit", "plain", "peak_rss_mb", "cuda_max_allocated_mb", "wall_s")} for f in fits],
    }


def summary(rates: list[float]) -> str:
    return f"{max(rates):,.0f}/{statistics.median(rates):,.0f}"


def section_fit(args, workdir: str, compile: bool) -> dict:
    """(1) and (2): gpt_small through the platform and through the plain loop."""
    overrides = [*args.tiny, "--model.init_args.compile", "true"] if compile else list(args.tiny)
    return compare(SMALL, overrides, args, workdir, "compile" if compile else "eager")


def section_data(args, results: dict) -> dict:
    """(3): tokenizer MB/s over the BBC corpus; the train loader's tokens/s against training's."""
    files, fmt = resolve_files("bbc_news")
    docs = [d for d in read_documents(files, fmt) if d.strip()][: 200 if args.quick else None]
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    data = build(SMALL, args.tiny).datamodule
    data.prepare_data()  # trains gpt_small's BPE once (cached in .cache/tokens)
    data.setup("fit")
    out = {"corpus_mb": megabytes, "documents": len(docs), "cores": os.cpu_count()}
    for name, tokenizer in (("bpe_small", data.tokenizer), ("gpt2", load_tokenizer("gpt2"))):
        seconds = []
        for _ in range(3):  # best of 3: the least disturbed by other work on the machine
            start = time.perf_counter()
            tokenizer.encode_batch(docs)
            seconds.append(time.perf_counter() - start)
        out[f"{name}_mb_per_sec"] = megabytes / min(seconds)

    batches, loader, rates = 50 if args.quick else 200, forever(data.train_dataloader()), []
    next(loader)  # the first batch draws the epoch's permutation
    for _ in range(3):  # best of 3, as above
        start, tokens = time.perf_counter(), 0
        for _ in range(batches):
            tokens += next(loader).tokens  # counted as SpeedMonitor counts
        rates.append(tokens / (time.perf_counter() - start))
    out.update(loader_tokens_per_sec=max(rates), loader_batches_per_sec=max(rates) / tokens * batches)
    # what training consumes: the fit measured in this invocation, else a short plain loop
    training = (results.get("fit") or {}).get("fit_tokens_per_sec")
    out["training_source"] = "the fit of section fit" if training else "a 10-step plain loop"
    if not training:
        training = max(fresh(plain_loop, SMALL, [*args.tiny, "--trainer.max_steps", "13"], 3, 10)["rates"])
    out.update(training_tokens_per_sec=training, loader_over_training=out["loader_tokens_per_sec"] / training)
    return out


TOKENIZE_MB = (5, 50, 500)  # --quick: 1 and 5


def repeated_bbc(megabytes: float, path: str) -> str:
    """BBC News repeated to ``megabytes`` of JSONL, each copy's articles headed by its number, so that no copy
    is a copy (the split would leave copies of held-out articles out of train)."""
    files, fmt = resolve_files("bbc_news")
    docs = [d for d in read_documents(files, fmt) if d.strip()]
    written, copy = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < megabytes * 1e6:
            for doc in docs:
                written += f.write(json.dumps({"text": f"Copy {copy}. {doc}"}) + "\n")
                if written >= megabytes * 1e6:
                    break
            copy += 1
    return path


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (the peak so far) of this process, MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def build_cache(corpus: str, cache_dir: str) -> dict:
    """One token cache built from nothing, in this (fresh) process: gpt_small's data settings on ``corpus``."""
    from datamodules import TextDataModule

    data = TextDataModule(corpus=corpus, tokenizer="bpe", bpe_vocab_size=4096, block_size=128, val_fraction=0.1, test_fraction=0.1, cache_dir=cache_dir)
    baseline = _rss_mb("VmRSS")  # torch, lightning and the tokenizers imported: what any run holds anyway
    start = time.perf_counter()
    data.prepare_data()
    seconds = time.perf_counter() - start
    with open(os.path.join(data.cache_path, "meta.json")) as f:
        meta = json.load(f)
    size = sum(os.path.getsize(f) for f in data.files) / 1e6
    tokens = meta["train_tokens"] + meta["val_tokens"]
    peak = _rss_mb("VmHWM")
    return {"corpus_mb": size, "seconds": seconds, "mb_per_sec": size / seconds, "tokens": tokens, "tokens_per_sec": tokens / seconds,
            "baseline_rss_mb": baseline, "peak_rss_mb": peak, "above_baseline_mb": peak - baseline,
            "bpe_trained_on": meta.get("bpe_trained_on"), "train_sha256": meta["files"]["train.bin"]["sha256"]}  # fmt: skip


def section_tokenize(args, workdir: str) -> dict:
    """(4): token caches built from nothing, each in a fresh process: BBC News as it ships, then repeated."""
    out = {"bbc_news": fresh(build_cache, "bbc_news", os.path.join(workdir, "tokens-bbc"))}
    print(f"   bbc_news: {out['bbc_news']['seconds']:.1f} s", flush=True)
    for megabytes in (1, 5) if args.quick else TOKENIZE_MB:
        corpus = repeated_bbc(megabytes, os.path.join(workdir, f"bbc-{megabytes}mb.jsonl"))
        out[f"{megabytes}mb"] = fresh(build_cache, corpus, os.path.join(workdir, f"tokens-{megabytes}mb"))
        os.remove(corpus)
        shutil.rmtree(os.path.join(workdir, f"tokens-{megabytes}mb"))
        print(f"   {megabytes} MB: {out[f'{megabytes}mb']['seconds']:.1f} s, {out[f'{megabytes}mb']['above_baseline_mb']:.0f} MB above baseline", flush=True)
    return out


def section_memory(args, workdir: str) -> dict:
    """(5): peak memory of a gpt_small fit, and of the same with activation checkpointing."""
    steps = 10 if args.quick else 30  # the optimizer state exists after the first step: memory plateaus early
    out = {"steps": steps}
    flag = ["--model.init_args.net.init_args.activation_checkpointing", "true"]
    for key, extra in (("baseline", []), ("activation_checkpointing", flag)):
        fit = run_fit(SMALL, [*args.tiny, *extra], steps, workdir, f"memory-{key}")
        if fit["rc"] != 0:  # the option does not exist (yet), or the run failed: say why, in one line
            out[key] = {"error": fit["error"]}
            continue
        out[key] = {k: fit.get(k) for k in ("peak_rss_mb", "cuda_max_allocated_mb")}
        out[key]["tokens_per_sec"] = max(measured(fit["windows"], 10 if steps > 10 else 0, steps), default=None)
    return out


GENERATE_TOKENS, GENERATE_CONTEXTS = 256, (512, 128)  # 512: an 8-token prompt and 256 new tokens fit; 128: gpt_small's own


def time_generation(net, prompt: torch.Tensor, use_cache: bool) -> tuple[torch.Tensor, float]:
    sync = torch.cuda.synchronize if prompt.device.type == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    out = net.generate(prompt, GENERATE_TOKENS, temperature=0.0, use_cache=use_cache)
    sync()
    return out, time.perf_counter() - start


def section_generate(args) -> dict:
    """(7): gpt_small's network (its config's net, vocabulary 4,096; freshly initialized weights) generating 256 new
    tokens greedily from an 8-token prompt, with the KV cache and without (every token re-runs the whole context,
    as GPT.generate did before the cache); the tokens must be identical. At context 512 prompt and tokens fit; at
    gpt_small's own 128 the context is full after 120 new tokens, then slides, and from there both re-run it whole.
    Each side's best of 3 runs, alternating (the least disturbed by other work on the machine)."""
    from tasks.nets import GPT

    with open(SMALL) as f:
        net_args = yaml.safe_load(f)["model"]["init_args"]["net"]["init_args"]
    if args.quick:
        net_args = {**net_args, "n_layer": 1, "n_head": 2, "n_embd": 64}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = {"device": str(device), "new_tokens": GENERATE_TOKENS, "net": net_args}
    for context in GENERATE_CONTEXTS:
        torch.manual_seed(0)
        net = GPT(vocab_size=4096, block_size=context, **net_args).to(device).eval()
        prompt = torch.randint(0, 4096, (1, 8), device=device)
        net.generate(prompt, 8, temperature=0.0)  # warm-up: the first calls allocate
        seconds = {"cached": [], "uncached": []}
        for _ in range(3):
            reference, elapsed = time_generation(net, prompt, use_cache=False)
            seconds["uncached"].append(elapsed)
            tokens, elapsed = time_generation(net, prompt, use_cache=True)
            seconds["cached"].append(elapsed)
            assert torch.equal(tokens, reference), f"context {context}: the KV cache changed the greedy tokens"
        cached, uncached = GENERATE_TOKENS / min(seconds["cached"]), GENERATE_TOKENS / min(seconds["uncached"])
        out[f"context_{context}"] = {"block_size": context, "prompt_tokens": prompt.size(1), "same_tokens": True, "cached_tokens_per_sec": cached,
                                     "uncached_tokens_per_sec": uncached, "ratio": cached / uncached}  # fmt: skip
        print(f"   context {context}: {cached:,.0f} tokens/s cached, {uncached:,.0f} uncached, x{cached / uncached:.2f}; same tokens", flush=True)
    return out


def section_gpu(args, workdir: str) -> dict:
    """(6): gpt2_124m as configured (bf16-mixed, compiled, SDPA's flash kernel) on the GPU: fit vs plain."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    # a GPU step is ~50x shorter than a CPU one: more steps, and a longer warm-up for compilation
    gpu_args = argparse.Namespace(**{**vars(args), "steps": args.steps * 5, "warmup": max(args.warmup, 50)})
    return compare(GPT2, list(args.tiny), gpu_args, workdir, "gpt2")


# -- report ------------------------------------------------------------------------------------------
def hardware() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "unknown CPU")
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def table(results: dict) -> list[list[str]]:
    """Rows of: benchmark | platform | reference | ratio | target | notes."""
    pairs = (("fit", "gpt_small, eager"), ("compile", "gpt_small, torch.compile"))
    rows = [pair_row(what, results[key]) for key, what in pairs if key in results]
    eager, compiled = results.get("fit", {}), results.get("compile", {})
    if "ratio" in eager and "ratio" in compiled:
        a, b = compiled["fit_tokens_per_sec"], eager["fit_tokens_per_sec"]
        rows.append(["gpt_small: compiled vs eager fit, tokens/s", f"{a:,.0f}", f"{b:,.0f}", f"{a / b:.3f}", "", ""])

    d = results.get("data")
    if d:
        corpus = f"{d['documents']:,} BBC articles, {d['corpus_mb']:.1f} MB, encode_batch (Rust) on {d['cores']} cores"
        rows.append(["tokenizer: gpt_small's BPE-4096, MB/s", f"{d['bpe_small_mb_per_sec']:.2f}", "", "", "", corpus])
        rows.append(["tokenizer: GPT-2's BPE, MB/s", f"{d['gpt2_mb_per_sec']:.2f}", "", "", "", corpus])
        rows.append(["train DataLoader alone vs training, tokens/s", f"{d['loader_tokens_per_sec']:,.0f}", f"{d['training_tokens_per_sec']:,.0f}",
                     f"{d['loader_over_training']:,.0f}", "> 1", f"{d['loader_batches_per_sec']:,.0f} batches/s; training: {d['training_source']}"])  # fmt: skip

    t = results.get("tokenize")
    for name, r in (t or {}).items():
        what = "BBC News as it ships" if name == "bbc_news" else f"BBC News repeated to {name.removesuffix('mb')} MB of JSONL"
        rows.append([f"token cache of {what}: MB/s; peak RSS above baseline, MB", f"{r['mb_per_sec']:.2f}", f"{r['above_baseline_mb']:,.0f}", "", "",
                     f"{r['corpus_mb']:,.1f} MB in {r['seconds']:.1f} s, {r['tokens_per_sec']:,.0f} tokens/s; baseline {r['baseline_rss_mb']:,.0f} MB; "
                     f"BPE on {r['bpe_trained_on']}"])  # fmt: skip

    m = results.get("memory")
    if m:
        cuda = torch.cuda.is_available()
        key, unit = ("cuda_max_allocated_mb", "peak CUDA memory allocated") if cuda else ("peak_rss_mb", "peak RSS")
        base = m["baseline"].get(key)
        for name, what in (("baseline", "gpt_small fit"), ("activation_checkpointing", "gpt_small fit, activation checkpointing")):  # fmt: skip
            r = m[name]
            if "error" in r:
                rows.append([f"{what}: {unit}, MB", "n/a", "", "", "", f"flag rejected or run failed: {r['error']}"])
                continue
            speed = f"{r['tokens_per_sec']:,.0f} tokens/s" if r.get("tokens_per_sec") else "tokens/s n/a"
            against = [f"{base:,.0f}", f"{r[key] / base:.3f}"] if name != "baseline" and base else ["", ""]
            rows.append([f"{what}: {unit}, MB", f"{r[key]:,.0f}", *against, "", f"{m['steps']}-step fit; {speed}"])
    if "gpu" in results:
        rows.append(pair_row("gpt2_124m bf16, compiled, GPU", results["gpu"]))
    g = results.get("generate")
    for context in GENERATE_CONTEXTS if g else ():
        r = g[f"context_{context}"]
        slides = "" if r["prompt_tokens"] + g["new_tokens"] <= context else f"; the context is full after {context - r['prompt_tokens']} new tokens, then slides"
        rows.append([f"generate: gpt_small's net, context {context}, {g['new_tokens']} new tokens greedy: KV cache vs full recompute, tokens/s",
                     f"{r['cached_tokens_per_sec']:,.0f}", f"{r['uncached_tokens_per_sec']:,.0f}", f"{r['ratio']:.2f}", "",
                     f"same tokens (asserted); {r['prompt_tokens']}-token prompt, batch 1, fp32 on {g['device']}, best of 3{slides}"])  # fmt: skip
    return rows


def pair_row(what: str, r: dict) -> list[str]:
    """A fit-vs-plain comparison as a table row."""
    what = f"{what}: fit vs plain loop, tokens/s"
    if "skipped" in r or "error" in r:
        return [what, "n/a", "", "", "", r.get("skipped") or r["error"]]
    paired = r["paired_ratios"]
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    note = f"median of {len(paired)} paired windows (quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}); fastest windows {r['fastest_ratio']:.3f}"
    note += f"; medians {r['fit_median']:,.0f} vs {r['plain_median']:,.0f}"
    note += f"; time to first step {', '.join(f'{x:.1f}' for x in r['time_to_first_step_s'])} s"
    if r["fit_mfu"]:
        note += f"; MFU fit {r['fit_mfu']:.3f}, plain {r['plain_mfu'] or 0:.3f}"
    verdict = f">= {TARGET} {'PASS' if r['ratio'] >= TARGET else 'FAIL'}"
    return [what, f"{r['fit_tokens_per_sec']:,.0f}", f"{r['plain_tokens_per_sec']:,.0f}", f"{r['ratio']:.3f}", verdict, note]


def markdown(rows: list[list[str]], meta: dict, args) -> str:
    lines = ["| benchmark | platform | reference | ratio | target | notes |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    gpu = meta["gpu"] or "no GPU"
    lines += [
        "",
        f"Fit vs plain: `python -m platform fit` (progress bar in a terminal, checkpointing, validation; CSV logger instead of W&B) against a "
        "plain loop of the same training, run in the fit's own process on a copy of the network: after the warm-up, each 10-step window "
        f"of the fit is followed by 10 plain steps. Steps {args.warmup + 1}-{args.warmup + args.steps} of {args.repeats} runs; the ratio is "
        "the median of fit/plain over adjacent pairs of windows; the platform and reference columns are each side's fastest window. "
        "Excluded from the windows: start-up, sanity check, warm-up (and compilation), validation and checkpoints (every 200 steps, so "
        "none inside; the final ones after it). fp32 on a CPU; on a GPU the CLI's default (bf16-mixed). Peak RSS: the whole fit process.",
        f"{meta['cpu']}, {meta['cpu_count']} cores (torch threads {meta['torch_threads']}), {gpu}; torch {meta['torch']}, "
        f"lightning {meta['lightning']}, Python {meta['python']}; {meta['date']}; load average {meta['load_before'][0]:.2f} before, "
        f"{meta['load_after'][0]:.2f} after; `python scripts/benchmark.py {' '.join(meta['argv'])}`.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="measured training steps per run (a multiple of log_every_n_steps, 10)")
    parser.add_argument("--warmup", type=int, default=20, help="steps run before the measured window (compilation happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating fit/plain runs per comparison")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 1-layer GPT, 10+10 steps, one run per side")
    parser.add_argument("--out", default="runs/benchmark/benchmark.json", help="JSON figures; the markdown table goes beside it (.md)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.repeats = 10, 10, 1
    if args.steps % 10 or args.warmup % 10:
        parser.error("--steps and --warmup must be multiples of 10: SpeedMonitor logs a window every 10 steps")
    args.tiny = TINY if args.quick else []
    os.chdir(ROOT)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(ROOT, ".cache", "inductor"))  # the plain loop's cache too
    os.environ["WANDB_MODE"] = "disabled"
    quiet()

    meta = {**hardware(), "load_before": os.getloadavg(), "argv": sys.argv[1:]}
    print(f"{meta['cpu']}, {meta['cpu_count']} cores, torch {meta['torch']}, load average {meta['load_before'][0]:.2f}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:  # the runs' checkpoints and logs
        for section in [s for s in SECTIONS if s in args.only]:
            print(f"== {section}", flush=True)
            start = time.perf_counter()
            if section in ("fit", "compile"):
                results[section] = section_fit(args, workdir, compile=section == "compile")
            elif section == "data":
                results[section] = section_data(args, results)
            elif section == "tokenize":
                results[section] = section_tokenize(args, workdir)
            elif section == "memory":
                results[section] = section_memory(args, workdir)
            elif section == "generate":
                results[section] = section_generate(args)
            else:
                results[section] = section_gpu(args, workdir)
            print(f"   {time.perf_counter() - start:.0f} s", flush=True)
    meta["load_after"] = os.getloadavg()

    rows = table(results)
    text = markdown(rows, meta, args)
    print("\n" + text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "settings": vars(args), "results": results, "table": rows}, f, indent=1)
    markdown_path = os.path.splitext(args.out)[0] + ".md"
    with open(markdown_path, "w") as f:
        f.write(text + "\n")
    print(f"\nFigures: {args.out}; table: {markdown_path}")


if __name__ == "__main__":
    main()
