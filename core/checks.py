"""Checks of the arguments networks and tasks are built with: a bad one is refused in one line that
names its owner, the argument, its value and what was expected (``GPT n_layer=0: expected a positive int``),
before anything is built or any run directory exists.

``owner`` is the object being built (its class names it) or a name. An argument its class fills from the
data (``from_data``) and left ``None`` gets a hint to set it or let the datamodule provide it."""

import numbers


def positive(owner, **sizes) -> None:
    """Each of ``sizes`` a positive int (layers, heads, widths, latent sizes, classes...)."""
    _check(owner, sizes, lambda v: _is_int(v) and v > 0, "a positive int")


def positive_or_none(owner, **sizes) -> None:
    """Each of ``sizes`` None (an option that is off) or a positive int."""
    _check(owner, sizes, lambda v: v is None or (_is_int(v) and v > 0), "a positive int or None")


def non_negative(owner, **sizes) -> None:
    """Each of ``sizes`` an int >= 0 (0 turns something off)."""
    _check(owner, sizes, lambda v: _is_int(v) and v >= 0, "an int >= 0")


def positive_number(owner, **values) -> None:
    """Each of ``values`` a number > 0 (a size in MB, a rate)."""
    _check(owner, values, lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0, "a positive number")


def fraction(owner, **values) -> None:
    """Each of ``values`` a number in [0, 1): a dropout probability (1 would drop everything)."""
    _check(owner, values, lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v < 1, "a number in [0, 1)")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check(owner, values: dict, ok, expected: str) -> None:
    name = owner if isinstance(owner, str) else type(owner).__name__
    for arg, value in values.items():
        if not ok(value):
            from_data = value is None and arg in getattr(owner, "from_data", {})
            hint = " (set it, or let the datamodule provide it)" if from_data else ""
            raise ValueError(f"{name} {arg}={value}: expected {expected}{hint}")
