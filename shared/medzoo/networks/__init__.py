"""Network building blocks and networks the bundles share."""

from . import blocks
from .blocks import CBAM, AttentionGate, ChannelAttention, CrossScaleAttention, MultiHeadSelfAttention, SpatialAttention

__all__ = ["blocks", "CBAM", "AttentionGate", "ChannelAttention", "CrossScaleAttention", "MultiHeadSelfAttention",
           "SpatialAttention"]
