"""Attention blocks for 2D and 3D feature maps, generic over ``spatial_dims`` like MONAI's own blocks.

Shapes use ``*S`` for the spatial dimensions: ``(H, W)`` when ``spatial_dims=2``, ``(D, H, W)`` when it is 3.

- :class:`ChannelAttention`, :class:`SpatialAttention` and :class:`CBAM` (Woo et al., "CBAM: Convolutional Block
  Attention Module", ECCV 2018): ``[B, C, *S] -> [B, C, *S]``.
- :class:`AttentionGate` (Oktay et al., "Attention U-Net", MIDL 2018): a skip connection ``[B, Cs, *S]`` weighted by
  a gating signal from a coarser level ``[B, Cg, *S']``. Unlike ``monai.networks.nets.attentionunet.AttentionBlock``
  it accepts a gate of another resolution and resizes it.
- :class:`MultiHeadSelfAttention`: multi-head self-attention over the positions of one feature map, whose keys and
  values come from the map average-pooled at several ratios (multi-scale keys), with a residual.
- :class:`CrossScaleAttention`: for a pyramid of same-width feature maps, each scale queries the other scales
  resized to its own resolution, with multi-head attention and a residual.

All blocks are TorchScript-compatible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = [
    "ChannelAttention",
    "SpatialAttention",
    "CBAM",
    "AttentionGate",
    "MultiHeadSelfAttention",
    "CrossScaleAttention",
]


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def _resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Resize ``[B, C, *S]`` to ``[B, C, *size]`` (linear interpolation; a no-op when the size already matches)."""
    if list(x.shape[2:]) == size:
        return x
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, *S] -> [B, prod(S), C]``."""
    return x.flatten(2).transpose(1, 2)


class ChannelAttention(nn.Module):
    """Channel attention: ``x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``, the MLP shared by both poolings.

    Args:
        spatial_dims: 2 or 3.
        channels: ``C``.
        reduction: hidden width of the MLP is ``max(1, C // reduction)``.
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, *S] -> [B, C, *S]``."""
        flat = x.flatten(2)
        weights = torch.sigmoid(self.mlp(flat.mean(-1)) + self.mlp(flat.amax(-1)))  # [B, C]
        return x * weights.reshape(list(weights.shape) + [1] * (x.dim() - 2))


class SpatialAttention(nn.Module):
    """Spatial attention: ``x * sigmoid(conv([mean_c(x), max_c(x)]))`` with one ``kernel_size`` convolution.

    Args:
        spatial_dims: 2 or 3.
        kernel_size: odd size of the convolution over the 2-channel [mean, max] map.
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, *S] -> [B, C, *S]``."""
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional block attention: :class:`ChannelAttention` followed by :class:`SpatialAttention`.

    Example::

        CBAM(spatial_dims=3, channels=32)(torch.randn(2, 32, 8, 16, 16)).shape  # (2, 32, 8, 16, 16)
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(spatial_dims, channels, reduction)
        self.spatial = SpatialAttention(spatial_dims, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, *S] -> [B, C, *S]``."""
        return self.spatial(self.channel(x))


class AttentionGate(nn.Module):
    """Additive attention gate: ``skip * sigmoid(psi(relu(W_s skip + resize(W_g gate))))``.

    Args:
        spatial_dims: 2 or 3.
        skip_channels: ``Cs``, channels of the skip connection being gated.
        gate_channels: ``Cg``, channels of the gating signal (usually the coarser decoder level).
        inter_channels: width of the attention computation; defaults to ``max(1, Cs // 2)``.
    """

    def __init__(
        self, spatial_dims: int, skip_channels: int, gate_channels: int, inter_channels: int | None = None
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        conv = Conv[Conv.CONV, spatial_dims]
        inter = inter_channels or max(1, skip_channels // 2)
        self.skip_proj = conv(skip_channels, inter, 1, bias=False)
        self.gate_proj = conv(gate_channels, inter, 1)
        self.psi = conv(inter, 1, 1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """``skip [B, Cs, *S]``, ``gate [B, Cg, *S']`` -> ``[B, Cs, *S]``."""
        gate = _resize(self.gate_proj(gate), list(skip.shape[2:]))
        alpha = torch.sigmoid(self.psi(F.relu(self.skip_proj(skip) + gate)))
        return skip * alpha


class _PositionalConv(nn.Module):
    """Conditional positional encoding: ``x + depthwise_conv3(x)``, so attention over tokens knows where they are."""

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](channels, channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over the positions of a feature map, with multi-scale keys and values.

    Queries are the ``N = prod(S)`` positions of ``x``; keys and values are the positions of ``x`` average-pooled by
    each ratio in ``pool_ratios`` (ratio 1 keeps full resolution), concatenated, so every position attends to fine
    and coarse context at once. A depthwise convolution adds positional information first. Output:
    ``x + proj(attention)``, the residual keeping the block close to identity at initialisation.

    Cost is ``O(N * sum(N / r^d))`` per head; drop ratio 1 for large maps.

    Args:
        spatial_dims: 2 or 3.
        channels: ``C``, divisible by ``num_heads``.
        num_heads: attention heads.
        pool_ratios: pooling ratios of the keys/values.
        dropout: attention dropout.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_heads: int = 4,
        pool_ratios: Sequence[int] = (1, 2, 4),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if not pool_ratios or min(pool_ratios) < 1:
            raise ValueError(f"pool_ratios must be a non-empty list of integers >= 1, got {pool_ratios}")
        self.pool_ratios = [int(r) for r in pool_ratios]
        self.position = _PositionalConv(spatial_dims, channels)
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, num_heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, *S] -> [B, C, *S]``."""
        x = self.position(x)
        spatial = list(x.shape[2:])
        keys = []
        for ratio in self.pool_ratios:
            size = [max(1, s // ratio) for s in spatial]
            pooled = (
                x
                if ratio == 1
                else (F.adaptive_avg_pool2d(x, size) if len(size) == 2 else F.adaptive_avg_pool3d(x, size))
            )
            keys.append(_tokens(pooled))
        kv = self.norm_kv(torch.cat(keys, dim=1))
        out, _ = self.attention(self.norm_q(_tokens(x)), kv, kv, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class _ScaleQuery(nn.Module):
    """The per-scale part of :class:`CrossScaleAttention`: positional encoding, norms and one multi-head attention."""

    def __init__(self, spatial_dims: int, channels: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.position = _PositionalConv(spatial_dims, channels)
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, num_heads, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``query [B, C, *S]`` (already position-encoded), ``keys [B, M, C]`` -> ``[B, C, *S]``."""
        kv = self.norm_kv(keys)
        out, _ = self.attention(self.norm_q(_tokens(query)), kv, kv, need_weights=False)
        return query + out.transpose(1, 2).reshape(query.shape)


class CrossScaleAttention(nn.Module):
    """Cross-scale attention over a feature pyramid of equal width.

    For scale ``i`` with map ``f_i [B, C, *S_i]``, the other scales ``f_j`` (``j != i``) are resized to ``S_i`` (or, with
    ``kv_size``, to at most ``kv_size`` per side, to bound the cost at fine scales); their positions are the keys and
    values; the positions of ``f_i`` are the queries. Output ``f_i + attention_i`` with one multi-head
    attention per scale.

    Args:
        spatial_dims: 2 or 3.
        channels: ``C`` of every scale (project the backbone's features to one width first), divisible by ``num_heads``.
        num_scales: number of maps in the pyramid, >= 2.
        num_heads: attention heads.
        kv_size: if set, keys/values of each other scale are resized to at most this size per spatial side.
        dropout: attention dropout.

    Example::

        xsa = CrossScaleAttention(spatial_dims=2, channels=64, num_scales=3)
        feats = [torch.randn(2, 64, s, s) for s in (16, 8, 4)]
        [f.shape for f in xsa(feats)]  # same shapes as the input
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_scales: int,
        num_heads: int = 4,
        kv_size: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        if num_scales < 2:
            raise ValueError(f"cross-scale attention needs at least 2 scales, got {num_scales}")
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_scales = num_scales
        self.kv_size = -1 if kv_size is None else int(kv_size)
        self.scales = nn.ModuleList(
            [_ScaleQuery(spatial_dims, channels, num_heads, dropout) for _ in range(num_scales)]
        )

    def _keys(self, features: list[torch.Tensor], i: int) -> torch.Tensor:
        """Tokens of every scale but ``i``, resized to scale ``i`` (at most ``kv_size`` per side): ``[B, M, C]``."""
        size = list(features[i].shape[2:])
        if self.kv_size > 0:
            size = [min(s, self.kv_size) for s in size]
        keys = []
        for j, f in enumerate(features):
            if j != i:
                keys.append(_tokens(_resize(f, size)))
        return torch.cat(keys, dim=1)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """``num_scales`` maps ``[B, C, *S_i]`` -> the same shapes."""
        if len(features) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} feature maps, got {len(features)}")
        positioned: list[torch.Tensor] = []
        for i, scale in enumerate(self.scales):
            positioned.append(scale.position(features[i]))
        outputs: list[torch.Tensor] = []
        for i, scale in enumerate(self.scales):
            outputs.append(scale(positioned[i], self._keys(positioned, i)))
        return outputs
