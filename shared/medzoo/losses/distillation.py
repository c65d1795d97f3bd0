from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DistillationLoss"]


class DistillationLoss(nn.Module):
    """Knowledge-distillation loss: temperature-softened teacher targets plus the ordinary task loss.

    With student logits ``z_s``, teacher logits ``z_t``, temperature ``T``, weight ``alpha`` and task loss ``L_task``:

    - ``mode="multilabel"`` (independent sigmoids, e.g. the 14 chest X-ray findings)::

        L_kd = T^2 * mean( BCE(sigmoid(z_s / T), sigmoid(z_t / T)) )

    - ``mode="multiclass"`` (one softmax over classes)::

        L_kd = T^2 * mean_batch( KL(softmax(z_t / T) || softmax(z_s / T)) )

    and ``L = alpha * L_kd + (1 - alpha) * L_task(z_s, target)``. The ``T^2`` factor keeps the soft-target
    gradients on the scale of the hard-target ones (Hinton et al., "Distilling the Knowledge in a Neural Network",
    2015).

    Args:
        task_loss: loss on the hard targets (e.g. ``medzoo.losses.MultiLabelLoss()``), called as ``task_loss(z_s, y)``.
        temperature: ``T > 0``.
        alpha: weight of the distillation term, in [0, 1].
        mode: ``"multilabel"`` or ``"multiclass"``.

    Example::

        kd = DistillationLoss(MultiLabelLoss(), temperature=4.0, alpha=0.7)
        kd(student_logits, teacher_logits, labels)
    """

    def __init__(
        self, task_loss: nn.Module, temperature: float = 4.0, alpha: float = 0.5, mode: str = "multilabel"
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if mode not in ("multilabel", "multiclass"):
            raise ValueError(f"mode must be 'multilabel' or 'multiclass', got '{mode}'")
        self.task_loss, self.temperature, self.alpha, self.mode = task_loss, float(temperature), float(alpha), mode

    def soft_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``L_kd`` for logits ``[B, K]`` (the teacher is not differentiated)."""
        t = self.temperature
        teacher = teacher.detach()
        if self.mode == "multilabel":
            return t * t * F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t))
        return (
            t
            * t
            * F.kl_div(
                F.log_softmax(student / t, dim=1),
                F.log_softmax(teacher / t, dim=1),
                reduction="batchmean",
                log_target=True,
            )
        )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Student and teacher logits ``[B, K]``, targets as ``task_loss`` expects them -> scalar."""
        if student.shape != teacher.shape:
            raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ")
        return self.alpha * self.soft_loss(student, teacher) + (1 - self.alpha) * self.task_loss(student, target)
