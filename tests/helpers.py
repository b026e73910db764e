"""Callbacks that tests inject into real CLI runs through the config."""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILLs the process when training reaches ``step``: a crash nothing can clean up after."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
