"""Root conftest: makes bare ``pytest`` see our ``platform`` package.

The ``pytest`` script imports the standard library's ``platform`` before any conftest runs, so
the stdlib module sits in ``sys.modules``; swap in the package from the repo root (a superset of
the stdlib module, see platform/__init__.py), so ``import platform.cli`` works in tests.
"""

import importlib
import os
import sys

_root = os.path.dirname(os.path.abspath(__file__))
if not hasattr(sys.modules.get("platform"), "__path__"):
    if sys.path[0] != _root:
        sys.path.insert(0, _root)
    sys.modules.pop("platform", None)
    importlib.import_module("platform")
