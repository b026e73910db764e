"""What the objectives share: AdamW with warmup and cosine decay, gradient clipping under bf16, and
the preparation of their networks for scale: FSDP2 sharding and ``torch.compile``."""

import lightning as L
import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torchmetrics import Metric

from tasks.optim import adamw, warmup_cosine


class Task(L.LightningModule):
    """Base of the objectives. Subclasses save ``lr``, ``weight_decay``, ``betas``, ``warmup_steps`` and
    ``min_lr_ratio`` as hyperparameters (the schedule spans the whole run), and ``compile``, which
    compiles the networks named in ``networks``."""

    #: the attributes holding the task's main networks, which ``compile: true`` compiles; a nested task
    #: (a distillation's student or teacher) compiles its own as its ``compile`` says
    networks: tuple[str, ...] = ()

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
            network = getattr(self, name)
            if isinstance(network, Task):
                network.compile_networks()
            elif self.hparams.get("compile") and network._compiled_call_impl is None:
                network.compile()
                if hasattr(network, "features"):  # what a classifier calls on a text backbone, besides forward
                    network.features = torch.compile(network.features)

    def configure_optimizers(self):
        h = self.hparams
        # fp16 loss scaling unscales inside a fused step, which Lightning's gradient clipping refuses
        optimizer = adamw(self, h.lr, h.weight_decay, h.betas, fused=self.trainer.precision != "16-mixed", lr_scale=self.lr_scale())
        schedule = warmup_cosine(optimizer, h.warmup_steps, self.trainer.estimated_stepping_batches, h.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def lr_scale(self):
        """A function of a parameter's name that scales its learning rate; None: all at ``lr``."""
        return None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["task"] = f"{type(self).__module__}.{type(self).__name__}"  # so that tasks.checkpoints.load_task can rebuild it

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if gradient_clip_val and str(self.trainer.precision).startswith("bf16"):
            # bf16 has no loss scale to undo, so clip directly (Lightning's AMP plugin refuses fused AdamW)
            clip = nn.utils.clip_grad_value_ if gradient_clip_algorithm == "value" else nn.utils.clip_grad_norm_
            clip(self.parameters(), gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


def shard(module: nn.Module, mesh) -> None:
    """FSDP2 over ``mesh``: each module with parameters under ``module`` (nested tasks looked into)
    becomes a sharded unit, and so does every block of its ``nn.ModuleList``s (a transformer's layers),
    so that one block's parameters are gathered at a time. The task itself stays unwrapped, which
    keeps its class, and metrics stay whole."""
    for child in module.children():
        if isinstance(child, Task):
            shard(child, mesh)
        elif not isinstance(child, (FSDPModule, Metric)) and any(True for _ in child.parameters()):
            for blocks in [m for m in child.modules() if isinstance(m, nn.ModuleList)]:
                for block in blocks:
                    fully_shard(block, mesh=mesh)
            fully_shard(child, mesh=mesh)


def check_optimizer_args(lr: float, warmup_steps: int, min_lr_ratio: float) -> None:
    if lr <= 0 or warmup_steps < 0 or not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"lr={lr}, warmup_steps={warmup_steps}, min_lr_ratio={min_lr_ratio}: expected lr > 0, warmup_steps >= 0, 0 <= min_lr_ratio <= 1")
