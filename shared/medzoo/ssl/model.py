"""SimCLR networks: BiT ResNetV2 encoders from timm, the projection head, and the path into a classifier.

A SimCLR checkpoint of this zoo is the state dict of :class:`SimCLRNet`: the encoder's tensors under ``encoder.``
and the projection head's under ``projection.``. A classifier is the same timm ResNetV2 with ``num_classes > 0``; it
starts from the encoder tensors through :func:`load_simclr_encoder` (or :func:`prepare_fine_tuning`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import partial

import torch
from timm.layers import StdConv2d
from timm.models.resnetv2 import ResNetV2

from medzoo.errors import UserFileNotFoundError, UserValueError
from medzoo.weights import load_state_dict

__all__ = [
    "BIT_DEPTHS",
    "SimCLRNet",
    "TwoViewBatch",
    "bit_resnetv2",
    "load_simclr_encoder",
    "prepare_fine_tuning",
    "projection_head",
    "set_fine_tune_after_block",
]

logger = logging.getLogger(__name__)

#: Blocks per stage of the BiT ResNetV2 depths (timm's ``resnetv2_{depth}x{width}_bit``).
BIT_DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def bit_resnetv2(
    depth: int = 50,
    width_factor: int = 1,
    in_channels: int = 1,
    num_classes: int = 0,
    blocks_per_stage: Sequence[int] | None = None,
    channels: Sequence[int] = (256, 512, 1024, 2048),
) -> ResNetV2:
    """A BiT ResNetV2 (pre-activation, GroupNorm, weight-standardised convolutions) from timm, randomly initialised.

    With the defaults for ``blocks_per_stage`` and ``channels`` it is exactly timm's ``resnetv2_{depth}x{width}_bit``
    (same modules and state-dict keys; ``resnetv2_50x1_bit`` for REMEDIS's ResNet-50x1, ``depth=152,
    width_factor=2`` for its ResNet-152x2). timm's named constructors do not accept a change of blocks per stage,
    so the same class is built here with the same BiT settings.

    Args:
        depth: 50, 101 or 152; ignored when ``blocks_per_stage`` is given.
        width_factor: channel multiplier (1 for 50x1, 2 for 152x2).
        in_channels: image channels (1 for the zoo's chest X-ray preset).
        num_classes: 0 for an encoder whose output is the pooled embedding ``(B, channels[-1] * width_factor)``
            (2048 for 50x1); otherwise a classifier with logits ``(B, num_classes)``.
        blocks_per_stage: four block counts, to build a smaller (or other) network of the same family, e.g. for tests.
        channels: output channels of the four stages before ``width_factor`` (a multiple of 128 each, as the
            GroupNorm of 32 groups needs a quarter of them to divide by 32).

    Input ``(B, in_channels, H, W)`` with H, W multiples of 32 recommended.
    """
    if blocks_per_stage is None:
        if depth not in BIT_DEPTHS:
            raise ValueError(f"BiT ResNetV2 depth must be one of {sorted(BIT_DEPTHS)}, got {depth}")
        blocks_per_stage = BIT_DEPTHS[depth]
    if len(blocks_per_stage) != 4 or len(channels) != 4:
        raise ValueError(f"need four stages, got blocks_per_stage={list(blocks_per_stage)}, channels={list(channels)}")
    if width_factor < 1:
        raise ValueError(f"width_factor must be a positive integer, got {width_factor}")
    return ResNetV2(
        layers=list(blocks_per_stage),
        channels=tuple(channels),
        num_classes=num_classes,
        in_chans=in_channels,
        width_factor=width_factor,
        stem_type="fixed",
        conv_layer=partial(StdConv2d, eps=1e-8),
    )


def projection_head(
    in_features: int, out_features: int = 128, num_layers: int = 3, hidden_features: int | None = None
) -> torch.nn.Sequential:
    """SimCLR(v2) projection MLP ``(B, in_features) -> (B, out_features)``.

    ``num_layers`` linear layers; every layer but the last is followed by BatchNorm1d and ReLU (SimCLRv2 uses 3
    layers, SimCLR 2). ``hidden_features`` defaults to ``in_features``.
    """
    if num_layers < 1:
        raise ValueError(f"the projection head needs at least one layer, got {num_layers}")
    hidden = hidden_features or in_features
    layers: list[torch.nn.Module] = []
    width = in_features
    for _ in range(num_layers - 1):
        layers += [
            torch.nn.Linear(width, hidden, bias=False),
            torch.nn.BatchNorm1d(hidden),
            torch.nn.ReLU(inplace=True),
        ]
        width = hidden
    layers.append(torch.nn.Linear(width, out_features))
    return torch.nn.Sequential(*layers)


class SimCLRNet(torch.nn.Module):
    """Encoder plus projection head: ``(B, C, H, W)`` images -> ``(B, projection_dim)`` projections.

    The encoder is any module with ``num_features`` that maps images to ``(B, num_features)`` embeddings (a timm
    model with ``num_classes=0``, such as :func:`bit_resnetv2`). ``net.encoder(x)`` gives the embedding used for
    linear probes and fine-tuning; the projection is only for the contrastive loss.

    Example::

        net = SimCLRNet(bit_resnetv2(50), projection_dim=128, projection_layers=3)
        net(torch.rand(4, 1, 64, 64)).shape  # (4, 128)
    """

    def __init__(self, encoder: torch.nn.Module, projection_dim: int = 128, projection_layers: int = 3) -> None:
        super().__init__()
        features = getattr(encoder, "num_features", None)
        if not isinstance(features, int):
            raise TypeError("the encoder must expose its embedding size as an int attribute `num_features`")
        self.encoder = encoder
        self.projection = projection_head(features, projection_dim, projection_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.encoder(x))


class TwoViewBatch:
    """``prepare_batch`` for MONAI's SupervisedTrainer: stack the two views of a batch into one ``(2B, C, H, W)``
    input, view 1 first (the layout :class:`~medzoo.ssl.loss.NTXentLoss` expects); there is no target."""

    def __init__(self, view_keys: Sequence[str] = ("view1", "view2")) -> None:
        self.view_keys = tuple(view_keys)

    def __call__(
        self, batchdata: Mapping, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ) -> tuple:
        missing = [k for k in self.view_keys if k not in batchdata]
        if missing:
            raise KeyError(f"batch has no {missing}: the training transform must produce both views (TwoViewsd)")
        views = torch.cat([torch.as_tensor(batchdata[k]) for k in self.view_keys], dim=0)
        return views.to(device=device, non_blocking=non_blocking, **kwargs), None


def _listing(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")


def load_simclr_encoder(
    network: torch.nn.Module, path: str | os.PathLike, prefix: str = "encoder.", head_prefix: str = "head."
) -> torch.nn.Module:
    """Load the encoder tensors of a SimCLR checkpoint into ``network`` (an encoder or a classifier of the same
    architecture), through :func:`medzoo.weights.load_state_dict`.

    Every tensor of ``network`` except those under ``head_prefix`` (the classifier's logits layer) must be in the
    checkpoint under ``prefix`` with the same shape, and the checkpoint may hold nothing else under ``prefix``.
    ``prefix=""`` reads a bare encoder state dict.

    Raises:
        ValueError: the checkpoint has no tensors under ``prefix``, or its keys or shapes do not match, with the
            differing keys listed.
    """
    state = load_state_dict(path)
    encoder_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not encoder_state:
        raise UserValueError(
            f"{path}: no tensors under '{prefix}', so it is not a SimCLR checkpoint (keys: {_listing(list(state))})"
        )
    target = network.state_dict()
    expected = {k for k in target if not k.startswith(head_prefix)}
    missing, unexpected = expected - set(encoder_state), set(encoder_state) - expected
    wrong_shape = [k for k in expected & set(encoder_state) if encoder_state[k].shape != target[k].shape]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing from the checkpoint: {_listing(list(missing))}")
        if unexpected:
            problems.append(f"not in the network: {_listing(list(unexpected))}")
        if wrong_shape:
            problems.append(
                "different shapes: "
                + _listing([f"{k} {tuple(encoder_state[k].shape)} vs {tuple(target[k].shape)}" for k in wrong_shape])
            )
        raise UserValueError(f"{path}: encoder weights do not fit the network ({'; '.join(problems)})")
    network.load_state_dict(encoder_state, strict=False)
    logger.info("loaded %d encoder tensors from %s", len(encoder_state), path)
    return network


def set_fine_tune_after_block(network: ResNetV2, fine_tune_after_block: int = -1) -> ResNetV2:
    """Freeze a timm ResNetV2 up to a block, as REMEDIS's / SimCLR's ``fine_tune_after_block``.

    - ``-1``: every parameter trains;
    - ``0``: the stem is frozen, everything after it trains;
    - ``k`` in 1..3: the stem and stages 1..k are frozen;
    - ``4``: the whole encoder (stem, four stages, final norm) is frozen: only the logits layer trains.

    Frozen parameters get ``requires_grad=False`` (build the optimizer from the trainable ones). The BiT network uses
    GroupNorm, which has no running statistics, so freezing needs no change of train/eval mode.
    """
    if fine_tune_after_block not in (-1, 0, 1, 2, 3, 4):
        raise ValueError(
            f"fine_tune_after_block must be -1 (all), 0 (after the stem) ... 4 (head only), got {fine_tune_after_block}"
        )
    for name in ("stem", "stages", "norm", "head"):
        if not hasattr(network, name):
            raise ValueError(
                f"fine_tune_after_block needs a timm ResNetV2 (stem, stages, norm, head); the network has no '{name}'"
            )
    network.requires_grad_(True)
    if fine_tune_after_block >= 0:
        frozen = [network.stem, *list(network.stages)[:fine_tune_after_block]]
        if fine_tune_after_block == 4:
            frozen.append(network.norm)
        for module in frozen:
            module.requires_grad_(False)
    return network


def prepare_fine_tuning(
    network: ResNetV2,
    pretrained_ckpt: str | os.PathLike | None,
    fine_tune_after_block: int = -1,
    zero_init_logits: bool = False,
) -> ResNetV2:
    """Make a ResNetV2 classifier ready to fine-tune: SimCLR encoder weights, zeroed logits layer, frozen blocks.

    Args:
        network: a classifier from :func:`bit_resnetv2` with ``num_classes > 0``.

    Raises:
        FileNotFoundError: ``pretrained_ckpt`` is given but does not exist.
        ValueError: the checkpoint does not fit (see :func:`load_simclr_encoder`).
        pretrained_ckpt: a SimCLR checkpoint (see :func:`load_simclr_encoder`); ``None`` trains from random
            initialisation (logged as a warning, never chosen silently).
        fine_tune_after_block: see :func:`set_fine_tune_after_block`.
        zero_init_logits: set the logits layer's weight and bias to 0 (BiT's zero head), so training starts from
            logits 0 (probability 0.5) for every class.
    """
    if pretrained_ckpt is None:
        logger.warning("no SimCLR checkpoint given: the classifier starts from random initialisation")
    else:
        if not os.path.isfile(pretrained_ckpt):
            raise UserFileNotFoundError(
                f"no SimCLR checkpoint at {pretrained_ckpt}: pretrain with the cxr_simclr_pretraining bundle and pass its "
                "models/model.pt as --pretrained_ckpt, or pass --pretrained_ckpt None to train from random initialisation"
            )
        load_simclr_encoder(network, pretrained_ckpt)
    if zero_init_logits:
        head = network.get_classifier()
        if not isinstance(head, (torch.nn.Linear, torch.nn.Conv2d)):
            raise ValueError(f"zero_init_logits needs a Linear or 1x1 Conv2d logits layer, got {type(head).__name__}")
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    return set_fine_tune_after_block(network, fine_tune_after_block)
