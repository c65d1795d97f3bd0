"""3D networks of the volume bundles that MONAI does not build as such.

:class:`MedicalNetResNet` is MONAI's :class:`~monai.networks.nets.ResNet` with the geometry of MedicalNet's encoder
(Chen et al. 2019, "Med3D: Transfer Learning for 3D Medical Image Analysis", https://arxiv.org/abs/1904.00625): a
7x7x7 stride-2 stem, then max pooling and ``layer1``..``layer4`` where ``layer3`` and ``layer4`` keep the resolution
(stride 1) and dilate their 3x3x3 convolutions by 2 and 4. With these settings a MedicalNet checkpoint's encoder
weights, loaded by :mod:`medzoo.volume.medicalnet`, compute exactly MedicalNet's features.

:func:`swin_unetr` builds MONAI's :class:`~monai.networks.nets.SwinUNETR` after checking the settings it cannot run
with, so that a wrong ``patch_size`` or ``feature_size`` is one line naming the config, not a traceback mid-training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.nets import ResNet, SwinUNETR
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck, get_inplanes
from torch import nn

from ..errors import UserValueError

__all__ = ["RESNET_LAYERS", "SWIN_UNETR_STRIDE", "MedicalNetResNet", "ZeroPadShortcut", "swin_unetr"]

#: Total downsampling of SwinUNETR (patch embedding 2 x four patch mergings 2^4): every input axis must divide by it.
SWIN_UNETR_STRIDE = 32

#: depth -> (block, blocks per layer) of the ResNets MedicalNet publishes.
RESNET_LAYERS: dict[int, tuple[type[nn.Module], list[int]]] = {
    10: (ResNetBlock, [1, 1, 1, 1]),
    18: (ResNetBlock, [2, 2, 2, 2]),
    34: (ResNetBlock, [3, 4, 6, 3]),
    50: (ResNetBottleneck, [3, 4, 6, 3]),
}


class ZeroPadShortcut(nn.Module):
    """Parameter-free ResNet shortcut (type "A"): subsample by ``stride``, then zero-pad the channels.

    [B, C_in, D, H, W] -> [B, out_channels, D/stride, H/stride, W/stride]. Same values as MONAI's type "A" shortcut,
    as a module so the network can be exported to TorchScript.
    """

    def __init__(self, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        pad = torch.zeros(
            x.shape[0],
            self.out_channels - x.shape[1],
            x.shape[2],
            x.shape[3],
            x.shape[4],
            dtype=x.dtype,
            device=x.device,
        )
        return torch.cat([x, pad], dim=1)


def _medicalnet_layer(layer: nn.Sequential, dilation: int) -> None:
    """Turn a MONAI ResNet layer into MedicalNet's: stride 1 everywhere, 3x3x3 convolutions dilated by ``dilation``."""
    for block in layer:
        for module in block.modules():
            if isinstance(module, nn.Conv3d):
                module.stride = (1, 1, 1)
                if module.kernel_size == (3, 3, 3):
                    module.dilation = (dilation,) * 3
                    module.padding = (dilation,) * 3
        if isinstance(block.downsample, ZeroPadShortcut):
            block.downsample.stride = 1


class MedicalNetResNet(ResNet):
    """3D ResNet-10/18/34/50 classifier laid out like MedicalNet's encoder, with a linear head.

    Input [B, C_in, D, H, W]; output logits [B, num_classes]. :meth:`features` returns the encoder output
    [B, 512 * widen_factor * expansion, D/8, H/8, W/8] (the tensor MedicalNet's segmentation head ``conv_seg`` reads).

    Args:
        depth: 10, 18, 34 or 50.
        n_input_channels: image channels (MedicalNet: 1).
        num_classes: outputs of the head.
        shortcut_type: ``"A"`` (parameter-free, MedicalNet's resnet10/18/34 checkpoints) or ``"B"`` (1x1 conv + BN).
        bias_downsample: whether the type "B" 1x1 convolutions have a bias.
        widen_factor: channel multiplier (MedicalNet checkpoints: 1.0; smaller for quick CPU experiments).

    Example::

        net = MedicalNetResNet(depth=18, num_classes=3, shortcut_type="A")
        net(torch.zeros(2, 1, 32, 32, 32)).shape  # torch.Size([2, 3])
    """

    def __init__(
        self,
        depth: int,
        n_input_channels: int = 1,
        num_classes: int = 2,
        shortcut_type: str = "B",
        bias_downsample: bool = False,
        widen_factor: float = 1.0,
    ) -> None:
        if depth not in RESNET_LAYERS:
            raise ValueError(f"depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
        block, layers = RESNET_LAYERS[depth]
        super().__init__(
            block=block,
            layers=layers,
            block_inplanes=get_inplanes(),
            spatial_dims=3,
            n_input_channels=n_input_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type=shortcut_type,
            bias_downsample=bias_downsample,
            num_classes=num_classes,
            widen_factor=widen_factor,
        )
        self.depth = depth
        if shortcut_type == "A":
            for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
                for block_module in layer:
                    if block_module.downsample is not None:
                        block_module.downsample = ZeroPadShortcut(
                            block_module.downsample.keywords["planes"], block_module.downsample.keywords["stride"]
                        )
        _medicalnet_layer(self.layer3, dilation=2)
        _medicalnet_layer(self.layer4, dilation=4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output [B, 512 * widen_factor * expansion, D/8, H/8, W/8] for input [B, C_in, D, H, W]."""
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def swin_unetr(
    patch_size: Sequence[int],
    in_channels: int,
    out_channels: int,
    feature_size: int = 12,
    norm_name: str = "instance",
    config: str = "configs/swin_unetr.json",
    **kwargs,
) -> SwinUNETR:
    """MONAI's 3D ``SwinUNETR`` for windows of ``patch_size`` voxels: [B, in_channels, *patch_size] ->
    [B, out_channels, *patch_size] logits; ``kwargs`` go to ``SwinUNETR`` unchanged.

    Raises :class:`~medzoo.errors.UserValueError` (naming ``config``) when an axis of ``patch_size`` does not divide by
    :data:`SWIN_UNETR_STRIDE`, when ``feature_size`` is not a positive multiple of 12 (the heads of the four stages, 3,
    6, 12 and 24, must divide the channels), or, with instance norm, when the bottleneck (``patch_size`` / 32) would
    be a single voxel, over which instance norm cannot take statistics.
    """
    patch_size = [int(s) for s in patch_size]
    if len(patch_size) != 3 or any(s <= 0 or s % SWIN_UNETR_STRIDE for s in patch_size):
        raise UserValueError(
            f"SwinUNETR needs every axis of patch_size divisible by {SWIN_UNETR_STRIDE}, got {patch_size} "
            f"({config}); set --patch_size to e.g. [96, 96, 64]"
        )
    if feature_size <= 0 or feature_size % 12:
        raise UserValueError(
            f"SwinUNETR needs feature_size a positive multiple of 12, got {feature_size} ({config}); "
            "set --swin_feature_size to 12, 24, 36 or 48"
        )
    if norm_name == "instance" and math.prod(s // SWIN_UNETR_STRIDE for s in patch_size) < 2:
        raise UserValueError(
            f"SwinUNETR with instance norm needs a bottleneck of more than one voxel (patch_size / "
            f"{SWIN_UNETR_STRIDE}), got patch_size {patch_size} ({config}); make one axis of --patch_size 64 or more"
        )
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        feature_size=feature_size,
        norm_name=norm_name,
        spatial_dims=3,
        **kwargs,
    )
