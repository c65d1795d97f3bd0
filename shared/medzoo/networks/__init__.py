"""Network building blocks and networks the bundles share."""

from . import blocks, hybridmednet
from .blocks import CBAM, AttentionGate, ChannelAttention, CrossScaleAttention, MultiHeadSelfAttention, SpatialAttention
from .hybridmednet import HybridMedNet, create_hybridmednet

__all__ = ["blocks", "hybridmednet", "CBAM", "AttentionGate", "ChannelAttention", "CrossScaleAttention",
           "MultiHeadSelfAttention", "SpatialAttention", "HybridMedNet", "create_hybridmednet"]
