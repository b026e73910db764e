"""What the objectives share: AdamW with warmup and cosine decay, and gradient clipping under bf16."""

import lightning as L
from torch import nn

from tasks.optim import adamw, warmup_cosine


class Task(L.LightningModule):
    """Base of the objectives with one optimizer. Subclasses save ``lr``, ``weight_decay``, ``betas``,
    ``warmup_steps`` and ``min_lr_ratio`` as hyperparameters; the schedule spans the whole run."""

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


def check_optimizer_args(lr: float, warmup_steps: int, min_lr_ratio: float) -> None:
    if lr <= 0 or warmup_steps < 0 or not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"lr={lr}, warmup_steps={warmup_steps}, min_lr_ratio={min_lr_ratio}: expected lr > 0, warmup_steps >= 0, 0 <= min_lr_ratio <= 1")
