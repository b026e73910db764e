"""Distillation: a smaller student learns from a frozen teacher's softened predictions."""

import torch
import torch.nn.functional as F
from torch import nn

from core.data import DataInfo
from core.labels import IGNORE, UNLABELED
from tasks.base import Task
from tasks.checkpoints import load_task
from tasks.losses import distillation_loss

TARGETS = ("soft", "hard")


class Distillation(Task):
    """Trains ``student`` with ``alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE``
    (Hinton et al., 2015). Student and teacher are tasks of one kind with the same ``num_outputs``:
    ``Classification`` (one distribution per example; unlabelled examples learn from the teacher
    alone) or ``CausalLM`` (one per token, the same tokenizer for both).

    The student's own ``evaluate``/``stage_metrics`` report validation and test, so its metrics are named as in
    a plain run of its task; ``test`` and ``predict`` are the student's (a CausalLM student's test scores no
    generated responses). The student is this task's main network (``networks``): its checkpoint
    offers the student's network to later runs, and ``tasks.checkpoints.load_task`` turns it into the
    student alone, a plain Classification or CausalLM.

    Args:
        student: the task to train, e.g. ``tasks.Classification`` with a small backbone; its own
            optimizer arguments are not used: this task's ``optimizer`` and ``schedule`` train it.
        teacher: a task of the same kind; or ``teacher_ckpt``, a checkpoint of this platform
            (rebuilt from its own hyperparameters). Frozen and in eval mode throughout.
        alpha: weight of the distillation term; 1 - alpha goes to the hard labels.
        temperature: softens both distributions; the KL is scaled by T^2 to keep its gradients' size.
        targets: ``soft``, the loss above; ``hard``, pseudo-labelling: cross-entropy alone, against the
            teacher's most likely class where an example has no label and its own label where it has
            one (no KL, so ``alpha`` and ``temperature`` take no part). It separates what the teacher's
            soft targets add from what the extra data it labels adds.
        **kwargs: ``optimizer``, ``schedule``, ``compile`` (``tasks.base.Task``; each of student and
            teacher compiles as its own ``compile`` says).
    """

    networks = ("student", "teacher")

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        teacher_ckpt: str | None = None,
        alpha: float = 0.5,
        temperature: float = 2.0,
        targets: str = "soft",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 <= alpha <= 1 or temperature <= 0:
            raise ValueError(f"alpha={alpha}, temperature={temperature}: expected 0 <= alpha <= 1 and temperature > 0")
        if targets not in TARGETS:
            raise ValueError(f"Distillation targets={targets!r}: expected one of {', '.join(TARGETS)}")
        if teacher_ckpt:  # recorded as a config too, so that a resume rebuilds it without the file
            teacher = load_task(teacher_ckpt)
            self.hparams["teacher"] = {"class_path": f"{type(teacher).__module__}.{type(teacher).__name__}",
                                       "init_args": {k: v for k, v in teacher.hparams.items() if not k.startswith("_")}}  # fmt: skip
        if teacher is None:
            raise ValueError("Distillation: no teacher; expected model.teacher_ckpt (a checkpoint) or model.teacher (a task config)")
        if type(teacher) is not type(student):
            raise ValueError(f"teacher is a {type(teacher).__name__} and student a {type(student).__name__}: expected tasks of one kind")
        if teacher.num_outputs != student.num_outputs:
            raise ValueError(f"teacher predicts {teacher.num_outputs} outputs and the student {student.num_outputs}: expected one set of outputs (classes or vocabulary) for both")
        self.student, self.teacher = student, teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # no dropout in the teacher's targets
        return self

    def use_data(self, info: DataInfo) -> None:
        for task in (self.student, self.teacher):
            task.use_data(info)
        self.data = info

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        logits, targets = self.student.logits_and_targets(batch)
        with torch.no_grad():
            teacher_logits, _ = self.teacher.logits_and_targets(batch)
        if self.hparams.targets == "hard":
            loss = F.cross_entropy(logits.float(), targets.where(targets != UNLABELED, teacher_logits.argmax(-1)), ignore_index=IGNORE)
            self.log("train/loss", loss, prog_bar=True)
            return loss
        loss, kl, ce = distillation_loss(logits, teacher_logits, targets, self.hparams.alpha, self.hparams.temperature)
        self.log_dict({"train/loss": loss, "train/kl": kl, "train/ce": ce}, prog_bar=True)
        return loss

    # -- validation, test and predict: the student's, as a plain run of its task would -----------
    def score(self, batch, batch_idx: int, stage: str) -> None:
        self.student.evaluate(*self.student.logits_and_targets(batch), stage)

    def stage_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        return self.student.stage_metrics(stage)

    def figures(self) -> dict[str, torch.Tensor]:
        return self.student.figures()

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.stage_metrics("val"), prog_bar=True)

    @property
    def prediction_files(self) -> tuple[str, ...]:
        return self.student.prediction_files

    def predict_step(self, batch, batch_idx: int) -> dict:
        return self.student.predict_step(batch, batch_idx)
