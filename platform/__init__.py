"""The platform's CLI and glue, importable as ``platform``.

This package shadows the standard library's ``platform`` module whenever the repo root is first
on ``sys.path`` (which ``python -m platform`` needs). torch, wandb, uuid and others then import
*this* package, so it first becomes a superset of the stdlib module: the stdlib source is executed
into this namespace, and the package's own identity is restored afterwards.
See ../shared/DESIGN.md ("The platform package shadows the standard library").
"""

import os as _os
import sysconfig as _sysconfig

_identity = {k: globals()[k] for k in ("__name__", "__file__", "__path__", "__spec__", "__loader__", "__package__")}
_stdlib_file = _os.path.join(_sysconfig.get_path("stdlib"), "platform.py")
with open(_stdlib_file, encoding="utf-8") as _f:
    exec(compile(_f.read(), _stdlib_file, "exec"), globals())
globals().update(_identity)
del _identity, _stdlib_file, _f
