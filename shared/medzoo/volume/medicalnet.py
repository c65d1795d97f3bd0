"""Import MedicalNet (Tencent/MedicalNet, Med3D) pretrained 3D ResNet checkpoints into :class:`MedicalNetResNet`.

A MedicalNet checkpoint (``resnet_10.pth``, ``resnet_18_23dataset.pth``, ...) is a dict whose ``"state_dict"`` holds
the weights saved from ``nn.DataParallel``: keys ``module.conv1.weight`` [64, 1, 7, 7, 7], ``module.bn1.*``,
``module.layer1.0.conv1.weight`` ... ``module.layer4.*``, ``module.layerN.0.downsample.{0,1}.*`` for type "B"
shortcuts, and optionally the segmentation head ``module.conv_seg.*``. The encoder's names are MONAI ResNet's names,
so conversion strips ``module.``, drops ``conv_seg`` (the bundle has a classification head instead) and checks every
remaining key and shape against the network. Nothing is skipped silently: a missing, unexpected or mis-shaped tensor
raises a ``ValueError`` naming it; only the new head ``fc.*`` keeps its initialisation.

Example (fine-tune a bundle from MedicalNet weights)::

    python -m monai.bundle run --config_file configs/train.json \\
        --resnet_depth 18 --shortcut_type A --medicalnet_checkpoint /path/to/resnet_18_23dataset.pth
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

from medzoo.errors import UserValueError
from medzoo.weights import load_weights

__all__ = ["HEAD_PREFIX", "load_medicalnet_encoder", "medicalnet_to_monai", "read_medicalnet_checkpoint"]

logger = logging.getLogger(__name__)

#: Prefix of the bundle network's classification head, which MedicalNet checkpoints do not have.
HEAD_PREFIX = "fc."
_SEG_HEAD_PREFIX = "conv_seg."
_MAX_LISTED = 10


def _listed(title: str, items: list[str]) -> str:
    more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n  {title} ({len(items)}): " + ", ".join(items[:_MAX_LISTED]) + more


def read_medicalnet_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The raw state dict of a MedicalNet checkpoint (``{"state_dict": ...}`` or a bare state dict), read safely."""
    ckpt = load_weights(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserValueError(
            f"{path} does not hold a MedicalNet state dict (a dict of tensors, optionally under 'state_dict')"
        )
    return dict(state)


def medicalnet_to_monai(
    state_dict: Mapping[str, torch.Tensor], network: nn.Module, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Convert MedicalNet encoder weights into the keys of ``network`` (a :class:`MedicalNetResNet`), checked.

    Returns the encoder part of ``network``'s state dict (every key but ``fc.*``).

    Raises:
        ValueError: listing every key that is missing, unexpected or of the wrong shape, with a hint when the
            shortcut type or depth of the network does not match the checkpoint.
    """
    expected = {k: v.shape for k, v in network.state_dict().items() if not k.startswith(HEAD_PREFIX)}
    converted, seen, unexpected, wrong_shape, dropped = {}, set(), [], [], []
    for source_key, value in state_dict.items():
        key = source_key.removeprefix("module.")
        if key.startswith(_SEG_HEAD_PREFIX):
            dropped.append(source_key)
        elif key not in expected:
            unexpected.append(source_key)
        elif value.shape != expected[key]:
            seen.add(key)
            wrong_shape.append(f"{source_key} {tuple(value.shape)} != {tuple(expected[key])}")
        else:
            seen.add(key)
            converted[key] = value
    missing = []
    for key in expected:
        if key in seen:
            continue
        if key.endswith(".num_batches_tracked"):  # absent from checkpoints saved before PyTorch 0.4.1; unused in eval
            converted[key] = torch.tensor(0, dtype=torch.long)
        else:
            missing.append(key)
    if unexpected or missing or wrong_shape:
        hint = ""
        if any(".downsample." in k for k in unexpected + missing):
            hint = (
                "\n  hint: downsample keys differ, so the shortcut type does not match: MedicalNet checkpoints without "
                "'downsample' weights need shortcut_type 'A', those with them 'B' (and bias_downsample if they have "
                "'downsample.0.bias')"
            )
        message = f"{source} does not fit MedicalNetResNet(depth={getattr(network, 'depth', '?')})"
        if unexpected:
            message += _listed("unexpected", unexpected)
        if missing:
            message += _listed("missing", missing)
        if wrong_shape:
            message += _listed("wrong shape", wrong_shape)
        raise UserValueError(message + hint)
    if dropped:
        logger.info(
            "%s: dropped MedicalNet's segmentation head (%d tensors: %s)", source, len(dropped), ", ".join(dropped)
        )
    return converted


def load_medicalnet_encoder(network: nn.Module, checkpoint: str | os.PathLike | None) -> nn.Module:
    """Load a MedicalNet checkpoint's encoder into ``network`` and return it; ``checkpoint=None`` returns it as is.

    Every encoder tensor is replaced (checked by :func:`medicalnet_to_monai`); the head ``fc`` keeps its
    initialisation, to be trained. Bundle configs use it as
    ``"network": "$medzoo.volume.medicalnet.load_medicalnet_encoder(@network_def, @medicalnet_checkpoint).to(@device)"``.
    """
    if checkpoint is None:
        return network
    encoder = medicalnet_to_monai(read_medicalnet_checkpoint(checkpoint), network, source=str(checkpoint))
    result = network.load_state_dict(encoder, strict=False)
    leftover = [k for k in result.missing_keys if not k.startswith(HEAD_PREFIX)]
    if leftover or result.unexpected_keys:
        raise UserValueError(
            f"{checkpoint}: encoder weights left unset {leftover} or unexpected {result.unexpected_keys}"
        )
    logger.info(
        "loaded MedicalNet encoder weights from %s (%d tensors; head %s* is new)", checkpoint, len(encoder), HEAD_PREFIX
    )
    return network
