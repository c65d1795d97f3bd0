from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiLabelLoss"]


class MultiLabelLoss(nn.Module):
    """Binary cross-entropy with logits for multi-label targets, with per-class positive weights, an optional focal
    term, and targets that may be unknown.

    For logit ``x``, target ``y`` in {0, 1}, ``p = sigmoid(x)``, positive weight ``w`` and focal exponent ``gamma``:

        l = -(w * y * (1 - p)^gamma * log(p) + (1 - y) * p^gamma * log(1 - p))

    ``gamma = 0`` is plain (weighted) BCE; ``gamma > 0`` is the sigmoid focal loss of Lin et al., "Focal Loss for
    Dense Object Detection", ICCV 2017. Entries whose target equals ``ignore_value`` (e.g. -1 for labels a dataset
    does not annotate, or CheXpert's uncertain labels under the "ignore" policy) contribute nothing; the loss is the
    mean over the known entries (0 if there are none).

    Args:
        pos_weight: one weight per class for positive targets (e.g. negatives / positives), or None.
        gamma: focal exponent, >= 0.
        ignore_value: target value marking an unknown entry.

    Example::

        loss = MultiLabelLoss(pos_weight=[2.0] * 14)
        loss(torch.randn(4, 14), torch.randint(0, 2, (4, 14)).float())
    """

    def __init__(
        self, pos_weight: Sequence[float] | None = None, gamma: float = 0.0, ignore_value: float = -1.0
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float)
        )
        self.gamma = float(gamma)
        self.ignore_value = float(ignore_value)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: (B, C) raw scores.
            target: (B, C) with values 0, 1 or ``ignore_value``.

        Returns:
            scalar loss.
        """
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
        if self.pos_weight is not None and self.pos_weight.numel() != logits.shape[1]:
            raise ValueError(f"pos_weight has {self.pos_weight.numel()} entries for {logits.shape[1]} classes")
        target = target.to(logits.dtype)
        known = target != self.ignore_value
        y = torch.where(known, target, torch.zeros_like(target))
        log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
        pos_term, neg_term = y * log_p, (1 - y) * log_not_p
        if self.gamma > 0:
            p = torch.sigmoid(logits)
            pos_term = pos_term * (1 - p).pow(self.gamma)
            neg_term = neg_term * p.pow(self.gamma)
        if self.pos_weight is not None:
            pos_term = pos_term * self.pos_weight.to(logits.dtype)
        loss = -(pos_term + neg_term) * known
        return loss.sum() / known.sum().clamp(min=1)
