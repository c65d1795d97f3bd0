"""Inferers, and the network wrapper for running a batch on every core, shared by the bundles' ``inference.json``."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type
from torch import nn

__all__ = ["ConcurrentRuns", "PlainTensorInferer"]


class PlainTensorInferer(Inferer):
    """Run ``inferer`` on the plain tensor of a :class:`MetaTensor` batch, then put the batch's metadata on the output.

    A network called on a ``MetaTensor`` pays MONAI's metadata bookkeeping on every operation; on a plain tensor it
    does not (``benchmarks/plain_tensor_inferer.py`` measures the difference into
    ``docs/plain_tensor_inferer.md``). The output is
    what the plain call would have returned, as a ``MetaTensor`` carrying the input's metadata and applied
    operations, so postprocessing (``Invertd``, writers reading ``filename_or_obj``) sees the same thing as without
    this wrapper. Tuple or dict outputs are returned as they are. MONAI's sliding-window inference already hands
    plain tensors to the network and needs no wrapper.

    When gradients are already off (MONAI's evaluators run the inferer under ``torch.no_grad``), the network runs
    under ``torch.inference_mode``, which also skips autograd's version counters and view tracking (the benchmark's
    bare network runs that way too). With gradients on (e.g. an inferer called during training), nothing changes.

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


class ConcurrentRuns(nn.Module):
    """Run ``network`` on ``runs`` chunks of each batch at the same time, each chunk on its own thread with one
    PyTorch intra-op thread: ``[B, C, *S]`` in, the chunks' outputs concatenated along the batch out.

    PyTorch's intra-op threads wait for each other after every operator, and a core taken by another process (a
    data-loader worker decoding images) stalls all of them. One single-threaded forward per core has no such
    rendezvous (``benchmarks/torch_thread_layouts.py`` compares the two layouts into
    ``docs/torch_thread_layouts.md``; ``medzoo benchmark --tune`` compares them end to end). It is the eager
    counterpart of :class:`medzoo.export.OnnxRuntimeNetwork`'s ``concurrent_runs``.

    PyTorch's thread count is process-wide, so a call sets it to 1 while its runs start and puts the caller's back
    when they are done: the rest of the process (e.g. Grad-CAM's backward pass, a server around the bundle) keeps its
    intra-op threads. Calls are serialised (each one already uses every core). The runs take the caller's gradient
    mode (``torch.no_grad`` / ``torch.inference_mode`` are per thread). A batch of one and ``runs=1`` call ``network``
    directly. The wrapper has no parameters of its own: weights are loaded into ``network``.

    Args:
        network: a module whose output is one tensor with the batch first.
        runs: chunks per batch, each on its own thread (0: one per CPU core; 1: ``network`` as it is).

    Example::

        network = ConcurrentRuns(DenseNet121(spatial_dims=2, in_channels=1, out_channels=14), runs=0)
        network(torch.rand(8, 1, 224, 224)).shape  # (8, 14): two chunks of 4 at once on a two-core machine
    """

    def __init__(self, network: nn.Module, runs: int = 0) -> None:
        super().__init__()
        if runs < 0:
            raise ValueError(f"runs must be 0 (one per core) or more, got {runs}")
        self.network = network
        self.runs = runs or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.runs, thread_name_prefix="torch-run") if self.runs > 1 else None
        self._lock = threading.Lock()
        self._single_threaded = threading.local()

    def _run(self, chunk: torch.Tensor, grad: bool, inference: bool) -> torch.Tensor:
        if not getattr(self._single_threaded, "done", False):  # this pool thread's own OpenMP / MKL thread count
            torch.set_num_threads(1)
            self._single_threaded.done = True
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            out = self.network(chunk)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"ConcurrentRuns needs a network that returns one tensor, got {type(out).__name__}")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, *S]`` -> ``network``'s output ``[B, ...]``."""
        if self._pool is None or len(x) < 2:
            return self.network(x)
        modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        with self._lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                outputs = list(self._pool.map(lambda chunk: self._run(chunk, *modes), x.chunk(self.runs)))
            finally:
                torch.set_num_threads(threads)
        return torch.cat(outputs)
