"""Backbones for :class:`medzoo.networks.hybridmednet.HybridMedNet`: 4 feature maps at strides 4, 8, 16, 32.

:data:`BACKBONES` names the timm backbones (timm's ``create_model`` style: a name and its settings),
:data:`medzoo.networks.vim.VIM_BACKBONES` the Vision Mamba ones (plain PyTorch, :mod:`medzoo.networks.vim`).
:func:`create_backbone` builds either; a timm one with ``features_only=True``, optionally filled from a local
checkpoint of the full timm model (:func:`load_backbone_checkpoint`; hub weights cannot be downloaded here).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import UserValueError
from ..weights import load_weights
from .vim import VIM_BACKBONES, VisionMambaBackbone

__all__ = [
    "BACKBONES",
    "VIM_BACKBONES",
    "backbone_names",
    "BackboneSpec",
    "ChannelsFirstBackbone",
    "create_backbone",
    "load_backbone_checkpoint",
    "resolve_backbone",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone with timm.

    Attributes:
        timm_name: timm model name.
        out_indices: the feature levels with strides 4, 8, 16, 32.
        fixed_size: the model is built for one input size (``img_size`` must be given), as Swin is.
        kwargs: extra arguments to ``timm.create_model``.
    """

    timm_name: str
    out_indices: tuple[int, ...] = (0, 1, 2, 3)
    fixed_size: bool = False
    kwargs: dict = field(default_factory=dict)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec("resnet50", (1, 2, 3, 4)),
    "convnext_tiny": BackboneSpec("convnext_tiny"),
    "convnext_small": BackboneSpec("convnext_small"),
    "convnext_base": BackboneSpec("convnext_base"),
    "convnext_large": BackboneSpec("convnext_large"),
    "swin_tiny": BackboneSpec("swin_tiny_patch4_window7_224", fixed_size=True),
    "swin_small": BackboneSpec("swin_small_patch4_window7_224", fixed_size=True),
    "swin_base": BackboneSpec("swin_base_patch4_window7_224", fixed_size=True),
    "efficientnetv2_s": BackboneSpec("efficientnetv2_s", (1, 2, 3, 4)),
    "efficientnetv2_m": BackboneSpec("efficientnetv2_m", (1, 2, 3, 4)),
    "efficientnetv2_l": BackboneSpec("efficientnetv2_l", (1, 2, 3, 4)),
}


def backbone_names() -> list[str]:
    """Every backbone :func:`create_backbone` builds: the timm ones, then Vision Mamba."""
    return [*BACKBONES, *VIM_BACKBONES]


def resolve_backbone(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of timm backbone ``name``; raises for a name that is not a timm backbone."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; known: {', '.join(backbone_names())}")
    return BACKBONES[name]


def _normalised(key: str) -> str:
    """timm's ``features_only`` wrappers flatten ``stages.0`` into ``stages_0``: compare names without the dots."""
    return key.replace(".", "_")


def load_backbone_checkpoint(backbone: nn.Module, spec: BackboneSpec, path: str | os.PathLike) -> None:
    """Fill a ``features_only`` backbone from a local checkpoint of the full timm model (``timm_name``).

    The file is read by :func:`medzoo.weights.load_weights` (``weights_only`` / safetensors); a nested
    ``state_dict`` or ``model`` entry is accepted. Every backbone tensor must be in the checkpoint with its shape,
    except that a first convolution trained on 3 channels is adapted to the backbone's input channels with
    ``timm.models.adapt_input_conv``. Tensors of the classifier and unused last layers are ignored; a key that is not
    a tensor of the ``timm_name`` architecture at all is an error (wrong checkpoint).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a backbone tensor is missing or has another shape, or the checkpoint is of another model.
    """
    raw = load_weights(path)
    nested = next((k for k in ("state_dict", "model") if isinstance(raw.get(k), Mapping)), None)
    if nested is not None:
        raw = raw[nested]
    if not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise UserValueError(f"{path} does not hold a state dict of tensors" + (f" under '{nested}'" if nested else ""))
    checkpoint = {_normalised(k.removeprefix("module.")): v for k, v in raw.items()}
    architecture = {
        _normalised(k) for k in timm.create_model(spec.timm_name, pretrained=False, **spec.kwargs).state_dict()
    }
    foreign = sorted(set(checkpoint) - architecture)
    if foreign:
        raise UserValueError(
            f"{path} is not a '{spec.timm_name}' checkpoint: unexpected keys {foreign[:5]} ({len(foreign)} in all)"
        )
    first_conv = _normalised(backbone.pretrained_cfg["first_conv"] + ".weight")
    state = {}
    missing = []
    for key, target in backbone.state_dict().items():
        value = checkpoint.get(_normalised(key))
        if value is None:
            missing.append(key)
            continue
        if _normalised(key) == first_conv and value.shape[1] != target.shape[1]:
            value = timm.models.adapt_input_conv(target.shape[1], value)
        if value.shape != target.shape:
            raise UserValueError(
                f"{path}: '{key}' has shape {tuple(value.shape)}, the backbone needs {tuple(target.shape)}"
            )
        state[key] = value
    if missing:
        raise UserValueError(f"{path} lacks {len(missing)} backbone tensors, e.g. {missing[:5]}")
    backbone.load_state_dict(state, strict=True)
    logger.info("loaded %d backbone tensors from %s", len(state), path)


def create_backbone(
    name: str, in_channels: int = 1, img_size: Sequence[int] | None = None, pretrained: str | os.PathLike | None = None
) -> nn.Module:
    """A backbone returning 4 maps at strides 4, 8, 16, 32: timm ``features_only`` or Vision Mamba.

    Args:
        name: a key of :data:`BACKBONES` or of :data:`medzoo.networks.vim.VIM_BACKBONES`.
        in_channels: input channels (timm adapts the stem).
        img_size: input ``(H, W)``; required by fixed-size backbones (Swin, Vision Mamba), ignored by convolutional
            ones.
        pretrained: a local checkpoint of the full timm model (see :func:`load_backbone_checkpoint`), or None/False
            for random initialisation. Hub weights cannot be downloaded here: ``True`` or a name that is not a file
            is an error. Vision Mamba backbones start from random initialisation only.
    """
    if pretrained is False:
        pretrained = None
    if name in VIM_BACKBONES:
        if pretrained is not None:
            raise ValueError(
                f"backbone '{name}': pretrained checkpoints are not supported for Vision Mamba (no importer of the "
                "official Vim weights); train from random initialisation (pretrained=None)"
            )
        if img_size is None:
            raise ValueError(f"backbone '{name}' is built for a fixed input size: give img_size=(H, W)")
        return VisionMambaBackbone(img_size, in_channels, **VIM_BACKBONES[name])
    spec = resolve_backbone(name)
    if pretrained is not None and (not isinstance(pretrained, (str, os.PathLike)) or str(pretrained) == ""):
        raise ValueError(
            f"pretrained={pretrained!r}: hub weights cannot be downloaded here; pass the path of a local "
            f"'{spec.timm_name}' checkpoint file (timm state dict, .pt/.pth/.safetensors) or None"
        )
    if pretrained is not None and not Path(pretrained).is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint not found: {pretrained} (hub weights cannot be downloaded here; give a local "
            f"'{spec.timm_name}' checkpoint file)"
        )
    kwargs = dict(spec.kwargs)
    if spec.fixed_size:
        if img_size is None:
            raise ValueError(f"backbone '{name}' is built for a fixed input size: give img_size=(H, W)")
        kwargs["img_size"] = tuple(int(s) for s in img_size)
    backbone = timm.create_model(
        spec.timm_name,
        pretrained=False,
        features_only=True,
        out_indices=spec.out_indices,
        in_chans=in_channels,
        **kwargs,
    )
    if pretrained is not None:
        load_backbone_checkpoint(backbone, spec, pretrained)
    return backbone


class ChannelsFirstBackbone(nn.Module):
    """A timm features model whose outputs are always channels-first: ``[B, C_in, H, W]`` -> 4 x ``[B, C_i, h_i, w_i]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.channels_last = str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = self.model(x)
        if self.channels_last:
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]
        return features
