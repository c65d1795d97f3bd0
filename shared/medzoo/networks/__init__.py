"""Network building blocks and networks the bundles share. :mod:`~medzoo.networks.hybridmednet` (which needs timm)
is imported on first access."""

from .._lazy import lazy_attributes
from . import blocks
from .blocks import CBAM, AttentionGate, ChannelAttention, CrossScaleAttention, MultiHeadSelfAttention, SpatialAttention

__all__ = ["CBAM", "AttentionGate", "ChannelAttention", "CrossScaleAttention", "HybridMedNet", "MultiHeadSelfAttention",
           "SpatialAttention", "blocks", "create_hybridmednet", "hybridmednet"]

__getattr__, __dir__ = lazy_attributes(
    __name__, {name: "hybridmednet" for name in ("hybridmednet", "HybridMedNet", "create_hybridmednet")}
)
