"""Hyperparameters that make a checkpoint self-describing."""

import inspect
import warnings

import lightning as L
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn


def save_hyperparameters(module: L.LightningModule) -> None:
    """``module.save_hyperparameters()`` for tasks whose networks are injected.

    Through the CLI, a network argument is saved as its config (``class_path``/``init_args``), so a
    checkpoint can rebuild it. A network object passed in Python has no such description; it is left
    out rather than pickled into the checkpoint (which weights-only loading would refuse).
    """
    given = _given_hyperparameters.get()
    params = inspect.signature(type(module).__init__).parameters
    # LightningCLI hands the config of the task it builds to every task built inside it (a
    # distillation's student): one whose arguments are not these is not this task's
    token = _given_hyperparameters.set(None) if given and not all(k.startswith("_") or k in params for k in given) else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            module.save_hyperparameters(frame=inspect.currentframe().f_back)
    finally:
        if token is not None:
            _given_hyperparameters.reset(token)
    module.remove_ignored_hparams([k for k, v in module.hparams.items() if isinstance(v, nn.Module)])
    module._hparams_initial = dict(module.hparams)
