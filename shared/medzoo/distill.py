"""Knowledge distillation inside a stock MONAI ``SupervisedTrainer``.

The trainer computes the student's logits, fires ``IterationEvents.FORWARD_COMPLETED``, then calls its loss
function as ``loss(pred, label)``. :class:`TeacherForward` (a handler on that event) runs the frozen teacher on the
same batch and hands its logits to :class:`TeacherGuidedLoss`, which applies a
:class:`medzoo.losses.DistillationLoss`. In a config::

    "teacher": "$medzoo.distill.frozen_teacher(@teacher_def, @teacher_ckpt).to(@device)",
    "loss": {"_target_": "medzoo.distill.TeacherGuidedLoss", "distillation": "@distillation_loss"},
    "train#handlers": [..., {"_target_": "medzoo.distill.TeacherForward", "teacher": "@teacher", "loss": "@loss"}]
"""

from __future__ import annotations

import os

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys
from torch import nn

from .errors import UserError
from .losses import DistillationLoss

__all__ = ["TeacherForward", "TeacherGuidedLoss", "frozen_teacher"]


def frozen_teacher(network: nn.Module, checkpoint: str | os.PathLike, sha256: str | None = None) -> nn.Module:
    """``network`` with the weights in ``checkpoint`` (strict: every key must match), in eval mode, no gradients.

    Raises:
        medzoo.errors.UserFileNotFoundError: no file at ``checkpoint`` (the message says to train the teacher bundle).
        medzoo.errors.UserValueError: the weights do not fit ``network``, or the file is not usable weights.
    """
    from .errors import UserFileNotFoundError
    from .weights import load_network_weights

    if not os.path.isfile(checkpoint):
        raise UserFileNotFoundError(
            f"teacher weights not found: {checkpoint}; train the teacher bundle first, or pass its weights with "
            "--teacher_ckpt"
        )
    try:
        load_network_weights(network, checkpoint, sha256=sha256)
    except UserError as e:
        raise type(e)(f"teacher weights: {e}") from e
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


class TeacherGuidedLoss(nn.Module):
    """``loss(student_logits [B, K], label)`` = ``distillation(student_logits, teacher_logits, label)``, with the
    teacher logits of the current batch set by :class:`TeacherForward` (and consumed, so a stale batch is never
    reused)."""

    def __init__(self, distillation: DistillationLoss) -> None:
        super().__init__()
        self.distillation = distillation
        self.teacher_logits: torch.Tensor | None = None

    def forward(self, student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.teacher_logits is None:
            raise RuntimeError("no teacher logits for this batch: attach medzoo.distill.TeacherForward to the trainer")
        teacher_logits, self.teacher_logits = self.teacher_logits, None
        return self.distillation(student_logits, teacher_logits, target)


class TeacherForward:
    """Trainer handler: after the student's forward pass, run ``teacher`` on the batch's images for ``loss``."""

    def __init__(self, teacher: nn.Module, loss: TeacherGuidedLoss) -> None:
        self.teacher, self.loss = teacher, loss

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        with torch.no_grad():
            self.loss.teacher_logits = self.teacher(engine.state.output[CommonKeys.IMAGE])
