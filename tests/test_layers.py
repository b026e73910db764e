"""Imports run one way (see core/__init__.py): litlab -> tasks and datamodules -> core; tasks.nets -> core.

Read with ``ast``, nothing imported: every import counts, inside functions too, relative ones resolved."""

import ast
from pathlib import Path

from tests.conftest import ROOT

OURS = ("core", "tasks", "datamodules", "litlab", "platform")
# the most specific layer first: what each may import of ours (third-party and stdlib are free)
ALLOWED = {
    "tasks.nets": ("core", "tasks.nets"),
    "core": ("core",),
    "tasks": ("core", "tasks"),
    "datamodules": ("core", "datamodules"),
    "litlab": ("core", "tasks", "datamodules", "litlab"),
    "platform": ("litlab",),
}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _imports(tree: ast.Module, module: str, is_package: bool):
    """(line, imported module) for each import in ``module``, relative ones made absolute."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module


def violations(root) -> list[str]:
    """Every import under ``root`` against the layers, as ``path:line imports module: layer may import ...``."""
    root, found = Path(root), []
    for top in OURS:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            module = ".".join(parts[:-1] if is_package else parts)
            layer = next(layer for layer in ALLOWED if _within(module, layer))
            for line, name in _imports(ast.parse(path.read_text(encoding="utf-8")), module, is_package):
                if name.split(".")[0] in OURS and not any(_within(name, ok) for ok in ALLOWED[layer]):
                    found.append(f"{rel.as_posix()}:{line} imports {name}: {layer} may import {', '.join(ALLOWED[layer])}")
    return found


def test_the_tree_keeps_its_layers():
    found = violations(ROOT)
    assert not found, "imports against the layers (core/__init__.py):\n" + "\n".join(found)


def test_the_checker_catches_bad_imports(tmp_path):
    files = {
        "core/a.py": "import os\nfrom core.data import DataInfo\nfrom tasks import x\n",
        "tasks/nets/b.py": "import torch\nfrom core.batches import Batch\nfrom tasks.nets.gpt import GPT\n\ndef f():\n    import tasks.base\n",
        "tasks/nets/__init__.py": "from . import gpt\nfrom .. import base\n",
        "datamodules/c.py": "from datamodules.base import DataModule\nfrom litlab.cli import main\n",
        "tasks/d.py": "from .nets import GPT\nfrom . import base\nfrom ..datamodules import text\n",
        "litlab/e.py": "import core, tasks.base, datamodules, litlab.cli\nimport platform.__main__\n",
        "platform/__init__.py": "import os\nimport sysconfig\nfrom litlab.cli import main\nfrom core import data\n",
    }
    for name, source in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    assert sorted(violations(tmp_path)) == [
        "core/a.py:3 imports tasks: core may import core",
        "datamodules/c.py:2 imports litlab.cli: datamodules may import core, datamodules",
        "litlab/e.py:2 imports platform.__main__: litlab may import core, tasks, datamodules, litlab",
        "platform/__init__.py:4 imports core: platform may import litlab",
        "tasks/d.py:3 imports datamodules: tasks may import core, tasks",
        "tasks/nets/__init__.py:2 imports tasks: tasks.nets may import core, tasks.nets",
        "tasks/nets/b.py:6 imports tasks.base: tasks.nets may import core, tasks.nets",
    ]
