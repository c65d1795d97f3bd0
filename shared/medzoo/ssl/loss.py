"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR, on a batch holding both views."""

from __future__ import annotations

import torch
from monai.losses import ContrastiveLoss

__all__ = ["NTXentLoss"]


class NTXentLoss(torch.nn.Module):
    """NT-Xent loss (Chen et al., SimCLR, ICML 2020) for projections of two views stacked in one batch.

    For ``z`` of shape ``(2B, D)`` whose rows ``i`` and ``i + B`` are the two views of image ``i``, with cosine
    similarity ``s`` and temperature ``t``, the loss is the mean over all ``2B`` rows ``k`` of
    ``-log(exp(s(k, pos(k)) / t) / sum_{m != k} exp(s(k, m) / t))``. The computation is MONAI's
    :class:`~monai.losses.ContrastiveLoss`, which takes the two views as separate ``(B, D)`` tensors; this class only
    splits the stacked batch (the layout :class:`~medzoo.ssl.model.TwoViewBatch` feeds the network) and checks it.

    Args:
        temperature: ``t`` above; SimCLR uses 0.1 for large batches (0.5 in its CIFAR experiments).

    Example::

        loss = NTXentLoss(temperature=0.1)
        loss(torch.randn(8, 128))  # views (4, 128) + (4, 128); the target argument is ignored
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.contrastive = ContrastiveLoss(temperature=temperature)

    def forward(self, projections: torch.Tensor, target: object = None) -> torch.Tensor:
        """``projections``: ``(2B, D)``, first half view 1, second half view 2. ``target`` is unused (no labels);
        it is accepted because MONAI's trainer calls ``loss(pred, target)``."""
        if projections.ndim != 2 or projections.shape[0] % 2 or projections.shape[0] < 4:
            raise ValueError(
                f"NT-Xent needs (2B, D) projections with B >= 2 images per view, got shape {tuple(projections.shape)}"
            )
        view1, view2 = projections.chunk(2, dim=0)
        return self.contrastive(view1, view2)
