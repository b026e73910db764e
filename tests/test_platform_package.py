"""`python -m platform` from the repo root is a shim that hands over to the installed CLI, `litlab`,
and shadows the standard library's `platform` there without breaking what imports it; elsewhere the
standard library's wins, and `litlab` runs from any directory."""

import glob
import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT


def run(*command: str, cwd: str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_MODE": "disabled"})


def test_the_shim_is_small_and_a_superset_of_the_stdlib_module():
    assert sum(len(open(f).readlines()) for f in glob.glob(os.path.join(ROOT, "platform", "*.py"))) <= 30
    out = run(sys.executable, "-c", "import platform, torch; print(platform.__file__); print(platform.system(), platform.python_version())")
    assert out.returncode == 0, out.stderr
    path, versions = out.stdout.splitlines()
    assert path == os.path.join(ROOT, "platform", "__init__.py")  # ours, from the repo root
    assert versions.split()[1] == ".".join(map(str, sys.version_info[:3]))  # and still the stdlib's functions


def test_help_names_the_program_from_the_root_and_from_anywhere(tmp_path):
    out = run(sys.executable, "-m", "platform", "fit", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m platform [options] fit")
    assert "--run.name" in out.stdout and "--ckpt_path" in out.stdout
    litlab = shutil.which("litlab")
    assert litlab, "pip install -e . installs the litlab command"
    out = run(litlab, "fit", "--help", cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: litlab [options] fit")


def test_outside_the_root_python_m_platform_is_the_standard_librarys(tmp_path):
    """What README warns of: elsewhere the stdlib module runs, prints the OS name and exits 0."""
    out = run(sys.executable, "-m", "platform", cwd=str(tmp_path))
    assert out.returncode == 0 and "usage" not in out.stdout and out.stdout.strip()
