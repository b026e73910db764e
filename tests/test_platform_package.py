"""Our `platform` package shadows the standard library's; both must keep working."""

import os
import subprocess
import sys

import importlib.util
import platform
import sysconfig

from tests.conftest import ROOT


def stdlib_platform_attributes() -> set[str]:
    spec = importlib.util.spec_from_file_location("stdlib_platform", os.path.join(sysconfig.get_path("stdlib"), "platform.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {n for n in dir(module) if not n.startswith("_")}


def test_package_is_a_superset_of_the_stdlib_module():
    assert platform.__file__.startswith(os.path.join(ROOT, "platform"))
    assert platform.system() and platform.python_version() == ".".join(map(str, sys.version_info[:3]))
    assert platform.uname().machine


def test_no_submodule_shadows_a_stdlib_attribute():
    """A submodule named like a function of the stdlib module (system, version, ...) replaces that
    function on import and breaks torch: see DESIGN.md."""
    names = {os.path.splitext(f)[0] for f in os.listdir(os.path.join(ROOT, "platform")) if not f.startswith("_")}
    stdlib = {"architecture", "collections", "functools", "itertools", "libc_ver", "machine", "node", "os",
              "platform", "processor", "re", "release", "sys", "system", "uname", "version"}  # fmt: skip
    clashes = names & (stdlib | stdlib_platform_attributes())
    assert not clashes, f"platform/ submodules shadow stdlib platform attributes: {sorted(clashes)}"


def test_help_names_the_program():
    out = subprocess.run([sys.executable, "-m", "platform", "fit", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m platform [options] fit")
    assert "--run.name" in out.stdout and "--ckpt_path" in out.stdout
