"""Which pieces of the newer GPT recipe pay at gpt_small's scale: an ablation any user can rerun.

    python scripts/ablation.py                    # the ablation: every arm, LR sweep, 3 seeds (about 70 min on 2 cores)
    python scripts/ablation.py --final            # gpt_small_2019.yaml against gpt_small.yaml at their full budget, 3 seeds
    python scripts/ablation.py --quick            # a smoke run of both: a tiny GPT, few steps

Every arm is ``configs/gpt_small_2019.yaml`` (4 x 192, context 128, BBC News, BPE-4096, AdamW with
warmup and cosine) plus one change, and one arm has all of them. Each arm trains for the same number
of steps of the same batches (the same token budget), at three learning rates (the arm's own, half
and double it: every rate of the arm is scaled, Muon's and AdamW's alike) on seed 0; the best rate is
then run on two more seeds. Training is the plain loop of scripts/benchmark.py, on the network,
optimizer, schedule and data the CLI builds from the config (it trains bit for bit as the fit does);
every ``--eval_every`` steps the loss on the first 20 validation batches (gpt_small's
``limit_val_batches``) is taken, off the clock. Each run is a fresh process, so that no run inherits
another's allocations.

Writes ``--out``: ``ablation.json`` (or ``final.json``: every run's curve), ``.md`` (the table) and
``_loss_vs_time.png``.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.labels import IGNORE  # noqa: E402
from scripts.benchmark import build, plain_step, quiet  # noqa: E402

OLD, NEW = "configs/gpt_small_2019.yaml", "configs/gpt_small.yaml"
NET, OPT = "--model.init_args.net.init_args.", "--model.init_args."
ADAMW = {"lr": 2.0e-3, "weight_decay": 0.1, "betas": [0.9, 0.95]}  # gpt_small_2019's
MUON = {"lr": 0.02, "momentum": 0.95}  # Keller Jordan's rate, with torch's default shape scaling


def optimizer(scale: float, muon: bool) -> list[str]:
    """The optimizer override at ``scale`` times the arm's rates: AdamW alone, or Muon on the hidden matrices."""
    adamw = {"class_path": "torch.optim.AdamW", "init_args": {**ADAMW, "lr": ADAMW["lr"] * scale}}
    if not muon:
        return [OPT + "optimizer", json.dumps(adamw)]
    muon_ = {"class_path": "torch.optim.Muon", "init_args": {**MUON, "lr": MUON["lr"] * scale}}
    return [OPT + "optimizer", json.dumps({"class_path": "tasks.optim.Split", "init_args": {"matrices": muon_, "rest": adamw}})]


WSD = [
    OPT + "schedule",
    json.dumps({"class_path": "tasks.optim.WarmupStableDecay", "init_args": {"warmup_steps": 50, "decay_fraction": 0.3}}),
]
# each change on its own: (overrides of the network and schedule, Muon or not)
CHANGES = {
    "muon": ([], True),
    "rotary": ([NET + "positions", "rotary"], False),
    "qk_norm": ([NET + "qk_norm", "true"], False),
    "relu2": ([NET + "activation", "relu2"], False),
    "untied_zero_head+softcap": ([NET + "tie_embeddings", "false", NET + "logit_softcap", "30"], False),
    "rmsnorm": ([NET + "norm", "rmsnorm"], False),
    "wsd": (WSD, False),
    "no_dropout": ([NET + "dropout", "0.0"], False),
}
ARMS = {"2019": ([], False), **CHANGES, "all": ([a for overrides, _ in CHANGES.values() for a in overrides], True)}


def train(config: str, overrides: list[str], steps: int, eval_every: int, eval_batches: int) -> dict:
    """One run in this process: the curve of (step, training seconds, val loss) and the final loss."""
    torch.set_float32_matmul_precision("high")
    quiet()
    cli = build(config, [*overrides, "--trainer.max_steps", str(steps)])
    data = cli.datamodule
    data.prepare_data()
    data.setup("fit")
    step = plain_step(cli.model.net, cli.model, cli.trainer, data)
    val = [batch for _, batch in zip(range(eval_batches), data.val_dataloader())]

    @torch.no_grad()
    def val_loss() -> float:
        step.net.eval()
        total = count = 0
        for batch in val:
            logits = step.net(batch.input_ids)
            total += F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten(), ignore_index=IGNORE, reduction="sum").item()
            count += int((batch.targets != IGNORE).sum())
        step.net.train()
        return total / count

    curve, seconds = [(0, 0.0, val_loss())], 0.0
    for i in range(1, steps + 1):
        start = time.perf_counter()
        step()
        seconds += time.perf_counter() - start
        if i % eval_every == 0 or i == steps:
            curve.append((i, seconds, val_loss()))
    return {"curve": curve, "val_loss": curve[-1][2], "train_s": seconds}


def train_in(threads: int, *args) -> dict:
    torch.set_num_threads(threads)
    return train(*args)


class Runs:
    """Runs in fresh processes, ``workers`` at a time with the cores shared out among them (on 2 cores,
    two 1-thread runs side by side train 1.3x as many tokens per second as one 2-thread run)."""

    def __init__(self, args):
        self.args, self.threads = args, max(1, (os.cpu_count() or 1) // args.workers)
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(args.workers, mp_context=context, max_tasks_per_child=1)  # each run a process of its own

    def __call__(self, jobs: list[tuple[str, str, list[str]]]) -> list[dict]:
        """``(label, config, overrides)`` each; their results in order, printed as they end."""
        a = self.args
        futures = [
            self.pool.submit(train_in, self.threads, config, overrides, a.steps, a.eval_every, a.eval_batches)
            for _, config, overrides in jobs
        ]
        results = []
        for (label, _, _), future in zip(jobs, futures):
            results.append(future.result())
            print(f"  {label}: val/loss {results[-1]['val_loss']:.4f} in {results[-1]['train_s']:.0f} s", flush=True)
        return results


def ablation(args, extra: list[str], runs: Runs) -> dict:
    """Every arm: the sweep on the first seed, then the best rate on the others."""
    arms = {name: arm for name, arm in ARMS.items() if not args.arms or name in args.arms}
    first, others = args.seeds[0], args.seeds[1:]

    def job(name: str, scale: float, seed: int) -> tuple[str, str, list[str]]:
        overrides, muon = arms[name]
        return f"{name} lr x{scale} seed {seed}", OLD, [*extra, *overrides, *optimizer(scale, muon), "--seed_everything", str(seed)]

    swept = iter(runs([job(name, scale, first) for name in arms for scale in args.scales]))
    sweeps = {name: {scale: next(swept) for scale in args.scales} for name in arms}
    best = {name: min(sweep, key=lambda s: sweep[s]["val_loss"]) for name, sweep in sweeps.items()}
    seeded = iter(runs([job(name, best[name], seed) for name in arms for seed in others]))
    return {
        name: {
            "sweep": {str(s): r["val_loss"] for s, r in sweep.items()},
            "best_scale": best[name],
            "seeds": [sweep[best[name]], *(next(seeded) for _ in others)],
        }
        for name, sweep in sweeps.items()
    }


def final(args, extra: list[str], runs: Runs) -> dict:
    """gpt_small_2019.yaml against gpt_small.yaml, each as its config says, on the same seeds, side by side."""
    jobs = [(f"{config} seed {seed}", config, [*extra, "--seed_everything", str(seed)]) for seed in args.seeds for config in (OLD, NEW)]
    done = runs(jobs)
    return {config: {"seeds": [r for (_, c, _), r in zip(jobs, done) if c == config]} for config in (OLD, NEW)}


def mean_sd(values: list[float], digits: int = 3) -> str:
    mean = f"{statistics.mean(values):.{digits}f}"
    return f"{mean} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else mean


def time_to(curve: list, target: float) -> float | None:
    """Training seconds at which the val loss first reaches ``target``, interpolated between evaluations."""
    for (_, t0, l0), (_, t1, l1) in zip(curve, curve[1:]):
        if l1 <= target:
            return t0 + (t1 - t0) * (l0 - target) / (l0 - l1) if l0 > target else t0
    return None


def loss_at(curve: list, seconds: float) -> float:
    """The val loss at ``seconds`` of training, interpolated between evaluations (the last one past the end)."""
    for (_, t0, l0), (_, t1, l1) in zip(curve, curve[1:]):
        if t1 >= seconds:
            return l0 + (l1 - l0) * (seconds - t0) / (t1 - t0)
    return curve[-1][2]


def table(results: dict, mode: str) -> str:
    if mode == "ablation":
        base = statistics.mean(r["val_loss"] for r in results["2019"]["seeds"]) if "2019" in results else None
        scales = " / ".join(f"x{float(s):g}" for s in next(iter(results.values()))["sweep"])
        seeds = len(next(iter(results.values()))["seeds"])
        lines = [
            f"| arm | LR sweep ({scales}, first seed) | best | val/loss, {seeds} seed{'s' * (seeds > 1)} | vs 2019 | training s |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in results.items():
            losses = [s["val_loss"] for s in r["seeds"]]
            delta = f"{statistics.mean(losses) - base:+.3f}" if base is not None else ""
            sweep = " / ".join(f"{v:.3f}" for v in r["sweep"].values())
            lines.append(
                f"| {name} | {sweep} | x{r['best_scale']} | {mean_sd(losses)} | {delta} | {mean_sd([s['train_s'] for s in r['seeds']], 0)} |"
            )
        return "\n".join(lines)
    old, new = results[OLD]["seeds"], results[NEW]["seeds"]
    target = statistics.mean(r["val_loss"] for r in old)
    budget = statistics.mean(r["train_s"] for r in old)
    reach = [time_to(r["curve"], target) for r in new]
    lines = [
        "| config | val/loss at the end, 3 seeds | training s | s to reach the 2019 recipe's final loss | val/loss at the 2019 recipe's time |",
        "|---|---|---|---|---|",
        f"| {OLD} | {mean_sd([r['val_loss'] for r in old])} | {mean_sd([r['train_s'] for r in old], 0)} | {budget:.0f} | {target:.3f} |",
        f"| {NEW} | {mean_sd([r['val_loss'] for r in new])} | {mean_sd([r['train_s'] for r in new], 0)} | "
        f"{mean_sd(reach, 0) if None not in reach else 'not reached'} | {mean_sd([loss_at(r['curve'], budget) for r in new])} |",
    ]
    if None not in reach:
        lines.append(
            f"\ntime to the 2019 recipe's final val/loss ({target:.3f}): {statistics.mean(reach) / budget:.2f} of its {budget:.0f} s"
        )
    lines.append(
        f"val/loss at the 2019 recipe's {budget:.0f} s: {statistics.mean(loss_at(r['curve'], budget) for r in new) - target:+.3f} nats"
    )
    return "\n".join(lines)


def plot(results: dict, mode: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    runs = {name: r["seeds"] for name, r in results.items()}
    for i, (name, seeds) in enumerate(runs.items()):
        color = f"C{i % 10}"
        for j, r in enumerate(seeds):
            _, t, loss = zip(*r["curve"][1:])
            ax.plot(
                t,
                loss,
                color=color,
                alpha=0.9 if j == 0 else 0.35,
                lw=2 if name in ("2019", "all", OLD, NEW) else 1,
                label=name if j == 0 else None,
            )
    ax.set(
        xlabel="training seconds (2-core CPU)",
        ylabel="val/loss (nats/token)",
        title=f"gpt_small recipe {mode}: val/loss against time, each seed a line",
    )
    losses = [p[2] for seeds in runs.values() for r in seeds for p in r["curve"][1:]]
    ax.set_ylim(min(losses) - 0.05, min(max(losses), min(losses) + 2.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--final", action="store_true", help="gpt_small_2019.yaml against gpt_small.yaml at their full budget")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a tiny GPT, 20 steps, one seed")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: 200 for the ablation, as README reports it, the configs' 800 for --final)")
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--eval_batches", type=int, default=20)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="the LR sweep: multiples of each arm's rates")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), help="only these arms")
    parser.add_argument("--workers", type=int, default=2, help="runs side by side, the cores shared out among them")
    parser.add_argument("--out", default="runs/ablation")
    args = parser.parse_args()
    extra = []
    if args.quick:
        extra = [NET + "n_layer", "1", NET + "n_embd", "64", NET + "n_head", "2"]
        args.steps, args.eval_every, args.eval_batches, args.seeds, args.scales = args.steps or 20, 10, 2, args.seeds[:1], args.scales[:2]
    args.steps = args.steps or (800 if args.final else 200)
    mode = "final" if args.final else "ablation"
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    runs = Runs(args)
    results = (final if args.final else ablation)(args, extra, runs)
    with open(os.path.join(args.out, f"{mode}.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    text = table(results, mode)
    with open(os.path.join(args.out, f"{mode}.md"), "w") as f:
        f.write(text + "\n")
    plot(results, mode, os.path.join(args.out, f"{mode}_loss_vs_time.png"))
    print(text)
    print(f"wrote {args.out}/{mode}.json, .md and _loss_vs_time.png in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
