"""Export a bundle's network to TorchScript or ONNX, and run an ONNX model as a ``torch.nn.Module``.

- :func:`export_bundle`: ``models/model.ts`` through MONAI's ``ckpt_export``, or ``models/model.onnx`` through
  ``torch.onnx.export`` with a dynamic batch axis; either way the exported model is run on the same input as the
  eager network and the maximum absolute difference goes into a JSON report next to it.
- :class:`OnnxRuntimeNetwork`: an ONNX Runtime session behind the ``nn.Module`` interface, so a bundle's own
  inference/evaluation workflow runs the exported model unchanged (``configs/inference_onnx.json`` overrides
  ``network_def`` with it).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UserValueError
from .fileio import atomic_path, atomic_write_text
from .weights import load_network_weights, sha256sum
from .zoo import Bundle

__all__ = [
    "EXPORT_FORMATS",
    "OnnxRuntimeNetwork",
    "example_input",
    "example_inputs",
    "export_bundle",
    "export_onnx",
    "onnx_parity",
]

EXPORT_FORMATS = ("ts", "onnx")


class OnnxRuntimeNetwork(nn.Module):
    """Run an ONNX file with ONNX Runtime on the CPU: ``[B, C, *S]`` float32 tensor in (one per input of the model,
    in the model's input order), the model's first output out.

    Args:
        path: the ``.onnx`` file.
        num_threads: ONNX Runtime intra-op threads per run (0 lets ONNX Runtime choose: one per core).
        allow_spinning: whether idle intra-op threads spin-wait for work (ONNX Runtime's default). Spinning costs CPU
            that data-loader workers on the same cores could use.
        concurrent_runs: run the images of a batch one by one on this many threads at the same time (0: one per
            CPU core), each thread taking the next image when it is done (sessions are thread-safe, and a run
            releases the GIL). With ``num_threads=1`` and one run per core, each core works through its own images
            without the synchronisation intra-op threads need after every operator, which loses time whenever another
            process (e.g. a data-loader worker) holds one of the cores.

    Example::

        network = OnnxRuntimeNetwork("models/model.onnx", num_threads=1, concurrent_runs=0)
        network(torch.rand(4, 1, 224, 224)).shape  # (4, 14), as many images at a time as there are cores
    """

    def __init__(
        self, path: str | os.PathLike, num_threads: int = 0, allow_spinning: bool = True, concurrent_runs: int = 1
    ) -> None:
        super().__init__()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"ONNX model not found: {path} (write it with `medzoo export <bundle> --format onnx`)"
            )
        if concurrent_runs < 0:
            raise ValueError(f"concurrent_runs must be 0 (one per core) or more, got {concurrent_runs}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.concurrent_runs = concurrent_runs or os.cpu_count() or 1
        self._pool = (
            ThreadPoolExecutor(self.concurrent_runs, thread_name_prefix="onnxruntime")
            if self.concurrent_runs > 1
            else None
        )

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        return self.session.run(None, dict(zip(self.input_names, arrays)))[0]

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        """``[B, C, *S]`` (and the model's further inputs, each ``[B, ...]``) -> the model's output as a float tensor
        on ``x``'s device."""
        if 1 + len(more) != len(self.input_names):
            raise ValueError(
                f"{self.path} takes {len(self.input_names)} inputs {self.input_names}, got {1 + len(more)}"
            )
        arrays = [t.detach().to("cpu", torch.float32).contiguous().numpy() for t in (x, *more)]
        if self._pool is not None and len(x) > 1:
            items = [[a[i : i + 1] for a in arrays] for i in range(len(x))]
            out = np.concatenate(list(self._pool.map(self._run, items)))
        else:
            out = self._run(arrays)
        return torch.from_numpy(np.ascontiguousarray(out)).to(x.device)


def example_input(bundle: Bundle, batch_size: int = 2, seed: int = 1, num_channels: int | None = None) -> torch.Tensor:
    """A random input of the metadata's shape ``[batch_size, C, *spatial_shape]`` (symbolic sizes become 64);
    ``num_channels`` replaces the metadata's C (e.g. for a network that makes the input, see
    :func:`medzoo.bench.measure.input_network`)."""
    spec = next(iter(bundle.metadata["network_data_format"]["inputs"].values()))
    shape = [s if isinstance(s, int) else 64 for s in spec["spatial_shape"]]
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, num_channels or spec["num_channels"], *shape, generator=generator)


def example_inputs(bundle: Bundle, batch_size: int = 2, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """One random tensor per input of the metadata, in its order: :func:`example_input` for the first, then one for
    each further input from a second generator: ``[batch_size, C]`` for a vector (written like class outputs as
    ``spatial_shape`` ``[1, C]``, e.g. a clinical feature vector), else ``[batch_size, C, *spatial_shape]``."""
    specs = list(bundle.metadata["network_data_format"]["inputs"].values())
    generator = torch.Generator().manual_seed(seed + 1)
    more = []
    for spec in specs[1:]:
        shape = [s if isinstance(s, int) else 64 for s in spec["spatial_shape"]]
        shape = [] if shape == [1, spec["num_channels"]] else shape
        more.append(torch.rand(batch_size, spec["num_channels"], *shape, generator=generator))
    return (example_input(bundle, batch_size, seed), *more)


def input_names(bundle: Bundle) -> list[str]:
    """The metadata's input names, in order (the ONNX input names; ``["image"]`` for one-image bundles)."""
    return list(bundle.metadata["network_data_format"]["inputs"])


def export_onnx(
    network: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    path: str | os.PathLike,
    opset: int = 17,
    names: list[str] | None = None,
) -> Path:
    """Export ``network`` (eval mode) to ONNX with inputs ``names`` (default ``["image"]``) for the tensors of
    ``example`` (one tensor, or a tuple of them in the network's argument order), output ``pred``, and a dynamic batch
    axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = example if isinstance(example, tuple) else (example,)
    names = names or ["image"]
    if len(names) != len(example):
        raise ValueError(f"{len(example)} example inputs but {len(names)} input names {names}")
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(
            network.eval(),
            example,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=["pred"],
            dynamic_axes={**{n: {0: "batch"} for n in names}, "pred": {0: "batch"}},
        )
    return path


def onnx_parity(network: nn.Module, onnx_path: str | os.PathLike, example: torch.Tensor) -> float:
    """Maximum absolute difference between the eager network and the ONNX Runtime model on ``example``."""
    return _parity(network, OnnxRuntimeNetwork(onnx_path), example)[0]


def _parity(
    network: nn.Module, exported: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]
) -> tuple[float, float]:
    """(max abs difference, max abs eager output) on ``example`` (one tensor, or a tuple: the network's inputs)."""
    example = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        expected = network.eval()(*example)
        return (exported(*example) - expected).abs().max().item(), expected.abs().max().item()


def export_bundle(
    bundle: Bundle,
    fmt: str = "onnx",
    weights: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    atol: float = 1e-3,
) -> dict:
    """Export ``bundle``'s ``network_def`` with ``weights`` (default ``models/model.pt``) to ``models/model.<fmt>``.

    Writes ``<output>.json`` with the parity check (max abs difference against eager on a batch of 2 random inputs of
    the metadata's shapes, one tensor per metadata input) and returns that report. Raises if the difference exceeds ``atol`` times the largest eager
    output magnitude (at least 1: float32 kernels differ in summation order, so large outputs differ more); no model
    file is left behind then.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserValueError(f"unknown export format '{fmt}'; choose one of {EXPORT_FORMATS} with --format")
    weights = Path(weights) if weights else bundle.root / "models" / "model.pt"
    output = Path(output) if output else bundle.root / "models" / f"model.{fmt}"
    network = load_network_weights(bundle.network(), weights)
    network.eval()
    example = example_inputs(bundle)
    if fmt == "onnx":
        export_onnx(network, example, output, names=input_names(bundle))
        diff, scale = _parity(network, OnnxRuntimeNetwork(output), example)
    else:
        from monai.bundle import ckpt_export

        output.parent.mkdir(parents=True, exist_ok=True)
        ckpt_export(
            net_id="network_def",
            filepath=str(output),
            ckpt_file=str(weights),
            meta_file=str(bundle.metadata_file),
            config_file=str(bundle.config_path("inference.json")),
            bundle_root=str(bundle.root),
        )
        diff, scale = _parity(network, torch.jit.load(str(output), map_location="cpu"), example)
    tolerance = atol * max(1.0, scale)
    if not diff <= tolerance:
        output.unlink(missing_ok=True)
        raise AssertionError(
            f"{bundle.name}: exported {fmt} model differs from eager by {diff:.2e} (> {tolerance:.2e}, "
            f"{atol} x output scale {scale:.3g}); removed"
        )
    report = {
        "bundle": bundle.name,
        "format": fmt,
        "model": str(output),
        "sha256": sha256sum(output),
        "size_bytes": output.stat().st_size,
        "weights": str(weights),
        "parity_input_shape": list(example[0].shape),
        "max_abs_diff": diff,
        "output_scale": scale,
        "tolerance": tolerance,
    }
    atomic_write_text(output.with_name(output.name + ".json"), json.dumps(report, indent=2) + "\n")
    return report
