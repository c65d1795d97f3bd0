"""Measure a bundle's network on this CPU, per backend, and compare backends as ratios taken in one run.

A measurement runs in its own subprocess (``python -m medzoo.benchmark``) so that its peak resident memory is its
own. It warms up, then times ``runs`` forward passes per batch size and keeps the median.

Backends: ``torch`` (eager, a ``.pt`` state dict), ``torchscript`` (``.ts``), ``onnx`` (ONNX Runtime, any ``.onnx``
file including int8 ones).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .fileio import atomic_write_text
from .zoo import Bundle

__all__ = ["BACKENDS", "compare_backends", "evaluate_backend", "load_backend", "markdown_table", "measure",
           "measure_in_subprocess", "peak_rss_mb", "write_report"]

BACKENDS = ("torch", "torchscript", "onnx")


def load_backend(bundle: Bundle, backend: str, model: str | os.PathLike) -> torch.nn.Module:
    """The bundle's network as a callable ``[B, C, *S] -> output`` for ``backend`` with the weights in ``model``."""
    if backend == "torch":
        from .weights import load_state_dict

        network = bundle.network()
        network.load_state_dict(load_state_dict(model))
        return network.eval()
    if backend == "torchscript":
        return torch.jit.load(str(model), map_location="cpu").eval()
    if backend == "onnx":
        from .export import OnnxRuntimeNetwork

        return OnnxRuntimeNetwork(model)
    raise ValueError(f"unknown backend '{backend}'; choose one of {BACKENDS}")


def measure(bundle: Bundle, backend: str, model: str | os.PathLike, batch_sizes: tuple[int, ...] = (1, 4, 8),
            warmup: int = 2, runs: int = 5) -> dict:
    """Median forward latency per batch size, best throughput, and this process's peak resident memory."""
    from .export import example_input

    network = load_backend(bundle, backend, model)
    per_batch = {}
    with torch.inference_mode():
        for batch_size in batch_sizes:
            x = example_input(bundle, batch_size=batch_size)
            for _ in range(warmup):
                network(x)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                network(x)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            per_batch[str(batch_size)] = {"latency_ms": 1000 * median, "images_per_s": batch_size / median}
    best = max(per_batch, key=lambda b: per_batch[b]["images_per_s"])
    return {
        "backend": backend,
        "model": str(model),
        "size_bytes": Path(model).stat().st_size,
        "torch_threads": torch.get_num_threads(),
        "per_batch": per_batch,
        "latency_ms_b1": per_batch["1"]["latency_ms"] if "1" in per_batch else None,
        "best_batch_size": int(best),
        "best_images_per_s": per_batch[best]["images_per_s"],
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (``VmHWM``; unlike ``ru_maxrss`` it does not include the memory of
    the parent a subprocess was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_subprocess(bundle: Bundle, backend: str, model: str | os.PathLike, batch_sizes: tuple[int, ...] = (1, 4, 8),
                          warmup: int = 2, runs: int = 5) -> dict:
    """:func:`measure` in a fresh Python process (so peak memory is this backend's alone)."""
    command = [sys.executable, "-m", "medzoo.benchmark", str(bundle.root), backend, str(model),
               "--batch_sizes", *map(str, batch_sizes), "--warmup", str(warmup), "--runs", str(runs)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{bundle.name}: measuring {backend} {model} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def evaluate_backend(bundle: Bundle, backend: str, model: str | os.PathLike, dataset_dir: str | os.PathLike,
                     output_dir: str | os.PathLike) -> dict:
    """Run the bundle's own evaluation (``train.json`` + ``evaluate.json``) with the network replaced by ``model``.

    The evaluation's weight-loading handlers are removed (the model file carries the weights) and ``network_def``
    becomes the backend's module. Returns the metrics.json it writes.
    """
    from .workflows import run_configs

    run_configs(bundle, ["train.json", "evaluate.json"], workflow_type="eval", drop_weight_loaders=True,
                network_def=load_backend(bundle, backend, model), dataset_dir=str(dataset_dir),
                output_dir=str(output_dir), num_workers=0)
    return json.loads((Path(output_dir) / "metrics.json").read_text())


def compare_backends(bundle: Bundle, variants: dict[str, tuple[str, str]], reference: str = "fp32_eager",
                     dataset_dir: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
                     batch_sizes: tuple[int, ...] = (1, 4, 8), warmup: int = 2, runs: int = 5) -> dict:
    """Measure each ``name -> (backend, model file)`` and express it as ratios to ``variants[reference]``.

    Ratios: ``size`` and ``peak_memory`` (lower is better), ``latency_b1`` (variant / reference: lower is better),
    ``speedup_b1`` and ``throughput`` (higher is better). With ``dataset_dir`` (the bundle's sample data) and
    ``workdir``, each variant is also evaluated and ``metric_delta`` gives its key metric minus the reference's.
    """
    results = {name: measure_in_subprocess(bundle, backend, path, batch_sizes, warmup, runs)
               for name, (backend, path) in variants.items()}
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
            r["ratios"]["metric_delta"] = {k: v - ref["metrics"][k] for k, v in r["metrics"].items()
                                           if isinstance(v, float) and isinstance(ref["metrics"].get(k), float)}
    return {"bundle": bundle.name, "reference": reference, "cpu_count": os.cpu_count(), "variants": results}


def markdown_table(comparison: dict) -> str:
    """A Markdown table of :func:`compare_backends`'s ratios."""
    lines = ["| variant | size | latency b1 (ms) | speed-up b1 | best throughput (img/s, batch) | peak memory | metric delta |",
             "|---|---|---|---|---|---|---|"]
    for name, r in comparison["variants"].items():
        ratios = r["ratios"]
        delta = ", ".join(f"{k} {v:+.4f}" for k, v in ratios.get("metric_delta", {}).items()) or "-"
        lines.append(
            f"| {name} | {r['size_bytes'] / 1e6:.1f} MB ({ratios['size']:.2f}x) | {r['latency_ms_b1']:.1f} | "
            f"{ratios['speedup_b1']:.2f}x | {r['best_images_per_s']:.1f} (b{r['best_batch_size']}, {ratios['throughput']:.2f}x) | "
            f"{r['peak_rss_mb']:.0f} MB ({ratios['peak_memory']:.2f}x) | {delta} |"
        )
    return "\n".join(lines) + "\n"


def write_report(comparison: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<path>.json`` and ``<path>.md``."""
    path = Path(path)
    json_file, md_file = path.with_suffix(".json"), path.with_suffix(".md")
    atomic_write_text(json_file, json.dumps(comparison, indent=2) + "\n")
    atomic_write_text(md_file, markdown_table(comparison))
    return json_file, md_file


def _main() -> None:
    parser = argparse.ArgumentParser(description="Measure one backend of a bundle's network; prints one JSON line.")
    parser.add_argument("bundle")
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("model")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result = measure(Bundle(args.bundle), args.backend, args.model, tuple(args.batch_sizes), args.warmup, args.runs)
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
