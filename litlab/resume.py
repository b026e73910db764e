"""What a resume may change and what it must not: LightningCLI rebuilds the model from the checkpoint's
hyperparameters, so an argument configured otherwise would silently be dropped. It is refused in one line
naming both values, as are another task's checkpoint and another number of loader workers; only
``RUN_OPTIONS`` (how a network runs, not what it computes) are the resumed run's own choice."""

import importlib

from jsonargparse import dict_to_namespace

from core.compat import loader_workers_saved

# model arguments that change how a network runs, not what it computes: a resumed run takes them from
# its command line, not from the checkpoint (a compiled run resumes eagerly and the other way round)
RUN_OPTIONS = ("compile", "activation_checkpointing")


def check_same_model(configured: dict, checkpoint: dict, ckpt_path: str, resuming: bool = True) -> None:
    """Refuse a model configured otherwise than the checkpoint it continues: LightningCLI rebuilds the
    model from the checkpoint's hyperparameters, so a changed size or learning rate would silently be
    dropped. Arguments left ``None`` (the data fills them), ``RUN_OPTIONS`` and arguments the checkpoint
    does not know (added since) are not compared; nor, unless ``resuming`` (validate, test, predict score
    the checkpoint's weights), the ``*_ckpt`` files a fit started from."""
    saved = dict(checkpoint.get("hyper_parameters") or {})
    saved_class, configured_class = saved.pop("_class_path", None), configured.get("class_path")
    if saved_class and configured_class and _import(saved_class) != _import(configured_class):
        raise ValueError(f"--ckpt_path {ckpt_path}: a checkpoint of {saved_class}, expected one of the configured {configured_class}")
    saved_leaves = dict(_leaves({"init_args": saved}))
    for key, value in _leaves({k: v for k, v in configured.items() if k == "init_args"}):
        name = key.rsplit(".", 1)[-1]
        if value is None or name in RUN_OPTIONS or key not in saved_leaves or (not resuming and name.endswith("_ckpt")):
            continue
        saved_value = saved_leaves[key]
        same = _import(value) == _import(saved_value) if key.endswith("class_path") else _as_lists(value) == _as_lists(saved_value)
        if not same:
            raise ValueError(
                f"--ckpt_path {ckpt_path}: model.{key}={value!r} is configured and the checkpoint has {saved_value!r}: "
                f"expected the checkpoint's (a resume continues its model; only {', '.join(RUN_OPTIONS)} may change), "
                "or a fresh run that starts from its weights"
            )


def check_same_workers(num_workers: int | None, checkpoint: dict, ckpt_path: str) -> None:
    """Refuse to resume a training loader with another number of workers: its saved position would not
    load (torchdata asserts it), or would not continue the same examples."""
    saved = loader_workers_saved(checkpoint)
    if num_workers is not None and saved is not None and num_workers != saved:
        raise ValueError(
            f"--ckpt_path {ckpt_path}: data.num_workers={num_workers} and the checkpoint's loader ran {saved} workers: "
            f"expected {saved} (a resume continues the loader's position, which depends on its workers)"
        )


def _leaves(tree: dict, prefix: str = ""):
    """(dotted key, value) of every value in nested dicts, as the config names them."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _import(class_path: str):
    """The class a config's ``class_path`` names (``tasks.CausalLM`` and ``tasks.causal_lm.CausalLM`` are one), or the path itself."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return class_path


def _as_lists(value):
    """Tuples as lists, as YAML and a checkpoint's hyperparameters hold sequences."""
    return list(map(_as_lists, value)) if isinstance(value, (list, tuple)) else value


def networks_from_checkpoint(init_args, saved: dict) -> set[str]:
    """A resumed run rebuilds what ``*_ckpt`` arguments once loaded (``backbone_ckpt``, ``teacher_ckpt``,
    ``init_ckpt``) from the checkpoint being resumed, which holds their weights and, in its
    hyperparameters, their configs: the files they came from may be gone. Returns the networks rebuilt so."""
    rebuilt = set()
    for key in [k for k, v in vars(init_args).items() if k.endswith("_ckpt") and v]:
        network = key.removesuffix("_ckpt")
        if network in init_args and init_args[network] is None and isinstance(saved.get(network), dict):
            init_args[network] = dict_to_namespace(saved[network])
        rebuilt.add(network)
        init_args[key] = None
    return rebuilt
