from __future__ import annotations

import torch
from monai.losses import (
    BendingEnergyLoss,
    DiffusionLoss,
    LocalNormalizedCrossCorrelationLoss,
)
from monai.networks.blocks import Warp
from torch import nn

__all__ = ["PhotometricSmoothnessLoss"]


class PhotometricSmoothnessLoss(nn.Module):
    """Unsupervised motion / registration loss: photometric error of the warped moving image plus a smoothness term.

    For a dense displacement field ``u`` (in pixels, channel ``i`` along spatial axis ``i``), moving image ``m`` and
    fixed image ``f``, with ``m_u(x) = m(x + u(x))`` (bilinear, border padding, :class:`monai.networks.blocks.Warp`):

        L = photometric_weight * P(m_u, f) + smoothness_weight * S(u)

    - ``P`` = ``"l1"``: mean over pixels of ``|m_u - f|``; ``"lncc"``: MONAI
      :class:`~monai.losses.LocalNormalizedCrossCorrelationLoss` (``-LNCC`` in a ``kernel_size`` window), robust to
      local intensity changes;
    - ``S`` = ``"diffusion"``: MONAI :class:`~monai.losses.DiffusionLoss`, the mean over pixels and components of
      ``sum_d (du_c / dx_d)^2`` (central differences, interior pixels); ``"bending"``: MONAI
      :class:`~monai.losses.BendingEnergyLoss`, the mean of the squared second derivatives.

    In the cine motion bundle ``m`` is end-diastole and ``f`` end-systole (Jaderberg et al., "Spatial Transformer
    Networks", NeurIPS 2015, for the differentiable warp; Yu et al., "Back to Basics: Unsupervised Learning of
    Optical Flow via Brightness Constancy and Motion Smoothness", ECCV 2016 workshops, for the loss).

    Args:
        photometric: ``"l1"`` or ``"lncc"``.
        smoothness: ``"diffusion"`` or ``"bending"``.
        photometric_weight: weight of ``P`` (>= 0).
        smoothness_weight: weight of ``S`` (>= 0).
        spatial_dims: 2 or 3.
        kernel_size: LNCC window (odd).

    Example::

        loss = PhotometricSmoothnessLoss(smoothness_weight=0.05)
        ddf = torch.zeros(2, 2, 64, 64, requires_grad=True)
        loss(ddf, fixed=torch.rand(2, 1, 64, 64), moving=torch.rand(2, 1, 64, 64)).backward()
    """

    def __init__(
        self,
        photometric: str = "l1",
        smoothness: str = "diffusion",
        photometric_weight: float = 1.0,
        smoothness_weight: float = 0.05,
        spatial_dims: int = 2,
        kernel_size: int = 7,
    ) -> None:
        super().__init__()
        if photometric not in ("l1", "lncc"):
            raise ValueError(f"photometric must be 'l1' or 'lncc', got {photometric!r}")
        if smoothness not in ("diffusion", "bending"):
            raise ValueError(f"smoothness must be 'diffusion' or 'bending', got {smoothness!r}")
        if photometric_weight < 0 or smoothness_weight < 0:
            raise ValueError(f"weights must be >= 0, got {photometric_weight}, {smoothness_weight}")
        self.photometric = photometric
        self.photometric_weight = float(photometric_weight)
        self.smoothness_weight = float(smoothness_weight)
        self.warp = Warp(mode="bilinear", padding_mode="border")
        self.lncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=spatial_dims, kernel_size=kernel_size)
        self.smooth = DiffusionLoss() if smoothness == "diffusion" else BendingEnergyLoss()

    def photometric_error(self, ddf: torch.Tensor, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """``P(m_u, f)`` alone (scalar)."""
        warped = self.warp(moving, ddf)
        if self.photometric == "l1":
            return (warped - fixed).abs().mean()
        return self.lncc(warped, fixed)

    def forward(self, ddf: torch.Tensor, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """
        Args:
            ddf: (B, spatial_dims, H, W[, D]) displacement in pixels.
            fixed: (B, C, H, W[, D]) target image.
            moving: (B, C, H, W[, D]) image warped onto ``fixed``.

        Returns:
            scalar loss.
        """
        if fixed.shape != moving.shape or ddf.shape[2:] != fixed.shape[2:] or ddf.shape[0] != fixed.shape[0]:
            raise ValueError(
                f"ddf {tuple(ddf.shape)}, fixed {tuple(fixed.shape)} and moving {tuple(moving.shape)} must share batch "
                "and spatial size, and fixed/moving their channels"
            )
        loss = self.photometric_weight * self.photometric_error(ddf, fixed, moving)
        if self.smoothness_weight > 0:
            loss = loss + self.smoothness_weight * self.smooth(ddf)
        return loss
