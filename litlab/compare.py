"""``python -m platform compare runs/a runs/b 'runs/gpt_small*'``: runs side by side, offline.

Reads each run's ``config.yaml`` and ``metrics.jsonl`` (written beside W&B, ``litlab.loggers.MetricsFile``) and
prints one table: the config values that differ, then each metric's final and best value, the steps, the
median tokens/s and the wall time. Saves a plot of the chosen metrics against step and against wall time.
"""

import argparse
import glob
import os
import statistics
import sys

import yaml

from litlab.loggers import read_metrics
from litlab.runs import free_path

HIGHER_IS_BETTER = ("acc", "f1", "psnr", "precision", "recall", "auc", "rouge", "per_sec", "mfu")  # in a metric's name; any other: lower


def better(metric: str):
    return max if any(word in metric.lower() for word in HIGHER_IS_BETTER) else min


def named_runs(patterns: list[str]) -> list[str]:
    """The run directories ``patterns`` name (globs expanded, in order, each once); one line for a bad one."""
    found = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise FileNotFoundError(f"compare {pattern!r}: the glob matches no run directory")
        for path in matches:
            if not os.path.isdir(path):
                raise FileNotFoundError(f"compare {path}: no such run directory")
            if not os.path.isfile(os.path.join(path, "metrics.jsonl")):
                raise FileNotFoundError(
                    f"compare {path}: no metrics.jsonl; expected the directory of a fit that had a logger (runs/<name>)"
                )
            if path not in found:
                found.append(path)
    return found


def flatten(config, prefix: str = "") -> dict:
    """``{"model.init_args.optimizer.init_args.lr": 0.002, ...}`` from a nested config."""
    if isinstance(config, dict):
        return {k: v for key, value in config.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): config}


def differing_config(runs: list[str]) -> dict[str, list]:
    configs = []
    for run in runs:
        path = os.path.join(run, "config.yaml")
        configs.append(flatten(yaml.safe_load(open(path)) or {}) if os.path.isfile(path) else {})
    keys = sorted({k for c in configs for k in c})
    rows = {k: [c.get(k, "-") for c in configs] for k in keys}
    # a key only one run's class has, left at an off value (None, False: AdamW's amsgrad...), says nothing its class_path row does not
    return {k: v for k, v in rows.items() if len({repr(x) for x in v}) > 1 and not all(x is None or x is False or x == "-" for x in v)}


def summarize(rows: list[dict], metrics: list[str]) -> dict:
    out = {"steps": max((r["step"] for r in rows), default=0), "wall_s": max((r["wall_s"] for r in rows), default=0.0)}
    speeds = [r["perf/tokens_per_sec"] for r in rows if "perf/tokens_per_sec" in r]
    out["tokens/s"] = statistics.median(speeds) if speeds else None
    for metric in metrics:
        values = [(r["step"], r[metric]) for r in rows if metric in r]
        if values:
            step, value = better(metric)(values, key=lambda sv: sv[1])
            out[metric] = (values[-1][1], value, step)
    return out


def table(runs: list[str], summaries: list[dict], metrics: list[str], config: dict[str, list]) -> str:
    names = [os.path.basename(os.path.normpath(r)) for r in runs]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(runs) + 1) + "|"]
    lines += [f"| {key} | " + " | ".join(str(v) for v in values) + " |" for key, values in config.items()]
    for metric in metrics:
        cells = []
        for s in summaries:
            final, best, step = s.get(metric, (None, None, None))
            cells.append("-" if final is None else f"{final:.4f} (best {best:.4f} at {step})")
        lines.append(f"| {metric}: final (best, {better(metric).__name__}) | " + " | ".join(cells) + " |")
    lines.append("| steps | " + " | ".join(str(s["steps"]) for s in summaries) + " |")
    lines.append("| tokens/s (median) | " + " | ".join("-" if s["tokens/s"] is None else f"{s['tokens/s']:,.0f}" for s in summaries) + " |")
    lines.append("| wall time | " + " | ".join(f"{s['wall_s']:.0f} s" for s in summaries) + " |")
    return "\n".join(lines)


def plot(runs: list[str], rows: list[list[dict]], metrics: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.2 * len(metrics)), squeeze=False)
    for i, metric in enumerate(metrics):
        for run, run_rows in zip(runs, rows):
            points = [(r["step"], r["wall_s"], r[metric]) for r in run_rows if metric in r]
            if points:
                steps, walls, values = zip(*points)
                label = os.path.basename(os.path.normpath(run))
                axes[i][0].plot(steps, values, marker="." if len(points) < 30 else None, label=label)
                axes[i][1].plot(walls, values, marker="." if len(points) < 30 else None, label=label)
        for ax, x in zip(axes[i], ("step", "wall time, s")):
            ax.set(xlabel=x, ylabel=metric)
            ax.grid(alpha=0.3)
        axes[i][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m platform compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="run directories or glob patterns (runs/gpt_small*)")
    parser.add_argument("--metrics", nargs="+", help="the metrics to tabulate and plot (default: train/loss and every val/ one)")
    parser.add_argument("--out", default="compare.png", help="the plot (a name already taken gets -2, -3...)")
    args = parser.parse_args(argv)
    runs = named_runs(args.runs)
    rows = [read_metrics(os.path.join(run, "metrics.jsonl")) for run in runs]
    logged = {k for run_rows in rows for r in run_rows for k in r}
    metrics = args.metrics or sorted(k for k in logged if k == "train/loss" or k.startswith("val/"))
    missing = [m for m in metrics if m not in logged]
    if missing:
        raise ValueError(
            f"compare --metrics {' '.join(missing)}: not logged by any of the runs; they logged {', '.join(sorted(logged - {'step', 'wall_s'}))}"
        )
    print(table(runs, [summarize(r, metrics) for r in rows], metrics, differing_config(runs)))
    path = free_path(args.out)
    plot(runs, rows, metrics, path)
    print(f"\nplot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
