"""Compare model files of one bundle (e.g. FP32 eager, FP32 ONNX Runtime, a compressed model) as ratios measured
in one run, each optionally evaluated with the bundle's own ``evaluate.json``; and the Markdown table of the ratios."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..zoo import Bundle
from .measure import load_backend
from .runner import measure_in_subprocess

__all__ = ["compare_backends", "comparison_markdown", "evaluate_backend"]


def evaluate_backend(
    bundle: Bundle,
    backend: str,
    model: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
) -> dict:
    """Run the bundle's own evaluation (``train.json`` + ``evaluate.json``) with the network replaced by ``model``.

    The evaluation's weight-loading handlers are removed (the model file carries the weights) and ``network_def``
    becomes the backend's module. Returns the metrics.json it writes.
    """
    from ..workflows import run_configs

    run_configs(
        bundle,
        ["train.json", "evaluate.json"],
        workflow_type="eval",
        drop_weight_loaders=True,
        network_def=load_backend(bundle, backend, model),
        dataset_dir=str(dataset_dir),
        output_dir=str(output_dir),
        num_workers=0,
    )
    return json.loads((Path(output_dir) / "metrics.json").read_text())


def compare_backends(
    bundle: Bundle,
    variants: dict[str, tuple[str, str]],
    reference: str = "fp32_eager",
    dataset_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    batch_sizes: tuple[int, ...] = (1, 4, 8),
    warmup: int = 2,
    runs: int = 5,
) -> dict:
    """Measure each ``name -> (backend, model file)`` and express it as ratios to ``variants[reference]``.

    Ratios: ``size`` and ``peak_memory`` (lower is better), ``latency_b1`` (variant / reference: lower is better),
    ``speedup_b1`` and ``throughput`` (higher is better). With ``dataset_dir`` (the bundle's sample data) and
    ``workdir``, each variant is also evaluated and ``metric_delta`` gives its key metric minus the reference's.
    """
    results = {
        name: measure_in_subprocess(bundle, backend, path, batch_sizes, warmup, runs)
        for name, (backend, path) in variants.items()
    }
    if dataset_dir is not None:
        for name, (backend, path) in variants.items():
            results[name]["metrics"] = evaluate_backend(bundle, backend, path, dataset_dir, Path(workdir) / name)
    ref = results[reference]
    for r in results.values():
        r["ratios"] = {
            "size": r["size_bytes"] / ref["size_bytes"],
            "latency_b1": r["latency_ms_b1"] / ref["latency_ms_b1"],
            "speedup_b1": ref["latency_ms_b1"] / r["latency_ms_b1"],
            "throughput": r["best_images_per_s"] / ref["best_images_per_s"],
            "peak_memory": r["peak_rss_mb"] / ref["peak_rss_mb"],
        }
        if "metrics" in r:
            r["ratios"]["metric_delta"] = {
                k: v - ref["metrics"][k]
                for k, v in r["metrics"].items()
                if isinstance(v, float) and isinstance(ref["metrics"].get(k), float)
            }
    return {"bundle": bundle.name, "reference": reference, "cpu_count": os.cpu_count(), "variants": results}


def comparison_markdown(comparison: dict) -> str:
    """A Markdown table of :func:`compare_backends`'s ratios."""
    lines = [
        "| variant | size | latency b1 (ms) | speed-up b1 | best throughput (img/s, batch) | peak memory | "
        "metric delta |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in comparison["variants"].items():
        ratios = r["ratios"]
        delta = ", ".join(f"{k} {v:+.4f}" for k, v in ratios.get("metric_delta", {}).items()) or "-"
        lines.append(
            f"| {name} | {r['size_bytes'] / 1e6:.1f} MB ({ratios['size']:.2f}x) | {r['latency_ms_b1']:.1f} | "
            f"{ratios['speedup_b1']:.2f}x | {r['best_images_per_s']:.1f} (b{r['best_batch_size']}, "
            f"{ratios['throughput']:.2f}x) | "
            f"{r['peak_rss_mb']:.0f} MB ({ratios['peak_memory']:.2f}x) | {delta} |"
        )
    return "\n".join(lines) + "\n"
