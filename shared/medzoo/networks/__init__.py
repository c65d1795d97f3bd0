"""Network building blocks and networks the bundles share."""

from . import blocks, hybridmednet
from .blocks import CBAM, AttentionGate, ChannelAttention, CrossScaleAttention, MultiHeadSelfAttention, SpatialAttention
from .hybridmednet import HybridMedNet, create_hybridmednet

__all__ = ["CBAM", "AttentionGate", "ChannelAttention", "CrossScaleAttention", "HybridMedNet", "MultiHeadSelfAttention",
           "SpatialAttention", "blocks", "create_hybridmednet", "hybridmednet"]
