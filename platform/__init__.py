"""``python -m platform`` from the repo root: a shim that hands over to the installed CLI, ``litlab``.

From the repo root this package shadows the standard library's ``platform``, which torch, wandb and
uuid import too, so it first becomes a superset of it: the stdlib source runs in this namespace, then
the package's own identity is restored. Elsewhere the stdlib module wins; use ``litlab`` there.
"""

import os as _os
import sysconfig as _sysconfig

_identity = {k: globals()[k] for k in ("__name__", "__file__", "__path__", "__spec__", "__loader__", "__package__")}
_stdlib_file = _os.path.join(_sysconfig.get_path("stdlib"), "platform.py")
with open(_stdlib_file, encoding="utf-8") as _f:
    exec(compile(_f.read(), _stdlib_file, "exec"), globals())
globals().update(_identity)
del _identity, _stdlib_file, _f
