"""Image + clinical data fusion classifier: a DenseNet image branch and a tabular branch, fused by concatenation or
cross-attention.

:class:`ClinicalFusionClassifier` takes two inputs, the image ``[B, C, H, W]`` and the clinical vector ``[B, F]``
(e.g. :data:`medzoo.cxr.clinical.CLINICAL_FEATURES`), and returns logits ``[B, out_channels]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import DenseNet
from torch import nn

__all__ = ["FUSIONS", "ClinicalFusionClassifier"]

#: The fusion methods: ``concat`` (late fusion of the pooled image features and the clinical embedding) and
#: ``cross_attention`` (clinical query tokens attend over the image's feature-map tokens).
FUSIONS: tuple[str, ...] = ("concat", "cross_attention")


def _densenet_out_channels(init_features: int, growth_rate: int, block_config: Sequence[int]) -> int:
    """Channels of MONAI ``DenseNet.features``: each block adds ``layers * growth_rate``, each transition halves."""
    channels = init_features
    for i, layers in enumerate(block_config):
        channels += layers * growth_rate
        if i < len(block_config) - 1:
            channels //= 2
    return channels


class _ConcatFusion(nn.Module):
    """Pooled image features ``[B, D]`` and clinical embedding ``[B, E]`` -> ``[B, D + E]``."""

    def forward(self, feature_map: torch.Tensor, pooled: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        return torch.cat([pooled, clinical], dim=1)


class _CrossAttentionFusion(nn.Module):
    """Clinical query tokens attend over the feature map's tokens -> ``[B, 3 E]`` (pooled image, clinical, attended)."""

    def __init__(self, image_dim: int, embed_dim: int, num_heads: int, num_queries: int) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.embed_dim = embed_dim
        self.image_tokens = nn.Linear(image_dim, embed_dim)
        self.image_pooled = nn.Linear(image_dim, embed_dim)
        self.queries = nn.Linear(embed_dim, num_queries * embed_dim)
        self.attention = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)

    def forward(self, feature_map: torch.Tensor, pooled: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        tokens = self.image_tokens(feature_map.flatten(2).transpose(1, 2))
        queries = self.queries(clinical).reshape(clinical.shape[0], self.num_queries, self.embed_dim)
        attended, _ = self.attention(queries, tokens, tokens, need_weights=False)
        return torch.cat([self.image_pooled(pooled), clinical, attended.mean(dim=1)], dim=1)


class ClinicalFusionClassifier(nn.Module):
    """Multi-label classifier of an image and a vector of clinical fields.

    The image branch is MONAI's ``DenseNet`` feature extractor (DenseNet121 with the defaults); the clinical branch
    is a two-layer MLP giving an embedding of ``embed_dim``. Fusion:

    - ``concat``: the global-average-pooled image features ``[B, D_img]`` and the clinical embedding ``[B, E]`` are
      concatenated and classified by a two-layer head;
    - ``cross_attention``: the image feature map ``[B, D_img, h, w]`` is projected to ``h * w`` tokens of size ``E``;
      ``num_queries`` query tokens made from the clinical embedding attend over them (``nn.MultiheadAttention``,
      ``num_heads`` heads); the mean attended token, the projected pooled image features and the clinical embedding
      are concatenated and classified by the same kind of head.

    Args:
        spatial_dims: 2 for radiographs (3 also works for volumes).
        in_channels: image channels.
        out_channels: number of labels (logits).
        num_clinical: length F of the clinical vector.
        fusion: one of :data:`FUSIONS`.
        init_features, growth_rate, block_config: MONAI ``DenseNet`` settings (defaults: DenseNet121).
        embed_dim: size E of the clinical embedding, attention tokens and head's hidden layer.
        num_heads: attention heads (``cross_attention``); must divide ``embed_dim``.
        num_queries: clinical query tokens (``cross_attention``).
        dropout: dropout before the head's last layer.

    Example::

        net = ClinicalFusionClassifier(out_channels=14, num_clinical=8, fusion="cross_attention")
        net(torch.rand(2, 1, 224, 224), torch.rand(2, 8)).shape  # (2, 14)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 14,
        num_clinical: int = 8,
        fusion: str = "concat",
        init_features: int = 64,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        embed_dim: int = 64,
        num_heads: int = 4,
        num_queries: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got '{fusion}'")
        if num_clinical < 1:
            raise ValueError(f"num_clinical must be at least 1, got {num_clinical}")
        if fusion == "cross_attention" and embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.fusion = fusion
        self.num_clinical = num_clinical
        densenet = DenseNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=1,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=tuple(block_config),
        )
        self.image_features = densenet.features
        image_dim = _densenet_out_channels(init_features, growth_rate, block_config)
        self.clinical_mlp = nn.Sequential(
            nn.Linear(num_clinical, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim), nn.ReLU()
        )
        self.fuse = (
            _CrossAttentionFusion(image_dim, embed_dim, num_heads, num_queries)
            if fusion == "cross_attention"
            else _ConcatFusion()
        )
        head_in = 3 * embed_dim if fusion == "cross_attention" else image_dim + embed_dim
        self.head = nn.Sequential(
            nn.Linear(head_in, embed_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(embed_dim, out_channels)
        )

    def forward(self, image: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """``image`` ``[B, C, *S]``, ``clinical`` ``[B, F]`` -> logits ``[B, out_channels]``."""
        if clinical.dim() != 2 or clinical.shape[1] != self.num_clinical:
            raise ValueError(f"clinical must have shape [B, {self.num_clinical}], got {list(clinical.shape)}")
        feature_map = torch.relu(self.image_features(image))
        pooled = feature_map.flatten(2).mean(dim=2)
        clinical_embedding = self.clinical_mlp(clinical)
        return self.head(self.fuse(feature_map, pooled, clinical_embedding))
