"""The LGE-to-cine registration loss."""

from __future__ import annotations

import torch
from monai.losses import BendingEnergyLoss, DiceLoss, GlobalMutualInformationLoss
from monai.networks.blocks import Warp
from torch import nn

__all__ = ["MultiModalRegistrationLoss"]


class MultiModalRegistrationLoss(nn.Module):
    """Loss for registering an LGE slice (moving) onto a cine frame (fixed), whose contrasts differ.

        L = image_weight * (-MI(m_u, f)) + mask_weight * Dice(mask_m_u, mask_f) + smoothness_weight * BE(u)

    with ``m_u(p) = m(p + u(p))`` (bilinear warp), MI the global mutual information of MONAI's
    :class:`~monai.losses.GlobalMutualInformationLoss` (Parzen windows), Dice MONAI's soft
    :class:`~monai.losses.DiceLoss` between the warped moving myocardium mask and the fixed one, and BE the bending
    energy (:class:`~monai.losses.BendingEnergyLoss`).

    Why these terms: intensities do not correspond between LGE and cine (the myocardium is nulled in LGE and grey in
    cine; scar is bright in LGE and grey in cine), so a same-contrast similarity such as NCC would pull scar away
    from myocardium. Mutual information only asks that intensities be predictable from each other. The myocardium
    masks, which the cardiac layout has for both images, supervise exactly what the bundle is judged on (myocardium
    overlap) and only at training time: inference needs the images alone. Bending energy keeps the field smooth.

    Args:
        image_weight, mask_weight, smoothness_weight: term weights (>= 0).
        num_bins: histogram bins of the mutual information.
    """

    def __init__(
        self, image_weight: float = 1.0, mask_weight: float = 1.0, smoothness_weight: float = 1.0, num_bins: int = 23
    ) -> None:
        super().__init__()
        if min(image_weight, mask_weight, smoothness_weight) < 0:
            raise ValueError("weights must be >= 0")
        self.image_weight, self.mask_weight, self.smoothness_weight = image_weight, mask_weight, smoothness_weight
        self.warp = Warp(mode="bilinear", padding_mode="border")
        self.mutual_information = GlobalMutualInformationLoss(num_bins=num_bins)
        self.dice = DiceLoss(smooth_nr=1e-5, smooth_dr=1e-5)
        self.bending = BendingEnergyLoss()

    def forward(
        self,
        ddf: torch.Tensor,
        fixed: torch.Tensor,
        moving: torch.Tensor,
        fixed_mask: torch.Tensor,
        moving_mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            ddf: (B, 2, H, W) displacement in pixels.
            fixed, moving: (B, 1, H, W) images in [0, 1].
            fixed_mask, moving_mask: (B, 1, H, W) myocardium masks in {0, 1}.
        """
        loss = self.smoothness_weight * self.bending(ddf)
        if self.image_weight > 0:
            loss = loss + self.image_weight * self.mutual_information(self.warp(moving, ddf), fixed)
        if self.mask_weight > 0:
            loss = loss + self.mask_weight * self.dice(self.warp(moving_mask, ddf), fixed_mask)
        return loss
