"""Every private Lightning and jsonargparse internal the platform relies on, in one place.

Each function names the internal it uses; tests/test_compat.py pins the behaviour each relies on, so
that an upgrade of Lightning or jsonargparse fails a test here rather than a user's run.
"""

import importlib
import inspect
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from torch import nn


def save_hyperparameters(module: L.LightningModule, frame) -> None:
    """``module.save_hyperparameters()`` for tasks whose networks are injected.

    Through the CLI a network argument is saved as its config (``class_path``/``init_args``), so a
    checkpoint can rebuild it: LightningCLI hands the parsed config to ``save_hyperparameters`` through
    the context variable ``_given_hyperparameters``. It hands the config of the task it builds to every
    task built inside it (a distillation's student) too; that one is not the inner task's own and is
    set aside for it. Values that are not plain data (a network or an optimizer passed in Python) are
    left out rather than pickled into the checkpoint, which weights-only loading would refuse."""
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

    given = _given_hyperparameters.get()
    token = _given_hyperparameters.set(None) if given and not _describes(given, type(module)) else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            module.save_hyperparameters(frame=frame)
    finally:
        if token is not None:
            _given_hyperparameters.reset(token)
    module.remove_ignored_hparams([k for k, v in module.hparams.items() if not _plain(v)])
    module._hparams_initial = dict(module.hparams)  # what Lightning logs and saves as the initial hparams


def _describes(given: dict, cls: type) -> bool:
    """Whether LightningCLI's given hyperparameters (``_class_path`` and arguments) are those of ``cls``."""
    module, _, name = str(given.get("_class_path", "")).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name) is cls
    except (ImportError, AttributeError, ValueError):
        return all(k.startswith("_") or k in inspect.signature(cls.__init__).parameters for k in given)


def _plain(value) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(map(_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def load_distributed_checkpoint(path: str) -> dict:
    """A sharded (torch.distributed.checkpoint) checkpoint consolidated in memory, as Lightning's
    ``lightning.fabric.utilities.load._load_distributed_checkpoint`` reads it."""
    from lightning.fabric.utilities.load import _load_distributed_checkpoint

    return _load_distributed_checkpoint(Path(path))


def loader_workers_saved(checkpoint: dict) -> int | None:
    """How many worker processes the training loader of a Lightning checkpoint ran, or None if it saved
    no loader: the fit loop keeps the StatefulDataLoader's state under
    ``loops.fit_loop.state_dict.combined_loader``; a loader with workers writes ``_num_workers`` in its
    ``_snapshot._main_snapshot``, one without writes none."""
    loaders = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
    if not loaders or not isinstance(loaders[0], dict):
        return None
    return loaders[0].get("_snapshot", {}).get("_main_snapshot", {}).get("_num_workers", 0)


def subcommand_parser(cli, subcommand: str | None):
    """The parser of one subcommand of a LightningCLI (``LightningCLI._parser``): what saves and dumps
    that subcommand's config."""
    return cli._parser(subcommand)


def shard_over_every_process(strategy) -> None:
    """Make a ``ModelParallelStrategy`` put every process of every node into the data-parallel dimension
    (FSDP2 alone, no tensor parallelism), through its ``_data_parallel_size``; call it in
    ``setup_environment``, before the device mesh is built."""
    strategy._data_parallel_size = strategy.num_nodes * strategy.num_processes


@contextmanager
def deferred_print_config(parser):
    """Parse without jsonargparse printing ``--print_config`` and exiting (``_ActionPrintConfig``); yields
    a dict that holds the request afterwards (``subparser`` and the dump flags), empty when none was
    made, so that the CLI can print the config once the data has filled it in."""
    from jsonargparse._actions import _ActionPrintConfig

    request: dict = {}
    with _ActionPrintConfig.skip_print_config():
        yield request
    if hasattr(parser, "print_config"):  # set by the action on the root parser
        request.update(parser.print_config)
        del parser.print_config
        request.pop("key", None)
        request.pop("skip_validation", None)


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module.compile()`` has compiled it in place (``nn.Module._compiled_call_impl``)."""
    return module._compiled_call_impl is not None
