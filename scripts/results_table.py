"""Regenerate README's results table: pretrain without labels, fine-tune with few, distil.

    python scripts/results_table.py                 # every row, seeds 0 1 2, about an hour and a half on 2 CPU cores
    python scripts/results_table.py --rows a --seeds 0

Each run is an ordinary ``python -m platform fit`` (run in this process, so Python and the
libraries load once); the script prints each run's command line, so any number in the table can be
reproduced alone. The seed sets the initialization, the data order and which examples are labelled
(``split_seed``), so the spread covers the choice of the few labels too; rows that fine-tune a model
pretrained on the same data (a, e, f, g) keep ``split_seed`` 0 and vary ``labels_seed``, so that the
held-out examples are always those pretraining left out. Pretraining runs once and is reused if its checkpoint
exists; a variant that two rows share runs once. The table is written between the results markers in README.md and
the figures to ``<runs>/results.json``.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the tests' helpers and configs

from litlab.cli import PlatformCLI  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"


def fit(runs: str, config: str, name: str, *overrides: str) -> dict:
    """One run of ``python -m platform fit``; returns its final metrics and wall time."""
    args = ["fit", "--config", f"configs/{config}.yaml", "--run.dir", runs, "--run.name", name, "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *overrides]  # fmt: skip
    print("$ python -m platform " + " ".join(a if re.fullmatch(r"[\w./:=-]+", a) else repr(a) for a in args), flush=True)
    start = time.perf_counter()
    cli = PlatformCLI(args=args)
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    metrics["seconds"] = time.perf_counter() - start
    metrics["checkpoint"] = os.path.join(cli.run_dir, "checkpoints", "last.ckpt")
    metrics["parameters"] = sum(p.numel() for n, p in cli.model.named_parameters() if not n.startswith("teacher."))
    return metrics


def pretrained(runs: str, config: str, *overrides: str) -> str:
    """The last checkpoint of a pretraining run, made once."""
    ckpt = os.path.join(runs, config, "checkpoints", "last.ckpt")
    if not os.path.isfile(ckpt):
        fit(runs, config, config, *overrides)
    return ckpt


def rows(runs: str, which: str, seeds: list[int]):
    """(row, what, labels, {variant: [metrics per seed]}), row by row."""
    done: dict[str, list[dict]] = {}

    def per_seed(config: str, variant: str, *overrides: str, seed_flag: str = "--data.init_args.split_seed") -> list[dict]:
        if variant not in done:
            done[variant] = [fit(runs, config, f"{variant}-s{s}", "--seed_everything", str(s), seed_flag, str(s), *overrides) for s in seeds]
        return done[variant]

    def held_out(config: str, variant: str, *overrides: str) -> list[dict]:
        """Seeds vary the labelled articles only: the held-out ones stay those that pretraining never read."""
        return per_seed(config, variant, *overrides, seed_flag="--data.init_args.labels_seed")

    # a linear probe trains the head alone, at the rate a head takes (the fine-tuning one is the whole network's)
    probe = ("--model.init_args.mode", "linear_probe", "--model.init_args.optimizer.init_args.lr", "3e-3")
    scratch = ("--model.init_args.backbone_ckpt", "null")
    if any(row in which for row in "aei"):
        gpt = pretrained(runs, "gpt_small")
        gpt_args = ("--model.init_args.backbone_ckpt", gpt, "--data.init_args.tokenizer", gpt)
    if "a" in which:
        yield "a", "GPT 4x192 (gpt_small) on BBC topics", "20/topic", {
            "pretrained on BBC text (no labels)": held_out("classify_bbc_gpt", "bbc-gpt-pretrained", *gpt_args),
            "same network from scratch": held_out("classify_bbc_gpt", "bbc-gpt-scratch", "--data.init_args.tokenizer", gpt, *scratch),
        }
    if "e" in which:
        bert = pretrained(runs, "bert_small")
        bert_args = ("--model.init_args.backbone_ckpt", bert, "--data.init_args.tokenizer", bert)
        yield "e", "GPT vs BERT pretraining, 4x192, same BBC tokens", "20/topic", {
            "GPT (gpt_small), fine-tuned": held_out("classify_bbc_gpt", "bbc-gpt-pretrained", *gpt_args),
            "GPT (gpt_small), linear probe": held_out("classify_bbc_gpt", "bbc-gpt-probe", *gpt_args, *probe),
            "BERT (bert_small, MLM), fine-tuned": held_out("classify_bbc_bert", "bbc-bert-pretrained", *bert_args),
            "BERT (bert_small, MLM), linear probe": held_out("classify_bbc_bert", "bbc-bert-probe", *bert_args, *probe),
            "same encoder from scratch, fine-tuned": held_out("classify_bbc_bert", "bbc-bert-scratch", "--data.init_args.tokenizer", bert, *scratch),
            "same encoder from scratch, linear probe": held_out("classify_bbc_bert", "bbc-bert-scratch-probe", "--data.init_args.tokenizer", bert, *scratch, *probe),
        }
    def distilled(variant: str, *overrides: str) -> list[dict]:
        """A student per seed, distilled from that seed's fine-tuned MiniLM (row b's)."""
        if variant not in done:
            teachers = per_seed("classify_bbc_minilm", "bbc-minilm")
            done[variant] = [
                fit(runs, "distill_bbc_minilm", f"{variant}-s{s}", "--seed_everything", str(s), "--data.init_args.split_seed", str(s),
                    "--model.init_args.teacher_ckpt", teacher["checkpoint"], *overrides)
                for s, teacher in zip(seeds, teachers)
            ]  # fmt: skip
        return done[variant]

    if "b" in which:
        yield "b", "MiniLM-L6 (22.6M, pretrained) on BBC topics", "20/topic", {"fine-tuned": per_seed("classify_bbc_minilm", "bbc-minilm")}
        yield "b", "MiniLM-L6 on Rotten Tomatoes sentiment", "250/class", {"fine-tuned": per_seed("classify_sentiment_minilm", "sentiment-minilm")}
    if "c" in which:
        yield "c", "(b) distilled into a 2x128 BERT (4.4M, 5x smaller)", "20/topic + unlabelled", {
            "student with the teacher": distilled("bbc-distilled"),
            "same student without it": per_seed("classify_bbc_student", "bbc-student-alone"),
        }
    if "f" in which:
        dapt = pretrained(runs, "mlm_bbc_minilm")
        yield "f", "MiniLM-L6, domain-adaptive MLM on BBC text or not", "20/topic", {
            "as shipped, fine-tuned": held_out("classify_bbc_minilm", "bbc-minilm-shipped"),
            "after 300 steps of MLM on BBC text, fine-tuned": held_out(
                "classify_bbc_minilm", "bbc-minilm-dapt", "--model.init_args.backbone", "null", "--model.init_args.backbone_ckpt", dapt),
        }  # fmt: skip
    if "g" in which:
        encoders = {"autoencoder": pretrained(runs, "autoencoder"), "VAE": pretrained(runs, "vae"), "SimCLR": pretrained(runs, "simclr"), "random": None}
        variants = {}
        for mode, how in (("linear probe", []), ("fine-tuned", ["--model.init_args.mode", "finetune"])):
            for name, ckpt in encoders.items():
                tag = f"mnist-{name.lower()}-{mode.split()[-1]}-held-out"
                variants[f"{name} encoder, {mode}"] = held_out("classify_mnist_simclr", tag, "--model.init_args.backbone_ckpt", ckpt or "null", *how)
        yield "g", "ConvEncoder on MNIST-5k: which pretraining", "10/class", variants
    if "h" in which:
        yield "h", "(c) de-confounded: the same 2x128 student, labels and unlabelled articles", "20/topic + unlabelled", {
            "soft targets (KL + labels, as c)": distilled("bbc-distilled"),
            "the teacher's hard pseudo-labels, no KL": distilled("bbc-pseudo-labelled", "--model.init_args.targets", "hard"),
            "the labels alone": per_seed("classify_bbc_student", "bbc-student-alone"),
            "the teacher (MiniLM-L6), labels alone": per_seed("classify_bbc_minilm", "bbc-minilm"),
        }
    if "i" in which:
        simcse = pretrained(runs, "simcse_gpt_small", "--model.init_args.init_ckpt", gpt, "--data.init_args.tokenizer", gpt)
        yield "i", "SimCSE downstream: GPT 4x192 encoders, linear probes", "20/topic", {
            "SimCSE from gpt_small": held_out("classify_bbc_gpt", "bbc-simcse-probe", "--model.init_args.backbone_ckpt", simcse, "--data.init_args.tokenizer", gpt, *probe),
            "gpt_small, which it started from": held_out("classify_bbc_gpt", "bbc-gpt-probe", *gpt_args, *probe),
            "random": held_out("classify_bbc_gpt", "bbc-random-probe", "--data.init_args.tokenizer", gpt, *scratch, *probe),
        }
    if "d" in which:
        simclr = pretrained(runs, "simclr")
        random_init = ["--model.init_args.backbone_ckpt", "null"]
        yield "d", "ConvEncoder on MNIST-5k, SimCLR vs random init", "10/class", {
            "SimCLR, linear probe": per_seed("classify_mnist_simclr", "mnist-simclr-probe", "--model.init_args.backbone_ckpt", simclr),
            "random, linear probe": per_seed("classify_mnist_simclr", "mnist-random-probe", *random_init),
            "SimCLR, fine-tuned": per_seed("classify_mnist_simclr", "mnist-simclr-finetune", "--model.init_args.backbone_ckpt", simclr, "--model.init_args.mode", "finetune"),
            "random, fine-tuned": per_seed("classify_mnist_simclr", "mnist-random-finetune", *random_init, "--model.init_args.mode", "finetune"),
        }


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table_line(result: dict) -> str:
    runs = result["runs"]
    acc, f1 = [r["val/acc"] for r in runs], [r["val/f1"] for r in runs]
    seconds = statistics.median(r["seconds"] for r in runs)
    return f"| {result['row']} | {result['what']} | {result['labels']} | {result['variant']} | {mean_std(acc)} | {mean_std(f1)} | {runs[0]['parameters'] / 1e6:.1f}M | {seconds:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="abcdefghi", help="which rows to run: any of a to i ('' rewrites the table from results.json)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/results", help="where the runs go")
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"), help="README to update ('' to skip)")
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("WANDB_MODE", "disabled")

    path = os.path.join(args.runs, "results.json")
    earlier = json.load(open(path)) if os.path.isfile(path) else []  # rows not run now keep their figures
    results = [r for r in earlier if r["row"] not in args.rows]
    for row, what, labels, variants in rows(args.runs, args.rows, args.seeds):
        for variant, runs in variants.items():
            results.append({"row": row, "what": what, "labels": labels, "variant": variant, "seeds": args.seeds, "date": time.strftime("%Y-%m-%d"), "runs": runs})
            print(table_line(results[-1]), flush=True)
    results.sort(key=lambda r: r["row"])
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    lines = ["| row | model and data | labels | variant | val accuracy | val macro-F1 | params | s/run (median) |", "|---|---|---|---|---|---|---|---|"]
    lines += [table_line(r) for r in results]
    seeds = sorted({tuple(r["seeds"]) for r in results})
    stamp = f"Seeds {' / '.join(', '.join(map(str, s)) for s in seeds)}; mean ± standard deviation; {max(r['date'] for r in results)}, `python scripts/results_table.py`."
    table = "\n".join([*lines, "", stamp])
    print("\n" + table)
    if args.readme:
        text = open(args.readme).read()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            text = head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1]
            open(args.readme, "w").write(text)
            print(f"Updated {args.readme}")


if __name__ == "__main__":
    main()
