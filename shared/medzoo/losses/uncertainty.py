from __future__ import annotations

import torch
from torch import nn

__all__ = ["HeteroscedasticLoss"]


class HeteroscedasticLoss(nn.Module):
    """Uncertainty-aware (heteroscedastic) loss: the network predicts a value and the log-variance ``s`` of its error.

    For prediction ``y_hat``, target ``y`` and predicted log-variance ``s`` (same shape):

        l = 0.5 * exp(-s) * err(y_hat, y) + 0.5 * s,    err = (y_hat - y)^2  (or |y_hat - y| with ``error="l1"``)

    Kendall and Gal, "What Uncertainties Do We Need in Bayesian Deep Learning for Computer Vision?", NeurIPS 2017.
    Positions where the network is unsure learn a large ``s``, which down-weights their error at the price of the
    ``0.5 * s`` term. Predicting ``s`` (not the variance) keeps the loss finite and the variance positive.

    Args:
        error: ``"l2"`` or ``"l1"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example::

        loss = HeteroscedasticLoss()
        loss(torch.randn(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), torch.randn(2, 1, 8, 8))
    """

    def __init__(self, error: str = "l2", reduction: str = "mean") -> None:
        super().__init__()
        if error not in ("l1", "l2"):
            raise ValueError(f"error must be 'l1' or 'l2', got '{error}'")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got '{reduction}'")
        self.error, self.reduction = error, reduction

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
        """All three ``[B, C, *S]`` (or any equal shapes); returns a scalar, or the per-element loss for ``"none"``."""
        if not prediction.shape == target.shape == log_variance.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)}, target {tuple(target.shape)} and log_variance "
                f"{tuple(log_variance.shape)} must have the same shape"
            )
        diff = prediction - target
        err = diff.square() if self.error == "l2" else diff.abs()
        loss = 0.5 * torch.exp(-log_variance) * err + 0.5 * log_variance
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss
