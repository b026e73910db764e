"""What the objectives share: the optimizer and schedule chosen in the config, the record a checkpoint
keeps of its task, the data contract, and the preparation of networks for scale (FSDP2, compile)."""

import inspect
from typing import Protocol

import lightning as L
import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torchmetrics import Metric

from core.checkpoints import CHECKPOINT_FORMAT
from core.compat import is_compiled, save_hyperparameters
from core.data import DataInfo, HasDataInfo
from tasks.images import log_image
from tasks.optim import OptimizerCallable, ScheduleCallable, WarmupCosine, param_groups, scale_learning_rates

STAGES = ("val", "test")  # the stages that score held-out data, each with metrics of its own


class Task(L.LightningModule):
    """Base of the objectives. A subclass

    - names the attributes that hold its networks in ``networks``, its main network first: the one a
      checkpoint offers to later runs (a backbone, an ``init_ckpt``, a teacher's network, an FID
      encoder), and the ones ``compile`` compiles and FSDP2 shards block by block. A task in first
      place (a distillation's student) lends its own main network;
    - declares in ``from_data`` those of its arguments the data determines (``{argument: DataInfo
      field}``), as networks do; the CLI fills them (see ``core.data``);
    - checks the data in ``use_data(info)`` and keeps what it needs of it: called by the CLI before
      training and by ``setup`` from the datamodule's ``info``;
    - takes ``**kwargs`` and hands them to ``super().__init__``: the arguments below, written once;
    - scores a validation or test batch in ``score(batch, batch_idx, stage)`` and says what it logs in
      ``stage_metrics(stage)``: ``test`` logs them as ``test/...``, beside ``figures()``, images the run saves as PNGs;
    - for ``predict``, names the files it writes in ``prediction_files`` and returns from ``predict_step`` a dict
      of per-example values (lists, or tensors whose first dimension is the batch's), with an ``index`` (the
      batch's: where each example comes from); ``litlab.callbacks.PredictionWriter`` writes them, in the format
      each file's extension names.

    Args:
        optimizer: any ``torch.optim`` optimizer (or ``tasks.optim.Split``), given the task's parameter
            groups: decay on matrices only, a learning-rate scale per group (``lr_scale``).
        schedule: called with the optimizer and the run's number of optimizer steps; ``null`` keeps the
            learning rate constant.
        compile: compile the networks in place with ``torch.compile``; a resumed run takes it from its
            own command line, so compiled and eager runs continue each other.
    """

    networks: tuple[str, ...] = ()
    from_data: dict[str, str] = {}
    # what the task made at its last validation, for the summary: a language model's text, or an image
    # grid (C, H, W) in [0, 1] (inputs above reconstructions, samples), which fit saves as sample.png
    last_sample: str | torch.Tensor | None = None
    # the files predict writes into the run directory (predictions.csv, latents.npz...); none: predict is refused
    prediction_files: tuple[str, ...] = ()

    def __init__(self, optimizer: OptimizerCallable = torch.optim.AdamW, schedule: ScheduleCallable | None = WarmupCosine, compile: bool = False):
        super().__init__()
        save_hyperparameters(self, inspect.currentframe())  # this task's arguments and its subclass's: the checkpoint rebuilds it
        self.make_optimizer, self.make_schedule, self.compile_enabled = optimizer, schedule, compile
        self.data = DataInfo()
        self.test_figures: dict[str, torch.Tensor] = {}  # name -> (C, H, W) image in [0, 1], made at test

    # -- validation and test: a batch scored into the metrics of its stage (STAGES) ---------------
    def score(self, batch, batch_idx: int, stage: str) -> None:
        """Add a validation or test batch to the metrics of ``stage``."""
        raise NotImplementedError(f"{type(self).__name__} must say what validation and test score: a `score` method")

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """The metrics of ``stage`` so far, named ``<stage>/...``; they start over."""
        raise NotImplementedError(f"{type(self).__name__} must say what validation and test log: a `stage_metrics` method")

    def figures(self) -> dict[str, torch.Tensor]:
        """Images of the test just scored (a classifier's confusion matrix), name -> (C, H, W) in [0, 1]; none by default."""
        return {}

    def validation_step(self, batch, batch_idx: int) -> None:
        self.score(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.score(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.stage_metrics("test"))
        for name, image in self.figures().items():  # saved as <run>/<name>.png once the test ends, and logged as test/<name>
            self.test_figures[name] = image
            log_image(self.logger, f"test/{name}", image, self.global_step)

    # -- the data ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, HasDataInfo):
            raise ValueError(f"{type(self).__name__}: the data {type(datamodule).__name__} declares no info: expected a datamodules.base.DataModule")
        self.use_data(datamodule.info)

    def use_data(self, info: DataInfo) -> None:
        """Refuse data the task cannot learn from, in one line; keep ``info`` (the tokenizer, the class names)."""
        self.data = info

    def summary(self) -> list[str]:
        """Lines of the task's own for the summary that ``fit`` prints at its end (indented two spaces)."""
        return []

    # -- the networks --------------------------------------------------------------------------
    @property
    def main_network(self) -> str:
        """The dotted path of the main network: ``net``, or a distillation's ``student.net``."""
        name = self.networks[0]
        inner = self.get_submodule(name)
        return f"{name}.{inner.main_network}" if isinstance(inner, Task) else name

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["platform"] = {"format": CHECKPOINT_FORMAT, "task": f"{type(self).__module__}.{type(self).__name__}", "main_network": self.main_network}

    def configure_model(self) -> None:
        """Lightning calls this on the target device before building the optimizers, at every stage
        (so it is idempotent). Under ``ModelParallelStrategy`` (``configs/trainer/fsdp2.yaml``) the
        parameters are sharded with FSDP2 over the data-parallel mesh; then the networks are compiled in
        place, which keeps the state_dict keys of the eager model: checkpoints stay interchangeable."""
        if self.device_mesh is not None:
            shard(self, self.device_mesh["data_parallel"])
        self.compile_networks()

    def compile_networks(self) -> None:
        for name in self.networks:
            network = self.get_submodule(name)
            if isinstance(network, Task):
                network.compile_networks()  # as its own ``compile`` says
            elif self.compile_enabled and not is_compiled(network):
                network.compile()
                if hasattr(network, "features"):  # what a classifier calls on a text network, besides forward
                    network.features = torch.compile(network.features)

    # -- optimization --------------------------------------------------------------------------
    def configure_optimizers(self):
        try:
            optimizer = scale_learning_rates(self.make_optimizer(param_groups(self, self.lr_scale())))
        except ValueError as err:  # torch's own check, e.g. "Invalid learning rate: -1.0": say whose argument it is
            raise ValueError(f"model.init_args.optimizer: {err}: expected arguments the optimizer accepts") from None  # the CLI prints causes
        if self.make_schedule is None:
            return optimizer
        schedule = self.make_schedule(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def lr_scale(self):
        """A function of a parameter's name that scales its learning rate; None: all at the optimizer's."""
        return None

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if gradient_clip_val and str(self.trainer.precision).startswith("bf16"):
            # bf16 has no loss scale to undo, so clip directly (Lightning's AMP plugin refuses fused optimizers)
            clip = nn.utils.clip_grad_value_ if gradient_clip_algorithm == "value" else nn.utils.clip_grad_norm_
            clip(self.parameters(), gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


class Distillable(Protocol):
    """What ``tasks.Distillation`` needs of its student and teacher (``Classification`` and ``CausalLM``
    have it): predictions and targets of a batch, validation metrics the student reports as its own,
    and the size of each prediction, which teacher and student must share."""

    num_outputs: int

    def logits_and_targets(self, batch) -> tuple[torch.Tensor, torch.Tensor]: ...

    def evaluate(self, logits: torch.Tensor, targets: torch.Tensor, stage: str = "val") -> None: ...

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]: ...

    def figures(self) -> dict[str, torch.Tensor]: ...


def shard(task: Task, mesh) -> None:
    """FSDP2 over ``mesh``: each of the task's ``networks`` (a nested task's own, looked into) becomes a
    sharded unit, and so does every block of its ``nn.ModuleList``s (a transformer's layers), so that
    one block's parameters are gathered at a time; its other modules with parameters (heads,
    projections) become units of their own. The task itself stays unwrapped, which keeps its class,
    and metrics stay whole."""
    networks = [task.get_submodule(name) for name in task.networks]
    for network in networks:
        if isinstance(network, Task):
            shard(network, mesh)
        elif not isinstance(network, FSDPModule):
            for blocks in [m for m in network.modules() if isinstance(m, nn.ModuleList)]:
                for block in blocks:
                    fully_shard(block, mesh=mesh)
            fully_shard(network, mesh=mesh)
    for child in task.children():
        if all(child is not n for n in networks) and not isinstance(child, (FSDPModule, Metric)) and any(True for _ in child.parameters()):
            fully_shard(child, mesh=mesh)
