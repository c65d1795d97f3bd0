"""Quantities of a 2D displacement field, and the frozen motion network that feeds the MI segmentation network.

A displacement field (DDF) here is (B, 2, H, W) in pixels, channel 0 along H (rows, "y") and channel 1 along W
(columns, "x"), as :class:`monai.networks.blocks.Warp` reads it: the warped image is ``m(p + u(p))``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from medzoo.fileio import atomic_path
from medzoo.weights import load_network_weights

__all__ = [
    "MotionFeatures",
    "displacement_gradients",
    "folding_fraction",
    "jacobian_determinant",
    "load_frozen",
    "strain_magnitude",
    "write_init_weights",
]


def displacement_gradients(ddf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(du_y/dy, du_y/dx, du_x/dy, du_x/dx)``, each (B, H, W), by central differences (one-sided at the border)."""
    if ddf.ndim != 4 or ddf.shape[1] != 2:
        raise ValueError(f"expected a 2D displacement field (B, 2, H, W), got {tuple(ddf.shape)}")
    duy_dy, duy_dx = torch.gradient(ddf[:, 0], dim=(1, 2))
    dux_dy, dux_dx = torch.gradient(ddf[:, 1], dim=(1, 2))
    return duy_dy, duy_dx, dux_dy, dux_dx


def jacobian_determinant(ddf: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``p -> p + u(p)``: (B, H, W); <= 0 where the mapping folds."""
    duy_dy, duy_dx, dux_dy, dux_dx = displacement_gradients(ddf)
    return (1 + duy_dy) * (1 + dux_dx) - duy_dx * dux_dy


def folding_fraction(ddf: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels whose Jacobian determinant is <= 0, per item: (B,)."""
    return (jacobian_determinant(ddf) <= 0).float().flatten(1).mean(1)


def strain_magnitude(ddf: torch.Tensor) -> torch.Tensor:
    """``sqrt(du/dx^2 + du/dy^2 + dv/dx^2 + dv/dy^2)``: the Frobenius norm of the displacement gradient, (B, 1, H, W)."""
    grads = torch.stack(displacement_gradients(ddf), dim=1)
    return grads.pow(2).sum(1, keepdim=True).sqrt()


def load_frozen(network: nn.Module, checkpoint: str | os.PathLike) -> nn.Module:
    """Load ``checkpoint`` into ``network`` strictly (through :mod:`medzoo.weights`), freeze it and set eval mode.

    Raises:
        FileNotFoundError: no file at ``checkpoint``.
        ValueError: the checkpoint's keys or shapes do not fit ``network`` (the message names the file).
    """
    load_network_weights(network, checkpoint)
    for p in network.parameters():
        p.requires_grad_(False)
    return network.eval()


class MotionFeatures(nn.Module):
    """The MI segmentation input computed from cine frames by a frozen motion network.

    (B, 2, H, W) [ED, ES] in [0, 1] -> (B, 4, H, W) [ED, flow x, flow y, strain magnitude], where the flow is the
    motion network's ED -> ES displacement (pixels) and the strain is :func:`strain_magnitude` of it. H and W must
    suit the motion network (multiples of 8 for the bundle's LocalNet).

    Args:
        motion_network: predicts (B, 2, H, W) displacement from (B, 2, H, W) frames; used frozen, in eval mode
            (see :func:`load_frozen`).
    """

    in_channels = 2  # [ED, ES]

    def __init__(self, motion_network: nn.Module) -> None:
        super().__init__()
        self.motion_network = motion_network

    def train(self, mode: bool = True) -> MotionFeatures:
        """The motion network stays in eval mode: it is frozen."""
        super().train(mode)
        self.motion_network.eval()
        return self

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1] != 2:
            raise ValueError(f"expected [ED, ES] frames (B, 2, H, W), got {tuple(frames.shape)}")
        ddf = self.motion_network(frames)
        return torch.cat([frames[:, :1], ddf[:, 1:2], ddf[:, :1], strain_magnitude(ddf)], dim=1)


def write_init_weights(network: nn.Module, path: str | os.PathLike, seed: int = 0) -> str:
    """Write deterministic, **untrained** weights of ``network`` (re-initialised from ``seed``) as a state dict.

    For plumbing runs only (the tests' ``quick.json`` of the MI bundle); a trained motion network comes from the
    motion bundle's ``train.json``.
    """
    torch.manual_seed(seed)
    for module in network.modules():
        if hasattr(module, "reset_parameters") and module is not network:
            module.reset_parameters()
    with atomic_path(path) as tmp:  # several processes (torchrun) may write it at once
        torch.save(network.state_dict(), tmp)
    return str(path)
