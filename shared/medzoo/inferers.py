"""Inferers shared by the bundles' ``inference.json``."""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

__all__ = ["PlainTensorInferer"]


class PlainTensorInferer(Inferer):
    """Run ``inferer`` on the plain tensor of a :class:`MetaTensor` batch, then put the batch's metadata on the output.

    A network called on a ``MetaTensor`` pays MONAI's metadata bookkeeping on every operation: on two CPU cores the
    bare forward is 1.05x (LocalNet) to 1.15x (MobileNetV3) faster on plain tensors, DenseNet121's end-to-end
    inference 1.09x (``scripts/benchmark_plain_tensor_inferer.py``, ``docs/plain_tensor_inferer.md``). The output is
    what the plain call would have returned, as a ``MetaTensor`` carrying the input's metadata and applied
    operations, so postprocessing (``Invertd``, writers reading ``filename_or_obj``) sees the same thing as without
    this wrapper. Tuple or dict outputs are returned as they are. MONAI's sliding-window inference already hands
    plain tensors to the network and needs no wrapper.

    When gradients are already off (MONAI's evaluators run the inferer under ``torch.no_grad``), the network runs
    under ``torch.inference_mode``, which also skips autograd's version counters and view tracking: the benchmark's
    bare network runs that way too, and a LocalNet forward of four 96x96 slices took ~4% less time. With gradients
    on (e.g. an inferer called during training), nothing changes.

    Args:
        inferer: the inferer to run, e.g. ``SimpleInferer()``.

    Example::

        "inferer": {"_target_": "medzoo.inferers.PlainTensorInferer", "inferer": {"_target_": "SimpleInferer"}}
    """

    def __init__(self, inferer: Inferer) -> None:
        super().__init__()
        self.inferer = inferer

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        """``inputs``: (B, C, *spatial); returns the wrapped inferer's output, e.g. (B, out_channels, *spatial)."""
        with torch.inference_mode(not torch.is_grad_enabled()):
            if not isinstance(inputs, MetaTensor):
                return self.inferer(inputs, network, *args, **kwargs)
            outputs = self.inferer(inputs.as_tensor(), network, *args, **kwargs)
        if isinstance(outputs, torch.Tensor):
            return convert_to_dst_type(outputs, inputs)[0]
        return outputs
