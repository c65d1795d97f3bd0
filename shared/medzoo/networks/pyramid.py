"""The parts of :class:`medzoo.networks.hybridmednet.HybridMedNet` between backbone and logits: necks (4 maps to
one width), per-scale or cross-scale attention, fusion of the scales, and the multi-label head.

Shapes: the backbone gives 4 maps ``[B, C_i, h_i, w_i]``; a neck maps them to ``[B, width, h_i, w_i]``; attention
keeps those shapes; :class:`ScaleFusion` gives ``[B, width, h_0, w_0]``; :class:`MultiLabelHead` gives logits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from torch import nn

from .blocks import CBAM, CrossScaleAttention, MultiHeadSelfAttention

__all__ = [
    "ATTENTIONS",
    "NECKS",
    "FPNNeck",
    "MultiLabelHead",
    "PerScale",
    "ProjectNeck",
    "ScaleFusion",
    "create_attention",
    "create_neck",
]

ATTENTIONS = ("none", "cbam", "mhsa", "cross_scale")
NECKS = ("project", "fpn")


class ProjectNeck(nn.Module):
    """Per-scale 1x1 convolution + batch norm + ReLU to one width: 4 x ``[B, C_i, h_i, w_i]`` -> ``[B, width, h_i, w_i]``."""

    def __init__(self, in_channels: Sequence[int], width: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(
            [Convolution(2, c, width, kernel_size=1, act="RELU", norm="BATCH") for c in in_channels]
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [proj(features[i]) for i, proj in enumerate(self.projections)]


class FPNNeck(nn.Module):
    """MONAI's feature pyramid network (lateral 1x1 + top-down sum + 3x3), list in and out, all at ``width``."""

    def __init__(self, in_channels: Sequence[int], width: int) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(2, list(in_channels), width)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        named: dict[str, torch.Tensor] = OrderedDict()
        for i, f in enumerate(features):
            named[str(i)] = f
        return list(self.fpn(named).values())


class PerScale(nn.Module):
    """One module per scale: ``[B, C, h_i, w_i]`` -> same, applied to each map of the list."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(modules)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [block(features[i]) for i, block in enumerate(self.blocks)]


def create_neck(kind: str, in_channels: Sequence[int], width: int) -> nn.Module:
    """``"project"`` (:class:`ProjectNeck`) or ``"fpn"`` (:class:`FPNNeck`) from ``in_channels`` to ``width``."""
    if kind == "project":
        return ProjectNeck(in_channels, width)
    if kind == "fpn":
        return FPNNeck(in_channels, width)
    raise ValueError(f"unknown neck '{kind}'; choose one of {NECKS}")


def create_attention(
    kind: str, width: int, num_scales: int, num_heads: int, kv_size: int, pool_ratios: Sequence[int]
) -> nn.Module:
    """Attention over ``num_scales`` maps of ``width`` channels, one of :data:`ATTENTIONS`; shapes unchanged."""
    if kind == "none":
        return PerScale([nn.Identity() for _ in range(num_scales)])
    if kind == "cbam":
        return PerScale([CBAM(2, width) for _ in range(num_scales)])
    if kind == "mhsa":
        return PerScale([MultiHeadSelfAttention(2, width, num_heads, pool_ratios) for _ in range(num_scales)])
    if kind == "cross_scale":
        return CrossScaleAttention(2, width, num_scales, num_heads, kv_size=kv_size)
    raise ValueError(f"unknown attention '{kind}'; choose one of {ATTENTIONS}")


class ScaleFusion(nn.Module):
    """Fuse a pyramid: resize every scale to the finest, project each (1x1 conv), sum with softmax-normalised
    learned weights (equal at initialisation).

    ``num_scales`` x ``[B, width, h_i, w_i]`` -> ``[B, width, h_0, w_0]``.
    """

    def __init__(self, width: int, num_scales: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList([nn.Conv2d(width, width, 1) for _ in range(num_scales)])
        self.scale_logits = nn.Parameter(torch.zeros(num_scales))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        weights = torch.softmax(self.scale_logits, dim=0)
        fused = torch.zeros_like(features[0])
        for i, proj in enumerate(self.projections):
            resized = (
                features[i] if i == 0 else F.interpolate(features[i], size=size, mode="bilinear", align_corners=False)
            )
            fused = fused + weights[i] * proj(resized)
        return fused


def _mlp(in_features: int, hidden: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_features)
    )


class MultiLabelHead(nn.Module):
    """Average + max pooling, batch norm of the pooled ``[B, 2C]`` features, then an MLP to ``num_classes`` logits;
    hierarchical when ``num_coarse > 0``.

    Flat: ``[B, C, H, W]`` -> ``[B, num_classes]``. Hierarchical: a coarse MLP gives ``[B, num_coarse]`` logits and
    the fine MLP reads the pooled features concatenated with them; ``forward`` returns ``(coarse, fine)`` logits
    (coarse is ``[B, 0]`` for a flat head).

    The batch norm puts the average- and max-pooled features, whose scales differ, on one footing. Like every batch
    norm it needs at least 2 images per training batch (the bundles' training loaders drop a last batch of 1).
    """

    def __init__(
        self, channels: int, num_classes: int, hidden: int = 512, dropout: float = 0.2, num_coarse: int = 0
    ) -> None:
        super().__init__()
        self.num_coarse = num_coarse
        self.norm = nn.BatchNorm1d(2 * channels)
        self.coarse = _mlp(2 * channels, hidden, num_coarse, dropout) if num_coarse > 0 else None
        self.fine = _mlp(2 * channels + num_coarse, hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.norm(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))
        if self.coarse is None:
            return pooled.new_zeros(pooled.shape[0], 0), self.fine(pooled)
        coarse = self.coarse(pooled)
        return coarse, self.fine(torch.cat([pooled, coarse], dim=1))
