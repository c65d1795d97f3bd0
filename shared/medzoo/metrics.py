"""Metrics the bundles need beyond MONAI's."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.metrics import CumulativeIterationMetric, compute_roc_auc

__all__ = ["MultiLabelAUROC"]


class MultiLabelAUROC(CumulativeIterationMetric):
    """Per-class and mean area under the ROC curve for multi-label outputs, with unknown targets left out.

    Like :class:`monai.metrics.ROCAUCMetric` (and synchronised across ranks the same way), but entries whose target
    equals ``ignore_value`` are excluded class by class, and a class whose known targets are all one value is
    reported as NaN and left out of the mean. After :meth:`aggregate`, :attr:`per_class` maps each class name to its
    AUROC.

    Args:
        labels: class names, in output order.
        ignore_value: target value marking an unknown entry.

    Example::

        metric = MultiLabelAUROC(labels=["a", "b"])
        metric(torch.tensor([[0.9, 0.2], [0.1, 0.7]]), torch.tensor([[1, 0], [0, 1]]))
        metric.aggregate()  # tensor(1.)
    """

    def __init__(self, labels: Sequence[str], ignore_value: float = -1.0) -> None:
        super().__init__()
        self.labels = list(labels)
        self.ignore_value = ignore_value
        self.per_class: dict[str, float] = {}

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y_pred`` and ``y``: (B, C) scores and targets; they are buffered until :meth:`aggregate`."""
        if y_pred.shape != y.shape or y_pred.shape[-1] != len(self.labels):
            raise ValueError(
                f"expected (B, {len(self.labels)}) predictions and targets, got {tuple(y_pred.shape)}, {tuple(y.shape)}"
            )
        return y_pred.detach().float(), y.detach().float()

    def aggregate(self) -> torch.Tensor:
        """Return the mean AUROC over the classes where it is defined (NaN if there is none)."""
        y_pred, y = self.get_buffer()
        self.per_class = {}
        for c, name in enumerate(self.labels):
            known = y[:, c] != self.ignore_value
            targets, scores = y[known, c], y_pred[known, c]
            defined = bool((targets == 1).any() and (targets == 0).any())
            self.per_class[name] = float(compute_roc_auc(scores, targets)) if defined else math.nan
        values = [v for v in self.per_class.values() if not math.isnan(v)]
        return torch.tensor(sum(values) / len(values) if values else math.nan)
