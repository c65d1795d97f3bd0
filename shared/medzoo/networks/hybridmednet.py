"""HybridMedNet: a multi-label chest X-ray classifier over a 4-scale backbone with per-scale or cross-scale attention.

Pipeline, for an input ``[B, in_channels, H, W]``:

1. backbone: a timm model with ``features_only=True`` gives 4 maps ``[B, C_i, H / s_i, W / s_i]``, strides
   ``s = (4, 8, 16, 32)``;
2. neck: each map projected to one width ``[B, width, H / s_i, W / s_i]`` (1x1 convolution, ``neck="project"``) or
   a feature pyramid network (top-down, ``neck="fpn"``);
3. attention: none, CBAM per scale, multi-scale multi-head self-attention per scale, or cross-scale attention
   (each scale queries the other scales), from :mod:`medzoo.networks.blocks`;
4. fusion (:class:`ScaleFusion`): every scale resized to the finest, projected, and summed with softmax weights;
5. head (:class:`MultiLabelHead`): average + max pooling, MLP, ``num_classes`` logits; optionally hierarchical
   (coarse groups first, the fine MLP also sees the coarse logits).

Variants are configuration: :data:`BACKBONES` names the backbones, :data:`VARIANTS` the recommended combinations,
and :func:`create_hybridmednet` builds either (timm's ``create_model`` style). The backbones live in
:mod:`medzoo.networks.backbones`, neck, attention, fusion and head in :mod:`medzoo.networks.pyramid`; this module
holds the model, its variants, loss and training inferer, and re-exports the parts' public names.

Example::

    net = create_hybridmednet("fast", in_channels=1)       # efficientnetv2_s, no extra attention
    net(torch.rand(2, 1, 224, 224)).shape                   # (2, 14)
    net = HybridMedNet("swin_tiny", attention="cross_scale", img_size=(64, 64))
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from monai.inferers import Inferer
from torch import nn

from ..cxr.labels import CHEXNET_LABELS
from ..losses import MultiLabelLoss
from .backbones import (
    BACKBONES,
    VIM_BACKBONES,
    BackboneSpec,
    ChannelsFirstBackbone,
    backbone_names,
    create_backbone,
    load_backbone_checkpoint,
)
from .pyramid import ATTENTIONS, NECKS, MultiLabelHead, ScaleFusion, create_attention, create_neck

__all__ = [
    "ATTENTIONS",
    "BACKBONES",
    "CXR14_COARSE_GROUPS",
    "NECKS",
    "VARIANTS",
    "VIM_BACKBONES",
    "BackboneSpec",
    "HybridMedNet",
    "HybridMedNetInferer",
    "HybridMedNetLoss",
    "MultiLabelHead",
    "ScaleFusion",
    "coarse_group_indices",
    "create_backbone",
    "create_hybridmednet",
    "list_variants",
    "load_backbone_checkpoint",
]

#: The recommended combinations, by role. Any key of :class:`HybridMedNet` can be overridden on top.
VARIANTS: dict[str, dict] = {
    "general": {"backbone": "convnext_base", "attention": "cross_scale"},
    "fast": {"backbone": "efficientnetv2_s", "attention": "none"},
    "high_accuracy": {"backbone": "swin_base", "attention": "cross_scale"},
    "low_resource": {"backbone": "convnext_tiny", "attention": "cbam"},
    "state_space": {"backbone": "vim_small", "attention": "cross_scale"},
    "classic": {"backbone": "resnet50", "neck": "fpn", "attention": "cbam"},
}

#: Three coarse groups of the 14 ChestX-ray14 findings, for the hierarchical head.
CXR14_COARSE_GROUPS: dict[str, tuple[str, ...]] = {
    "lung_parenchyma": ("Atelectasis", "Infiltration", "Mass", "Nodule", "Pneumonia", "Consolidation", "Edema"),
    "pleura": ("Effusion", "Pneumothorax", "Pleural_Thickening"),
    "heart_and_chronic": ("Cardiomegaly", "Emphysema", "Fibrosis", "Hernia"),
}


def coarse_group_indices(
    groups: dict[str, Sequence[str]] = CXR14_COARSE_GROUPS, labels: Sequence[str] = CHEXNET_LABELS
) -> list[list[int]]:
    """Indices into ``labels`` of each group's findings; every label must be in exactly one group."""
    position = {name: i for i, name in enumerate(labels)}
    unknown = sorted({n for names in groups.values() for n in names} - set(position))
    if unknown:
        raise ValueError(f"coarse groups name labels that are not in the label list: {unknown}")
    indices = [[position[n] for n in names] for names in groups.values()]
    flat = sorted(i for group in indices for i in group)
    if flat != list(range(len(labels))):
        raise ValueError("every label must belong to exactly one coarse group")
    return indices


class HybridMedNet(nn.Module):
    """Multi-scale backbone + per-scale/cross-scale attention + weighted fusion + multi-label head.

    Args:
        backbone: a key of :data:`BACKBONES` or :data:`VIM_BACKBONES` (Vision Mamba), or a ``features_only``
            model already built (e.g. by :func:`create_backbone`) giving 4 maps.
        attention: ``"none"``, ``"cbam"``, ``"mhsa"`` (multi-scale multi-head self-attention per scale) or
            ``"cross_scale"``.
        neck: ``"project"`` (1x1 conv per scale) or ``"fpn"`` (feature pyramid network).
        in_channels: image channels.
        num_classes: fine labels (14 for ChestX-ray14).
        img_size: input ``(H, W)``; required by Swin and Vision Mamba backbones, which only accept that size.
        width: common channel width of the scales after the neck.
        num_heads: attention heads (``mhsa``, ``cross_scale``).
        kv_size: cross-scale attention pools each other scale's keys/values to at most this size per side.
        pool_ratios: key/value pooling ratios of ``mhsa``.
        hidden: hidden width of the head MLP(s).
        dropout: dropout in the head.
        hierarchical: add a coarse head over ``num_coarse`` groups whose logits the fine head also reads.
        num_coarse: number of coarse groups (3 for :data:`CXR14_COARSE_GROUPS`).
        pretrained: path of a local timm checkpoint of the backbone, or None.

    ``forward(x)``: ``[B, in_channels, H, W]`` -> fine logits ``[B, num_classes]``. ``forward(x, True)`` on a
    hierarchical network: ``[B, num_coarse + num_classes]``, coarse logits first (what :class:`HybridMedNetLoss`
    expects).
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        attention: str = "none",
        neck: str = "project",
        in_channels: int = 1,
        num_classes: int = 14,
        img_size: Sequence[int] | None = None,
        width: int = 256,
        num_heads: int = 4,
        kv_size: int = 14,
        pool_ratios: Sequence[int] = (2, 4, 8),
        hidden: int = 512,
        dropout: float = 0.2,
        hierarchical: bool = False,
        num_coarse: int = 3,
        pretrained: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention '{attention}'; choose one of {ATTENTIONS}")
        if neck not in NECKS:
            raise ValueError(f"unknown neck '{neck}'; choose one of {NECKS}")
        if hierarchical and num_coarse < 1:
            raise ValueError("a hierarchical head needs num_coarse >= 1")
        if isinstance(backbone, nn.Module):
            if pretrained is not None:
                raise ValueError(
                    "pretrained applies to a backbone given by name; load a built backbone's weights yourself"
                )
            features = backbone
        else:
            features = create_backbone(backbone, in_channels, img_size, pretrained)
        channels = features.feature_info.channels()
        if len(channels) != 4:
            raise ValueError(f"HybridMedNet needs a backbone with 4 feature levels, this one gives {len(channels)}")
        self.backbone = ChannelsFirstBackbone(features)
        self.neck = create_neck(neck, channels, width)
        self.attention = create_attention(attention, width, len(channels), num_heads, kv_size, pool_ratios)
        self.fusion = ScaleFusion(width, len(channels))
        self.head = MultiLabelHead(width, num_classes, hidden, dropout, num_coarse if hierarchical else 0)
        self.hierarchical = hierarchical

    def forward(self, x: torch.Tensor, return_coarse: bool = False) -> torch.Tensor:
        """``[B, C_in, H, W]`` -> ``[B, num_classes]``, or ``[B, num_coarse + num_classes]`` with ``return_coarse``."""
        fused = self.fusion(self.attention(self.neck(self.backbone(x))))
        coarse, fine = self.head(fused)
        if return_coarse:
            if not self.hierarchical:
                raise ValueError("return_coarse needs a hierarchical network (hierarchical=True)")
            return torch.cat([coarse, fine], dim=1)
        return fine


def list_variants() -> list[str]:
    """Names accepted by :func:`create_hybridmednet`: the recommended variants, then the backbones."""
    return list(VARIANTS) + backbone_names()


def create_hybridmednet(name: str, **overrides) -> HybridMedNet:
    """Build a named variant (:data:`VARIANTS`) or a backbone with default options, with keyword overrides.

    Example::

        create_hybridmednet("general", img_size=(224, 224))
        create_hybridmednet("swin_small", attention="mhsa", img_size=(64, 64))
    """
    if name in VARIANTS:
        config = {**VARIANTS[name], **overrides}
    elif name in backbone_names():
        config = {"backbone": name, **overrides}
    else:
        raise ValueError(f"unknown HybridMedNet variant '{name}'; known: {', '.join(list_variants())}")
    return HybridMedNet(**config)


class HybridMedNetLoss(nn.Module):
    """Multi-label loss for HybridMedNet, flat or hierarchical.

    Flat (``coarse_groups=None``): ``fine_weight * L(fine, y)`` with ``L`` = :class:`medzoo.losses.MultiLabelLoss`.

    Hierarchical: predictions are ``[B, G + C]`` (coarse logits first, see ``HybridMedNet.forward(x, True)``). The
    coarse target of group ``g`` is 1 if any of its findings is positive, 0 if all are known negatives, unknown
    (``ignore_value``) otherwise. The loss is

        fine_weight * L(fine, y) + coarse_weight * L(coarse, y_coarse) + consistency_weight * mean_g (sigmoid(coarse_g) - max_{c in g} sigmoid(fine_c))^2

    the consistency term asking the coarse probability to equal that of the group's most likely finding.

    Args:
        pos_weight: per-class positive weights of the fine labels, or None.
        gamma: focal exponent (both levels).
        coarse_groups: indices of the fine labels of each coarse group (:func:`coarse_group_indices`), or None.
        fine_weight, coarse_weight, consistency_weight: weights of the three terms, >= 0.
        ignore_value: target value of unknown labels.
    """

    def __init__(
        self,
        pos_weight: Sequence[float] | None = None,
        gamma: float = 0.0,
        coarse_groups: Sequence[Sequence[int]] | None = None,
        fine_weight: float = 1.0,
        coarse_weight: float = 0.5,
        consistency_weight: float = 0.1,
        ignore_value: float = -1.0,
    ) -> None:
        super().__init__()
        if min(fine_weight, coarse_weight, consistency_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        self.fine_loss = MultiLabelLoss(pos_weight, gamma, ignore_value)
        self.coarse_loss = MultiLabelLoss(None, gamma, ignore_value)
        self.groups = None if coarse_groups is None else [list(map(int, g)) for g in coarse_groups]
        self.fine_weight, self.coarse_weight, self.consistency_weight = fine_weight, coarse_weight, consistency_weight
        self.ignore_value = ignore_value

    def coarse_targets(self, target: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` fine targets -> ``[B, G]`` coarse targets (1, 0 or ``ignore_value``)."""
        columns = []
        for group in self.groups:
            t = target[:, group]
            known = t != self.ignore_value
            positive = ((t == 1) & known).any(dim=1)
            all_known = known.all(dim=1)
            value = torch.where(
                positive,
                torch.ones_like(t[:, 0]),
                torch.where(all_known, torch.zeros_like(t[:, 0]), torch.full_like(t[:, 0], self.ignore_value)),
            )
            columns.append(value)
        return torch.stack(columns, dim=1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred [B, C]`` (flat) or ``[B, G + C]`` (hierarchical), ``target [B, C]`` -> scalar."""
        if self.groups is None:
            return self.fine_weight * self.fine_loss(pred, target)
        num_coarse = len(self.groups)
        if pred.shape[1] != num_coarse + target.shape[1]:
            raise ValueError(
                f"hierarchical loss expects [B, {num_coarse} + {target.shape[1]}] predictions (coarse logits first), "
                f"got {tuple(pred.shape)}: train with HybridMedNetInferer(return_coarse=True) and hierarchical=True"
            )
        coarse, fine = pred[:, :num_coarse], pred[:, num_coarse:]
        target = target.to(pred.dtype)
        loss = self.fine_weight * self.fine_loss(fine, target)
        loss = loss + self.coarse_weight * self.coarse_loss(coarse, self.coarse_targets(target))
        if self.consistency_weight > 0:
            fine_p = torch.sigmoid(fine)
            group_max = torch.stack([fine_p[:, g].amax(dim=1) for g in self.groups], dim=1)
            loss = loss + self.consistency_weight * (torch.sigmoid(coarse) - group_max).pow(2).mean()
        return loss


class HybridMedNetInferer(Inferer):
    """Training inferer: ``network(inputs)``, or ``network(inputs, True)`` (coarse + fine logits) when
    ``return_coarse``, for :class:`HybridMedNetLoss` with coarse groups. Works through DistributedDataParallel."""

    def __init__(self, return_coarse: bool = False) -> None:
        super().__init__()
        self.return_coarse = return_coarse

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, **kwargs) -> torch.Tensor:
        return network(inputs, True, *args, **kwargs) if self.return_coarse else network(inputs, *args, **kwargs)
