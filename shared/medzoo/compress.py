"""Post-training compression of any bundle of the zoo, with a report measured against FP32 eager in the same run.

Methods (``medzoo compress <bundle> --method ...``):

- ``int8_dynamic``: ONNX Runtime dynamic quantization (int8 weights, activations quantized on the fly);
- ``int8_static``: ONNX Runtime static QDQ quantization (per-channel int8 weights, uint8 activations) calibrated on the
  bundle's sample data passed through its own inference preprocessing;
- ``prune_magnitude``: global unstructured L1 pruning of convolution/linear weights (``amount`` of them set to 0);
- ``prune_channels``: structured L2 pruning of convolution output channels (``amount`` of each layer's channels set
  to 0). Both pruning methods keep the tensor shapes, so they change neither size nor speed of a dense model; the
  report measures and says so. With ``fine_tune_epochs`` the pruned network is fine-tuned with the bundle's own
  ``train.json``, masks kept in place so pruned weights stay zero;
- ``qat``: quantization-aware training: fake-quantized (int8) fine-tuning with the bundle's own ``train.json``
  (``torch.ao`` FX graph mode, x86 backend), then conversion to an int8 TorchScript model.

The starting point is an ONNX export (``int8_*``, see :mod:`medzoo.quantize`) or the bundle's weights, default
``models/model.pt``.
Each method writes its model file to ``models/`` and a JSON report beside it; :func:`compare_backends` measures the
ratios (size, latency, throughput, peak memory, task metric).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bench.compare import compare_backends, comparison_markdown
from .errors import UserFileNotFoundError, UserValueError, missing_weights_hint
from .export import example_input, export_bundle, export_onnx, onnx_parity
from .fileio import atomic_path, atomic_write_text
from .quantize import QUANTIZATION_METHODS, calibration_inputs, quantize_onnx
from .weights import load_state_dict, save_weights, sha256sum
from .zoo import Bundle

__all__ = [
    "METHODS",
    "compress_bundle",
    "compression_summary",
    "fine_tune",
    "prune_network",
    "quantization_aware_training",
    "sparsity",
]

METHODS = (*QUANTIZATION_METHODS, "prune_magnitude", "prune_channels", "qat")


def _prunable(network: nn.Module, convolutions_only: bool) -> list[tuple[nn.Module, str]]:
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d) if convolutions_only else (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    return [(m, "weight") for m in network.modules() if isinstance(m, kinds)]


def prune_network(network: nn.Module, method: str, amount: float, permanent: bool = True) -> nn.Module:
    """Prune ``network`` in place; ``permanent`` leaves plain zeroed weights, otherwise the masks stay attached (for
    fine-tuning: the pruned weights stay zero while the others train; call ``torch.nn.utils.prune.remove`` after).

    ``prune_magnitude``: the ``amount`` fraction of all conv/linear weights with the smallest absolute value (global).
    ``prune_channels``: in every convolution, the ``amount`` fraction of output channels with the smallest L2 norm.
    """
    from torch.nn.utils import prune

    if not 0.0 < amount < 1.0:
        raise ValueError(f"amount must be in (0, 1), got {amount}")
    if method == "prune_magnitude":
        targets = _prunable(network, convolutions_only=False)
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    elif method == "prune_channels":
        targets = _prunable(network, convolutions_only=True)
        for module, name in targets:
            prune.ln_structured(module, name, amount=amount, n=2, dim=0)
    else:
        raise ValueError(f"unknown pruning method '{method}'; choose prune_magnitude or prune_channels")
    if permanent:
        for module, name in targets:
            prune.remove(module, name)
    return network


def fine_tune(
    bundle: Bundle, network: nn.Module, epochs: int, dataset_dir: str | os.PathLike, **overrides
) -> nn.Module:
    """Train ``network`` (in place) for ``epochs`` with the bundle's own ``train.json`` on ``dataset_dir``.

    The config's ``network_def`` is replaced by ``network``; checkpoints and logs go to a scratch folder. ``overrides``
    reach the config (e.g. ``learning_rate``, ``spatial_size``, ``batch_size``).
    """
    from .workflows import run_configs

    if "train.json" not in bundle.configs:
        raise ValueError(f"{bundle.name} has no train.json: it cannot be fine-tuned")
    with tempfile.TemporaryDirectory() as scratch:
        run_configs(
            bundle,
            ["train.json"],
            workflow_type="train",
            network_def=network,
            max_epochs=epochs,
            dataset_dir=str(dataset_dir),
            ckpt_dir=f"{scratch}/models",
            output_dir=f"{scratch}/eval",
            **{"num_workers": 0, "progress_bar": False, **overrides},
        )
    return network


def quantization_aware_training(
    bundle: Bundle, network: nn.Module, epochs: int, dataset_dir: str | os.PathLike, **overrides
) -> torch.jit.ScriptModule:
    """Fake-quantize ``network`` (x86 int8 QAT config), fine-tune it with the bundle's ``train.json``, convert it to
    int8 and return it traced to TorchScript (input shape from the metadata, any batch size)."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    torch.backends.quantized.engine = "x86"
    example = example_input(bundle, batch_size=2)
    prepared = prepare_qat_fx(network.train(), get_default_qat_qconfig_mapping("x86"), (example,))
    fine_tune(bundle, prepared, epochs, dataset_dir, **overrides)
    quantized = convert_fx(prepared.cpu().eval())
    with torch.no_grad():
        return torch.jit.trace(quantized, example)


def sparsity(network: nn.Module) -> float:
    """Fraction of zeros among the conv/linear weights."""
    weights = [m.weight for m, _ in _prunable(network, convolutions_only=False)]
    return float(sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights))


def _compare(
    bundle: Bundle, method: str, weights: Path, output: Path, dataset_dir: Path, batch_sizes: tuple[int, ...], runs: int
) -> dict:
    fp32_onnx = export_bundle(bundle, "onnx", weights, output=output.with_name("model_fp32.onnx"))["model"]
    variants = {
        "fp32_eager": ("torch", str(weights)),
        "fp32_onnx": ("onnx", fp32_onnx),
        method: ({".onnx": "onnx", ".ts": "torchscript"}.get(output.suffix, "torch"), str(output)),
    }
    evaluate = "evaluate.json" in bundle.configs and dataset_dir.is_dir()
    with tempfile.TemporaryDirectory() as workdir:
        comparison = compare_backends(
            bundle,
            variants,
            dataset_dir=dataset_dir if evaluate else None,
            workdir=workdir,
            batch_sizes=batch_sizes,
            runs=runs,
        )
    atomic_write_text(output.with_name(output.name + ".md"), comparison_markdown(comparison))
    return comparison


def compression_summary(report: dict) -> str:
    """What :func:`compress_bundle` made, for a person: the model file and its size against FP32, the measured
    comparison as a Markdown table (when measured), and where the report is."""
    lines = [f"{report['output']}: {report['size_ratio']:.2f}x the FP32 size"]
    if "comparison" in report:
        lines.append(comparison_markdown(report["comparison"]))
    lines.append(f"report: {report['output']}.json")
    return "\n".join(lines)


def compress_bundle(
    bundle: Bundle,
    method: str,
    weights: str | os.PathLike | None = None,
    amount: float = 0.5,
    calibration_count: int = 16,
    dataset_dir: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    fine_tune_epochs: int = 0,
    measure: bool = True,
    batch_sizes: tuple[int, ...] = (1, 4, 8),
    runs: int = 5,
    **train_overrides,
) -> dict:
    """Compress ``bundle`` with ``method`` (see :data:`METHODS`); write the model file and ``<file>.json``; return it.

    The report has the output file, its size against the FP32 source, the method's settings, and for pruning the
    measured sparsity. With ``measure``, it also holds :func:`medzoo.bench.compare.compare_backends` of FP32 eager, FP32
    ONNX Runtime and the compressed model, measured in this run (and a Markdown table ``<file>.md``), each also
    evaluated with the bundle's ``evaluate.json`` if it has one.

    ``dataset_dir`` is the bundle's sample data (default ``sample_data/`` in the bundle; generated with
    ``sample_data.json`` if missing), used for int8 calibration, fine-tuning (``fine_tune_epochs`` for pruning, at
    least 1 for ``qat``; ``train_overrides`` reach ``train.json``) and evaluation.
    """
    if method not in METHODS:
        raise UserValueError(f"unknown compression method '{method}'; choose one of {METHODS} with --method")
    weights = Path(weights) if weights else bundle.root / "models" / "model.pt"
    if not weights.is_file():
        raise UserFileNotFoundError(f"{bundle.name}: weights not found: {weights}; {missing_weights_hint(weights)}")
    network = bundle.network()
    network.load_state_dict(load_state_dict(weights))
    network.eval()
    report: dict = {"bundle": bundle.name, "method": method, "source_weights": str(weights)}
    dataset_dir = Path(dataset_dir) if dataset_dir else bundle.root / "sample_data"
    if not dataset_dir.is_dir() and "sample_data.json" in bundle.configs:
        from .workflows import run_configs

        run_configs(bundle, ["sample_data.json"], dataset_dir=str(dataset_dir))
    if method.startswith("int8"):
        output = Path(output) if output else bundle.root / "models" / f"model_{method}.onnx"
        fp32 = output.with_name("model_fp32_for_quantization.onnx")
        export_onnx(network, example_input(bundle, batch_size=1), fp32)
        try:
            # a frozen sub-network's weights (see medzoo.weights.write_frozen_init_weights) lie beside the weights
            quantize_onnx(bundle, fp32, output, method, calibration_count, dataset_dir, weights.parent)
            # parity on real preprocessed inputs: random tensors are far outside the calibrated activation ranges
            real = torch.from_numpy(np.concatenate(list(calibration_inputs(bundle, 4, dataset_dir, weights.parent))))
            report.update(
                source_size_bytes=fp32.stat().st_size,
                max_abs_diff_vs_eager=onnx_parity(network, output, real),
                parity_inputs=f"{len(real)} preprocessed sample-data images",
                calibration_inputs=calibration_count if method == "int8_static" else 0,
            )
        finally:
            fp32.unlink(missing_ok=True)
    elif method == "qat":
        if fine_tune_epochs < 1:
            raise ValueError("qat needs fine_tune_epochs >= 1 (the quantization-aware training itself)")
        output = Path(output) if output else bundle.root / "models" / "model_qat_int8.ts"
        quantized = quantization_aware_training(bundle, network, fine_tune_epochs, dataset_dir, **train_overrides)
        with atomic_path(output) as tmp:
            torch.jit.save(quantized, str(tmp))
        report.update(
            source_size_bytes=weights.stat().st_size,
            fine_tune_epochs=fine_tune_epochs,
            backend="torch x86 (fbgemm) int8, TorchScript",
        )
    else:
        output = Path(output) if output else bundle.root / "models" / f"model_{method}.pt"
        before = sparsity(network)
        prune_network(network, method, amount, permanent=fine_tune_epochs == 0)
        if fine_tune_epochs:
            from torch.nn.utils import prune

            fine_tune(bundle, network, fine_tune_epochs, dataset_dir, **train_overrides)
            for module, name in _prunable(network, convolutions_only=False):
                if hasattr(module, name + "_mask"):
                    prune.remove(module, name)
        save_weights(network.state_dict(), output)
        report.update(
            source_size_bytes=weights.stat().st_size,
            amount=amount,
            sparsity_before=before,
            sparsity_after=sparsity(network),
            fine_tune_epochs=fine_tune_epochs,
            note="pruned weights are stored dense: zeros change neither file size nor dense-kernel speed",
        )
    report.update(
        output=str(output),
        sha256=sha256sum(output),
        size_bytes=output.stat().st_size,
        size_ratio=output.stat().st_size / report["source_size_bytes"],
    )
    if measure:
        report["comparison"] = _compare(bundle, method, weights, output, dataset_dir, batch_sizes, runs)
    atomic_write_text(output.with_name(output.name + ".json"), json.dumps(report, indent=2) + "\n")
    return report
