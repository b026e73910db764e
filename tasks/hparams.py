"""Hyperparameters that make a checkpoint self-describing."""

import inspect
import warnings

import lightning as L
from torch import nn


def save_hyperparameters(module: L.LightningModule) -> None:
    """``module.save_hyperparameters()`` for tasks whose networks are injected.

    Through the CLI, a network argument is saved as its config (``class_path``/``init_args``), so a
    checkpoint can rebuild it. A network object passed in Python has no such description; it is left
    out rather than pickled into the checkpoint (which weights-only loading would refuse).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
        module.save_hyperparameters(frame=inspect.currentframe().f_back)
    module.remove_ignored_hparams([k for k, v in module.hparams.items() if isinstance(v, nn.Module)])
    module._hparams_initial = dict(module.hparams)
