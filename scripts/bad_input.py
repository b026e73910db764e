"""Bad input and stops, through the real CLI, as a new user meets them.

Each case runs ``python -m platform ...`` from the repository root in a fresh directory and is judged by
what README promises: a non-zero exit (2 for bad input, 143 for SIGTERM, 130 for SIGINT), stderr ending
in one line that names the value and what was expected (or, for a stop, where it saved), no
traceback, and nothing lost: a refused fresh run leaves no run directory, a refused resume leaves its
checkpoint byte for byte as it was. A corrupt token cache is rebuilt with one warning line and the
run trains. A stopped run resumes to the end.

    python scripts/bad_input.py            # every case, about 10 minutes on 2 CPU cores
    python scripts/bad_input.py -k resume  # the cases whose name matches "resume"
"""

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NANO = ["--config", "configs/gpt_nano.yaml", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
SHORT = [*NANO, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"]
BERT = ["--config", "configs/bert_small.yaml", "--data.init_args.corpus", "kjv", "--data.init_args.tokenizer", "bytes", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"]  # fmt: skip
DIGITS = ["--data.init_args.source", "digits", "--trainer.logger", "false", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1"]


@dataclass
class Case:
    name: str
    args: list[str]  # after `python -m platform`; {work} is the case's directory, {ckpt} the resumable checkpoint
    line: str  # what stderr's last line starts with ({work} and {ckpt} filled in)
    exit: int = 2
    files: dict = field(default_factory=dict)  # written under {work} first: bytes, or a function of the checkpoint's path
    corrupt_cache: str | None = None  # "ff", "odd", "multiple of 4": a token cache damaged before the run


def cases() -> list[Case]:
    fit = ["fit", *SHORT]
    resume = ["fit", *NANO, "--trainer.max_steps", "4", "--ckpt_path", "{ckpt}"]
    bad_yaml = {"bad.yaml": b"model: [1\n  b: 2\n"}
    return [
        # the config and the command line
        Case("malformed YAML", [*fit, "--config", "{work}/bad.yaml"], "error: --config {work}/bad.yaml: line 2, column 4: malformed YAML", files=bad_yaml),
        Case("YAML that is a list", [*fit, "--config", "{work}/list.yaml"], "error: --config {work}/list.yaml: a YAML list, expected a mapping", files={"list.yaml": b"- a\n- b\n"}),
        Case("missing config file", [*fit, "--config", "{work}/nope.yaml"], "error: --config {work}/nope.yaml: no such file"),
        Case("unknown class_path", [*fit, "--model.class_path", "tasks.Nope"], "error: --model.class_path tasks.Nope: cannot import it"),
        Case("lr fast", [*fit, "--model.init_args.optimizer.init_args.lr", "fast"], "error: --model.init_args.optimizer.init_args.lr fast: expected a float"),
        Case("lr nan", [*fit, "--model.init_args.optimizer.init_args.lr", "nan"], "error: --model.init_args.optimizer.init_args.lr nan: expected a float"),
        Case("lr -1", [*fit, "--model.init_args.optimizer.init_args.lr", "-1"], "error: model.init_args.optimizer: Invalid learning rate: -1.0: expected arguments the optimizer accepts"),
        Case("unknown option", [*fit, "--trainer.max_stepz", "3"], "error: unrecognized arguments: --trainer.max_stepz 3"),
        Case("unknown network option", [*fit, "--model.init_args.net.init_args.n_layerz", "3"], "error: --model.init_args.net.init_args.n_layerz 3: no such option"),
        Case("precision 17", [*fit, "--trainer.precision", "17"], "error: --trainer.precision 17: expected one of"),
        # sizes
        Case("n_layer 0", [*fit, "--model.init_args.net.init_args.n_layer", "0"], "error: GPT n_layer=0: expected a positive int"),
        Case("n_embd not divisible by n_head", [*fit, "--model.init_args.net.init_args.n_head", "3"], "error: GPT n_embd=32, n_head=3: expected n_embd divisible by n_head"),
        Case("dropout 1", [*fit, "--model.init_args.net.init_args.dropout", "1"], "error: GPT dropout=1.0: expected a number in [0, 1)"),
        Case("batch_size 0", [*fit, "--data.init_args.batch_size", "0"], "error: TextDataModule batch_size=0: expected a positive int"),
        Case("num_workers -1", [*fit, "--data.init_args.num_workers", "-1"], "error: TextDataModule num_workers=-1: expected an int >= 0"),
        Case("block_size too large", [*fit, "--data.init_args.block_size", "500000"], "error: data.block_size=500000 is too large for the val split"),
        Case("VAE latent_dim 0", ["fit", "--config", "configs/vae.yaml", *DIGITS, "--model.init_args.latent_dim", "0"], "error: latent_dim=0, beta=1.0: expected latent_dim > 0"),
        Case("GAN loss lsgan", ["fit", "--config", "configs/gan.yaml", *DIGITS, "--model.init_args.loss", "lsgan"], "error: loss='lsgan': expected one of"),
        # data
        Case("missing corpus", [*fit, "--data.init_args.corpus", "{work}/nope.txt"], "error: corpus path '{work}/nope.txt': file not found"),
        Case("corpus glob matching nothing", [*fit, "--data.init_args.corpus", "{work}/*.txt"], "error: corpus path '{work}/*.txt': glob matches no file"),
        Case("empty corpus", [*fit, "--data.init_args.corpus", "{work}/empty.txt"], "error: corpus", files={"empty.txt": b""}),
        Case("binary file as corpus", [*fit, "--data.init_args.corpus", "{work}/lib.txt"], "error: {work}/lib.txt: not a text file", files={"lib.txt": bytes(range(256)) * 64}),
        Case("invalid UTF-8 corpus", [*fit, "--data.init_args.corpus", "{work}/latin1.txt"], "error: {work}/latin1.txt:1: byte 0xe9 at byte offset 3 is not UTF-8", files={"latin1.txt": "caf\xe9 ".encode("latin-1") * 50}),
        Case("JSONL text 12345", [*fit, "--data.init_args.corpus", "{work}/a.jsonl"], "error: {work}/a.jsonl:1:", files={"a.jsonl": b'{"text": 12345}\n'}),
        Case("broken JSONL line", [*fit, "--data.init_args.corpus", "{work}/b.jsonl"], "error: {work}/b.jsonl:2:", files={"b.jsonl": b'{"text": "fine"}\n{"text": "broken\n'}),
        Case("unknown tokenizer", [*fit, "--data.init_args.tokenizer", "sentencepiece"], "error: tokenizer='sentencepiece': expected gpt2, bpe, bytes"),
        Case("JSONL without the text field", [*fit, "--data.init_args.corpus", "{work}/c.jsonl"], "error: {work}/c.jsonl:1: no field 'text'", files={"c.jsonl": b'{"body": "x"}\n'}),
        Case("JSONL line that is a list", [*fit, "--data.init_args.corpus", "{work}/d.jsonl"], "error: {work}/d.jsonl:1: the line is a list", files={"d.jsonl": b"[1, 2]\n"}),
        Case("JSONL of blank lines", [*fit, "--data.init_args.corpus", "{work}/e.jsonl"], "error: corpus", files={"e.jsonl": b"\n\n"}),
        Case("missing tokenizer.json", [*fit, "--data.init_args.tokenizer", "{work}/tok.json"], "error: "),
        Case("val_fraction 1.5", [*fit, "--data.init_args.val_fraction", "1.5"], "error: val_fraction=1.5: expected a number in (0, 1)"),
        Case("block_size 0", [*fit, "--data.init_args.block_size", "0"], "error: TextDataModule block_size=0: expected a positive int"),
        Case("n_head 0", [*fit, "--model.init_args.net.init_args.n_head", "0"], "error: GPT n_head=0: expected a positive int"),
        Case("top_k 0", [*fit, "--model.init_args.top_k", "0"], "error: CausalLM top_k=0: expected a positive int or None"),
        Case("seed abc", [*fit, "--seed_everything", "abc"], "error: --seed_everything abc: expected"),
        Case("peak_tflops -1", [*fit, "--run.peak_tflops", "-1"], "error: run.peak_tflops=-1.0: expected the device's peak TFLOP/s"),
        Case("masked LM with GPT-2's tokenizer", ["fit", *BERT, "--data.init_args.tokenizer", "gpt2"], "error: MaskedLM: data.tokenizer='gpt2' has no mask token"),
        Case("masked LM on a causal net", ["fit", *BERT, "--model.init_args.net.init_args.causal", "true"], "error: MaskedLM: net causal=True"),
        Case("causal LM on a bidirectional net", [*fit, "--model.init_args.net.init_args.causal", "false"], "error: CausalLM: net causal=False"),
        Case("mask_rate 0", ["fit", *BERT, "--model.init_args.mask_rate", "0"], "error: MaskedLM mask_rate=0"),
        Case("mask_rate 1.5", ["fit", *BERT, "--model.init_args.mask_rate", "1.5"], "error: MaskedLM mask_rate=1.5: expected a number in [0, 1)"),
        Case("sample_text without [MASK]", ["fit", *BERT, "--model.init_args.sample_text", "no mask"], "error: MaskedLM sample_text='no mask': expected a sentence with [MASK]"),
        Case("VAE encoder width 0", ["fit", "--config", "configs/vae.yaml", *DIGITS, "--model.init_args.encoder.init_args.width", "0"], "error: ConvEncoder width=0: expected a positive int"),
        Case("GAN n_critic 0", ["fit", "--config", "configs/gan.yaml", *DIGITS, "--model.init_args.n_critic", "0"], "error: latent_dim=64, n_critic=0"),
        Case("SimCLR temperature 0", ["fit", "--config", "configs/simclr.yaml", *DIGITS, "--model.init_args.temperature", "0"], "error: temperature=0.0, projection_dim=64: expected both > 0"),
        Case("SimCLR blur larger than the image", ["fit", "--config", "configs/simclr.yaml", *DIGITS, "--model.init_args.augment.init_args.blur_kernel", "9"], "error: augment blur_kernel=9 does not fit images of 8x8"),
        Case("missing image source", ["fit", "--config", "configs/vae.yaml", *DIGITS, "--data.init_args.source", "{work}/pictures.npz"], "error: image source '{work}/pictures.npz': not found"),
        Case("labelled CSV without its label column", ["fit", "--config", "configs/classify_bbc_student.yaml", "--trainer.logger", "false", "--data.init_args.source", "{work}/l.csv"],
             "error: {work}/l.csv", files={"l.csv": b"text,topic\nhello,a\nworld,b\n"}),
        Case("classifier label_fraction 0", ["fit", "--config", "configs/classify_bbc_student.yaml", "--trainer.logger", "false", "--data.init_args.labels_per_class", "null",
             "--data.init_args.label_fraction", "0"],
             "error: label_fraction=0.0: expected a number in (0, 1]"),
        # the token cache: rebuilt, with one warning line, and the run trains
        Case("cache train.bin overwritten with 0xFF", fit, "warning: token cache", exit=0, corrupt_cache="ff"),
        Case("cache train.bin truncated to an odd size", fit, "warning: token cache", exit=0, corrupt_cache="odd"),
        Case("cache train.bin truncated to a multiple of 4", fit, "warning: token cache", exit=0, corrupt_cache="multiple of 4"),
        # run names and directories
        Case("run name ../../x", [*fit, "--run.name", "../../x"], "error: run.name='../../x': expected one path component"),
        Case("run name a/b", [*fit, "--run.name", "a/b"], "error: run.name='a/b': expected one path component"),
        Case("empty run name", [*fit, "--run.name", ""], "error: run.name='': expected one path component"),
        Case("run.dir under a file", [*fit, "--run.dir", "{work}/notes.txt/runs"], "error: run.dir={work}/notes.txt/runs: cannot write runs there", files={"notes.txt": b"x"}),
        Case("checkpoint_every 0", [*fit, "--run.checkpoint_every", "0"], "error: run.checkpoint_every=0: expected a positive number of steps"),
        # the device and the length of training
        Case("precision 16 on a CPU", [*fit, "--trainer.precision", "16", "--trainer.accelerator", "cpu"], "error: trainer.precision=16: fp16 mixed precision needs a CUDA GPU"),
        Case("FSDP on a CPU", [*fit, "--config", "configs/trainer/fsdp.yaml", "--trainer.accelerator", "auto"], "error: trainer.strategy=FSDPStrategy needs CUDA GPUs"),
        Case("max_steps 0", [*fit, "--trainer.max_steps", "0"], "error: trainer.max_steps=0: expected a positive number of steps"),
        Case("max_epochs 0", [*fit, "--trainer.max_steps", "-1", "--trainer.max_epochs", "0"], "error: trainer.max_epochs=0: expected a positive number of epochs"),
        # checkpoints
        Case("resume with nothing to resume", [*fit, "--ckpt_path", "last", "--run.name", "never_ran"], "error: --ckpt_path last: no checkpoint to resume"),
        Case("resume from a missing file", [*fit, "--ckpt_path", "{work}/nowhere.ckpt"], "error: --ckpt_path {work}/nowhere.ckpt: no such file"),
        Case("resume from a YAML file", [*fit, "--ckpt_path", "configs/gan.yaml"], "error: --ckpt_path configs/gan.yaml: not a checkpoint"),
        Case("resume from a truncated checkpoint", [*fit, "--ckpt_path", "{work}/cut.ckpt"], "error: --ckpt_path {work}/cut.ckpt: not a checkpoint", files={"cut.ckpt": lambda ckpt: open(ckpt, "rb").read()[:5000]}),
        Case("resume with another n_embd", [*resume, "--model.init_args.net.init_args.n_embd", "64"], "error: --ckpt_path {ckpt}: model.init_args.net.init_args.n_embd=64 is configured and the checkpoint has 32"),
        Case("resume with another lr", [*resume, "--model.init_args.optimizer.init_args.lr", "0.1"], "error: --ckpt_path {ckpt}: model.init_args.optimizer.init_args.lr=0.1 is configured"),
        Case("resume with other num_workers", [*resume, "--data.init_args.num_workers", "1"], "error: --ckpt_path {ckpt}: data.num_workers=1 and the checkpoint's loader ran 0 workers"),
        Case("resume from a run directory without checkpoints", [*fit, "--ckpt_path", "{work}"], "error: --ckpt_path {work}: a directory without checkpoints/last.ckpt"),
        Case("resume from a checkpoint holding code", [*fit, "--ckpt_path", "{work}/code.ckpt"], "error: --ckpt_path {work}/code.ckpt: refused, it holds Python objects",
             files={"code.ckpt": pickled_code}),
        Case("resume with another network class", [*resume, "--model.init_args.net", "tasks.nets.GPTEncoder"], "error: --ckpt_path {ckpt}: model.init_args.net.class_path='tasks.nets.GPTEncoder' is configured"),
        Case("an autoencoder checkpoint to the GPT", ["validate", *NANO, "--ckpt_path", "{autoencoder}"], "error: --ckpt_path {autoencoder}: a checkpoint of tasks.Reconstruction, expected one of the configured tasks.CausalLM"),
        # after training: generate, test, predict, export
        Case("generate from a missing run", ["generate", "--ckpt_path", "{work}/runs/nowhere", "--prompt", "The"], "error: --ckpt_path {work}/runs/nowhere: no such file or run directory"),
        Case("generate from an autoencoder", ["generate", "--ckpt_path", "{autoencoder}", "--prompt", "The"], "error: generate --ckpt_path {autoencoder}: a checkpoint of tasks.reconstruction.Reconstruction, which does not generate text"),
        Case("generate from an empty prompt", ["generate", "--ckpt_path", "{ckpt}", "--prompt", ""], "error: --prompt '' (prompt 1 of 1): an empty prompt"),
        Case("generate over an existing file", ["generate", "--ckpt_path", "{ckpt}", "--prompt", "The", "--out", "{work}/taken.jsonl"], "error: --out {work}/taken.jsonl: the file exists",
             files={"taken.jsonl": b"{}\n"}),
        Case("test without a test split", ["test", *NANO, "--ckpt_path", "{ckpt}", "--data.init_args.test_fraction", "0"], "error: test: data.test_fraction=0 holds out no test split"),
        Case("predict without a test split", ["predict", *NANO, "--ckpt_path", "{ckpt}", "--data.init_args.test_fraction", "0"], "error: predict: data.test_fraction=0 holds out no test split"),
        Case("export over an existing directory", ["export", "--ckpt_path", "{ckpt}", "--to", "{work}"], "error: export --to {work}: already exists"),
        Case("export a file that is not a checkpoint", ["export", "--ckpt_path", "configs/gan.yaml", "--to", "{work}/out"], "error: export --ckpt_path configs/gan.yaml: not a checkpoint"),
        # stops: saved at the step under way, resumable
        Case("SIGTERM during fit", ["fit", *NANO, "--trainer.max_steps", "400", "--run.checkpoint_every", "5"], "stopped by SIGTERM at step", exit=143),
        Case("SIGINT (Ctrl-C) during fit", ["fit", *NANO, "--trainer.max_steps", "400", "--run.checkpoint_every", "5"], "stopped by SIGINT at step", exit=130),
    ]


def pickled_code(ckpt: str) -> bytes:
    """The checkpoint with an object in it that unpickling would import and run."""
    import io

    import torch

    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["payload"] = subprocess.Popen
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def snapshot(path: str) -> dict[str, bytes]:
    """Every file under ``path``, with its bytes."""
    files = {}
    for name in glob.glob(os.path.join(path, "**"), recursive=True):
        if os.path.isfile(name):
            with open(name, "rb") as f:
                files[os.path.relpath(name, path)] = f.read()
    return files


def corrupt(cache_root: str, how: str) -> None:
    (train,) = glob.glob(os.path.join(cache_root, "*", "train.bin"))
    size = os.path.getsize(train)
    if how == "ff":
        with open(train, "r+b") as f:
            f.write(b"\xff" * size)
    else:
        os.truncate(train, size - 3 if how == "odd" else size - 4 * 100)


def run(case: Case, base: str, env: dict) -> dict:
    work = tempfile.mkdtemp(prefix="case-", dir=base)
    runs = os.path.join(work, "runs")
    shutil.copytree(os.path.join(base, "runs"), runs)  # the resumable gpt_nano run and an autoencoder's
    ckpt = os.path.join(runs, "gpt_nano", "checkpoints", "last.ckpt")
    names = {"work": work, "ckpt": ckpt, "autoencoder": os.path.join(runs, "autoencoder", "checkpoints", "last.ckpt")}
    for name, content in case.files.items():
        if callable(content):
            content = content(ckpt)
        with open(os.path.join(work, name), "wb") as f:
            f.write(content)
    cache = os.path.join(work, "tokens")
    shutil.copytree(os.path.join(base, "tokens"), cache)
    if case.corrupt_cache:
        corrupt(cache, case.corrupt_cache)
    args = [a.format(**names) for a in case.args]
    if "--run.dir" not in args and args[0] in ("fit", "validate", "test", "predict"):  # generate and export name their checkpoint
        args += ["--run.dir", runs]
    if "configs/gpt_nano.yaml" in args:
        args += ["--data.init_args.cache_dir", cache]
    before = snapshot(runs)
    command = [sys.executable, "-m", "platform", *args]
    start = time.perf_counter()
    if case.exit in (143, 130):
        out = stop_midway(command, env, runs, signal.SIGTERM if case.exit == 143 else signal.SIGINT)
    else:
        out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    lines = out.stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    expected = case.line.format(**names)
    after = snapshot(runs)
    if case.exit == 0:  # a recovery: the run trained, and the one warning line is the only one of its kind
        warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: token cache")]
        said, kept = len(warnings) == 1, any(p.endswith("last.ckpt") for p in set(after) - set(before))
        last = warnings[0] if warnings else last
    elif case.exit in (143, 130):  # what it saved is the step it names, and the run resumes from it to the end
        said = last.startswith(expected)
        kept = said and resumes(command, env, stopped_at=int(last.split(" at step ")[1].split(":")[0]), runs=runs)
    else:
        said, kept = last.startswith(expected), after == before
    ok = out.returncode == case.exit and said and kept and "Traceback" not in out.stderr
    shutil.rmtree(work, ignore_errors=True)
    return {"case": case.name, "exit": out.returncode, "line": last.replace(work, "<dir>"), "said": said, "kept": kept, "ok": ok, "s": seconds}


def stop_midway(command: list[str], env: dict, runs: str, signum: int):
    """Start a long fit, signal it once its first checkpoint is on disk, and collect what it said."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    ckpt = os.path.join(runs, "gpt_nano-2", "checkpoints", "last.ckpt")  # runs/gpt_nano is the resumable fixture
    deadline = time.monotonic() + 300
    while not os.path.exists(ckpt) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few steps past it
    os.killpg(process.pid, signum)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def resumes(command: list[str], env: dict, stopped_at: int, runs: str) -> bool:
    """The checkpoint holds the step the stop named, and ``--ckpt_path last`` (the newest run of the
    name) continues from it for 5 more steps."""
    import torch

    last = os.path.join(runs, "gpt_nano-2", "checkpoints", "last.ckpt")
    if torch.load(last, weights_only=True)["global_step"] != stopped_at:
        return False
    shorter = list(command)
    shorter[shorter.index("--trainer.max_steps") + 1] = str(stopped_at + 5)
    done = subprocess.run([*shorter, "--ckpt_path", "last"], cwd=ROOT, env=env, capture_output=True, timeout=600)
    return done.returncode == 0 and torch.load(last, weights_only=True)["global_step"] == stopped_at + 5


def prepare(base: str, env: dict) -> None:
    """What the cases start from: a gpt_nano run of 2 steps (to resume), an autoencoder's, a token cache."""
    runs, cache = os.path.join(base, "runs"), os.path.join(base, "tokens")
    for args in (["fit", *SHORT, "--data.init_args.cache_dir", cache], ["fit", "--config", "configs/autoencoder.yaml", *DIGITS]):
        subprocess.run([sys.executable, "-m", "platform", *args, "--run.dir", runs], cwd=ROOT, env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only the cases whose name matches this regular expression")
    options = parser.parse_args()
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("PLATFORM_DEBUG", None)
    selected = [c for c in cases() if re.search(options.k, c.name)]
    with tempfile.TemporaryDirectory() as base:
        prepare(base, env)
        results = []
        for case in selected:
            results.append(result := run(case, base, env))
            mark = "ok  " if result["ok"] else "FAIL"
            print(f"{mark} {result['case']:<45} exit {result['exit']:>3}  {result['s']:5.1f} s  {result['line'][:150]}", flush=True)
    good = sum(r["ok"] for r in results)
    print(f"\n{good} of {len(results)} cases: the expected exit, one line naming the value, no traceback, nothing lost")
    sys.exit(0 if good == len(results) else 1)


if __name__ == "__main__":
    main()
