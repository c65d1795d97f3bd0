"""Size of a network: parameters and multiply-accumulates of one forward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "count_parameters"]


def count_parameters(network: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in network.parameters())


def count_macs(network: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a zero input of ``input_shape`` (e.g. ``[1, 1, 224, 224]``).

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts the FLOPs of matrix products,
    convolutions and attention (2 per multiply-accumulate); element-wise operations, pooling and normalisation are
    not counted, as in the usual MAC figures of papers.
    """
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(torch.zeros(*input_shape))
    finally:
        network.train(was_training)
    return int(counter.get_total_flops()) // 2
