"""A U-Net with the shared layer's attention: CBAM after every convolution block, attention-gated skip connections.

Built from MONAI's :class:`~monai.networks.blocks.UnetBasicBlock` (two conv-norm-act layers) and the zoo's
:class:`~medzoo.networks.blocks.CBAM` (Woo et al., ECCV 2018) and :class:`~medzoo.networks.blocks.AttentionGate`
(Oktay et al., "Attention U-Net", MIDL 2018); either attention can be switched off, giving a plain U-Net of the same
layout for ablations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetBasicBlock
from monai.networks.blocks.dynunet_block import get_conv_layer
from torch import nn

from medzoo.networks.blocks import CBAM, AttentionGate

__all__ = ["AttentionUNet"]


class _EncoderStage(nn.Module):
    """Conv block (stride 2 except at the first level) then CBAM: [B, C_in, *S] -> [B, C_out, *S / stride]."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, stride: int, norm: str, cbam: bool
    ) -> None:
        super().__init__()
        self.conv = UnetBasicBlock(
            spatial_dims, in_channels, out_channels, kernel_size=3, stride=stride, norm_name=norm
        )
        self.attention = CBAM(spatial_dims, out_channels, reduction=min(16, out_channels)) if cbam else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.conv(x))


class _DecoderStage(nn.Module):
    """Upsample the coarser map x2, gate the skip with it, concatenate, conv block, CBAM.

    ``x`` [B, C_coarse, *S/2], ``skip`` [B, C_skip, *S] -> [B, C_skip, *S].
    """

    def __init__(
        self, spatial_dims: int, coarse_channels: int, skip_channels: int, norm: str, cbam: bool, gate: bool
    ) -> None:
        super().__init__()
        self.up = get_conv_layer(
            spatial_dims, coarse_channels, skip_channels, kernel_size=2, stride=2, conv_only=True, is_transposed=True
        )
        self.gate = AttentionGate(spatial_dims, skip_channels, coarse_channels) if gate else None
        self.conv = UnetBasicBlock(
            spatial_dims, 2 * skip_channels, skip_channels, kernel_size=3, stride=1, norm_name=norm
        )
        self.attention = CBAM(spatial_dims, skip_channels, reduction=min(16, skip_channels)) if cbam else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.attention(self.conv(torch.cat([self.up(x), skip], dim=1)))


class AttentionUNet(nn.Module):
    """U-Net with CBAM blocks and attention-gated skips, for 2D or 3D.

    Input [B, in_channels, *S] with every spatial size divisible by ``2 ** (len(channels) - 1)``; output logits
    [B, out_channels, *S].

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: classes (background included).
        channels: feature width per level, finest first, e.g. ``(16, 32, 64, 128, 256)``.
        cbam: CBAM (channel then spatial attention) after every encoder and decoder block.
        attention_gates: gate each skip connection with the coarser decoder level before concatenation.
        norm: MONAI norm name of the conv blocks (``"instance"``, ``"batch"``).

    Example::

        net = AttentionUNet(spatial_dims=3, in_channels=1, out_channels=4, channels=(8, 16, 32))
        net(torch.zeros(1, 1, 32, 32, 32)).shape  # torch.Size([1, 4, 32, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        cbam: bool = True,
        attention_gates: bool = True,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {list(channels)}")
        widths = [in_channels, *channels]
        self.encoder = nn.ModuleList(
            _EncoderStage(spatial_dims, widths[i], widths[i + 1], stride=1 if i == 0 else 2, norm=norm, cbam=cbam)
            for i in range(len(channels))
        )
        self.decoder = nn.ModuleList(
            _DecoderStage(spatial_dims, channels[i + 1], channels[i], norm=norm, cbam=cbam, gate=attention_gates)
            for i in reversed(range(len(channels) - 1))
        )
        self.head = get_conv_layer(spatial_dims, channels[0], out_channels, kernel_size=1, conv_only=True, bias=True)
        self.divisor = 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for size in x.shape[2:]:
            if size % self.divisor != 0:
                raise ValueError(f"spatial size {list(x.shape[2:])} must be divisible by {self.divisor}")
        skips: list[torch.Tensor] = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for stage in self.decoder:
            x = stage(x, skips.pop())
        return self.head(x)
