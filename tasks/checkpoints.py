"""Networks and tasks rebuilt from this platform's checkpoints: a task saves each injected network's
config (``class_path``/``init_args``) in its hyperparameters, and its record names its main network
(``core.checkpoints``), so nothing of the architecture is repeated by the user."""

import importlib

from jsonargparse import ArgumentParser
from torch import nn

from core.checkpoints import load_state, network_config, read_checkpoint, record


def build(spec: dict, base: type = nn.Module):
    """Instantiate a saved config (``class_path``/``init_args``, nested ones and optimizers too), as the
    CLI's parser does."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--built", type=base)
    return parser.instantiate(parser.parse_object({"built": spec})).built


def main_network(checkpoint: dict, what: str) -> tuple[nn.Module, dict]:
    """The main network of a checkpoint already read, rebuilt from its saved config and loaded with its
    weights; and that config."""
    path = record(checkpoint)["main_network"]
    spec = network_config(checkpoint, path)
    if spec is None:
        raise ValueError(f"{what}: its main network {path!r} has no saved config to rebuild it from (expected a checkpoint of `python -m platform fit`)")
    network = build(spec)
    load_state(network, checkpoint, path, what)
    return network, spec


def init_from(network: nn.Module, ckpt_path: str) -> None:
    """Load into ``network`` the weights of a checkpoint's main network (an ``init_ckpt``): the same
    architecture, which a one-line error enforces; the optimizer and schedule start afresh."""
    checkpoint = read_checkpoint(ckpt_path, what="init_ckpt")
    load_state(network, checkpoint, record(checkpoint)["main_network"], f"init_ckpt {ckpt_path}")


def load_network(ckpt_path: str, what: str = "checkpoint") -> nn.Module:
    """The main network of a checkpoint: a CausalLM's GPT, a reconstruction or contrastive run's encoder,
    a classifier's backbone, a distillation's student's network."""
    return main_network(read_checkpoint(ckpt_path, what), f"{what} {ckpt_path}")[0]


def main_task(checkpoint: dict) -> tuple[type, dict, str]:
    """The task that holds a checkpoint's main network (a distillation's: its student): its class, its
    hyperparameters and where it sits in the checkpoint's state_dict (``""``, ``"student."``)."""
    class_path, hparams, prefix = record(checkpoint)["task"], checkpoint.get("hyper_parameters", {}), ""
    for name in filter(None, record(checkpoint)["main_network"].split(".")[:-1]):  # down to the task that holds it
        class_path, hparams, prefix = hparams[name]["class_path"], hparams[name].get("init_args", {}), f"{prefix}{name}."
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name), hparams, prefix


def load_task(ckpt_path: str, checkpoint: dict | None = None):
    """The task (LightningModule) a checkpoint holds, rebuilt from its hyperparameters and loaded with
    its weights: the task whose network is the main one, so a distillation gives its student as a plain
    task of its kind. Arguments that name other checkpoints (``*_ckpt``) are dropped: the weights they
    would load are in this checkpoint. ``checkpoint``: the file already read (``read_checkpoint``)."""
    from tasks.base import Task

    checkpoint = read_checkpoint(ckpt_path) if checkpoint is None else checkpoint
    task_class, hparams, prefix = main_task(checkpoint)
    init_args = {k: (None if k.endswith("_ckpt") else v) for k, v in hparams.items() if not k.startswith("_")}
    task = build({"class_path": f"{task_class.__module__}.{task_class.__qualname__}", "init_args": init_args}, Task)
    task.hparams.update({k: v for k, v in init_args.items() if k not in task.hparams})  # the networks' configs, so it saves as it loaded
    load_state(task, checkpoint, prefix.rstrip("."), ckpt_path)
    return task
