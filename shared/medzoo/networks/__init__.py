"""Network building blocks and networks the bundles share. :mod:`~medzoo.networks.hybridmednet` and its parts
(:mod:`~medzoo.networks.backbones`, which needs timm, and :mod:`~medzoo.networks.pyramid`) are imported on first
access."""

from .._lazy import lazy_attributes
from . import blocks
from .blocks import CBAM, AttentionGate, ChannelAttention, CrossScaleAttention, MultiHeadSelfAttention, SpatialAttention

__all__ = [
    "CBAM",
    "AttentionGate",
    "ChannelAttention",
    "CrossScaleAttention",
    "HybridMedNet",
    "MultiHeadSelfAttention",
    "SpatialAttention",
    "backbones",
    "blocks",
    "create_hybridmednet",
    "fusion",
    "hybridmednet",
    "pyramid",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        **{name: "hybridmednet" for name in ("hybridmednet", "HybridMedNet", "create_hybridmednet")},
        "backbones": "backbones",
        "pyramid": "pyramid",
        "fusion": "fusion",
    },
)
