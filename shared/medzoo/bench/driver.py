"""``medzoo benchmark``: every measurement of a bundle in one run (forward per backend, end-to-end inference with
its ratio to the bare network, one training epoch, optionally tuning), and the index's summary of it."""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path

from ..export import example_input, export_onnx
from ..quantize import quantize_onnx
from ..workflows import run_configs
from ..zoo import Bundle
from .measure import load_backend, scratch_weights
from .runner import in_subprocess, measure_in_subprocess
from .timing import machine_description
from .tuning import tune_inference

__all__ = ["benchmark_bundle", "benchmark_summary", "end_to_end_rounds"]


def benchmark_bundle(
    bundle: Bundle,
    dataset_dir: str | os.PathLike | None = None,
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
    runs: int = 5,
    int8: bool = True,
    train: bool = True,
    tune: bool = False,
    sample_overrides: dict | None = None,
    train_overrides: dict | None = None,
    ratio_rounds: int = 3,
    tune_backend: str | None = None,
) -> dict:
    """Every measurement of a bundle in one run: forward per backend (eager, ONNX Runtime, int8 ONNX Runtime),
    end-to-end inference per backend, one training epoch; ratios between them. With ``tune``, also
    :func:`~medzoo.bench.tuning.tune_inference` over ``batch_sizes`` and 0 / 1 / 2 workers on ``tune_backend``
    (``"torch"``: the eager ``inference.json``, ``"onnx"``: ``inference_onnx.json``), by default the exact backend
    with the fastest end-to-end inference.

    End-to-end / forward is the median of ``ratio_rounds`` rounds, each an end-to-end run followed by the bare
    network(s) at the run's batch size and settings: on a shared machine, a ratio of two measurements taken minutes
    apart moves with the neighbours' load; alternating them puts both sides of every round under the same load.

    Weights are deterministic initial weights (speed does not depend on their values). ``dataset_dir`` is the sample
    data (generated in a scratch folder with ``sample_data.json`` + ``sample_overrides`` if not given).
    """
    exact_backends = ["torch", *(["onnx"] if "inference_onnx.json" in bundle.configs else [])]
    if tune_backend is not None and (not tune or tune_backend not in exact_backends):
        raise ValueError(
            f"tune_backend needs tune and one of {exact_backends} for {bundle.name}, got "
            f"tune={tune}, tune_backend={tune_backend!r}"
        )
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = scratch_weights(bundle, scratch / "models")
        given_data = dataset_dir is not None
        if dataset_dir is None:
            dataset_dir = scratch / "data"
            run_configs(bundle, ["sample_data.json"], dataset_dir=str(dataset_dir), **(sample_overrides or {}))
        network = load_backend(bundle, "torch", weights)
        models = {
            "torch": ("torch", weights),
            "onnx": ("onnx", export_onnx(network, example_input(bundle, 1), scratch / "models" / "model.onnx")),
        }
        if int8:
            int8_model = scratch / "models" / "model_int8_static.onnx"
            quantize_onnx(
                bundle, models["onnx"][1], int8_model, "int8_static", dataset_dir=dataset_dir, ckpt_dir=weights.parent
            )
            models["onnx_int8"] = ("onnx", int8_model)
        results: dict = {
            "bundle": bundle.name,
            "machine": machine_description(),
            "cpu_count": os.cpu_count(),
            "measured_at": datetime.date.today().isoformat(),
            "weights": "initial (speed only)",
            "sample_data": "given" if given_data else {"sample_data.json": sample_overrides or {}},
            "options": {
                "batch_sizes": list(batch_sizes),
                "runs": runs,
                "int8": int8,
                "train": train,
                "train_overrides": train_overrides or {},
                "ratio_rounds": ratio_rounds,
                **({"tune_backend": tune_backend} if tune_backend else {}),
            },
            "inference": {},
            "forward": {},
        }
        for name, (backend, path) in models.items():
            if backend in exact_backends:  # int8 runs through inference_onnx.json too
                results["inference"][name] = end_to_end_rounds(
                    bundle, backend, path, dataset_dir, scratch / name, ratio_rounds, runs
                )
        # batch 1 always: the latency the index and `select` report
        sizes = {1, *batch_sizes} | {r["batch_size"] for r in results["inference"].values() if r.get("batch_size")}
        for name, (backend, path) in models.items():
            results["forward"][name] = measure_in_subprocess(bundle, backend, path, tuple(sorted(sizes)), runs=runs)
        if train and "train.json" in bundle.configs:  # before the long tuning: a training failure stops the run early
            results["train"] = in_subprocess(
                "train", bundle, dataset_dir=str(dataset_dir), workdir=str(scratch / "train"), **(train_overrides or {})
            )
        if tune:  # by default on the exact (fp32) backend with the fastest end-to-end inference
            exact = {k: v for k, v in results["inference"].items() if k in exact_backends}
            backend, path = models[tune_backend or max(exact, key=lambda k: exact[k]["images_per_s"])]
            results["tuning"] = tune_inference(
                bundle, dataset_dir, scratch / "tune", batch_sizes=tuple(batch_sizes), backend=backend, model=path
            )
    return results


def end_to_end_rounds(
    bundle: Bundle, backend: str, model: Path, dataset_dir: str | os.PathLike, workdir: Path, rounds: int, runs: int
) -> dict:
    """:func:`~medzoo.bench.measure.measure_inference` alternated with the bare network(s) at its batch size and
    thread settings (preceded by the bundle's :func:`~medzoo.bench.measure.input_network`, if any), ``rounds`` times:
    the round of median ratio (the lower middle one for an even count), plus every round's figures. A config
    without ``batch_size`` (sliding window) has no bare-network counterpart: one round, no ratio.
    """
    measured = []
    for k in range(max(1, rounds)):
        e2e = in_subprocess(
            "inference",
            bundle,
            backend=backend,
            model=str(model),
            dataset_dir=str(dataset_dir),
            workdir=str(workdir / f"round{k}"),
        )
        batch = e2e["batch_size"]
        if not batch:
            return e2e
        forward = measure_in_subprocess(
            bundle,
            backend,
            model,
            (batch,),
            runs=runs,
            onnx_options=e2e["onnx_options"],
            torch_options=e2e["torch_options"],
            with_input_network=True,
        )
        e2e["forward_same_batch"] = forward["per_batch"][str(batch)] | {"input_network": forward["input_network"]}
        e2e["ratio_to_forward_same_batch"] = e2e["steady_images_per_s"] / e2e["forward_same_batch"]["images_per_s"]
        measured.append(e2e)
    median = sorted(measured, key=lambda r: r["ratio_to_forward_same_batch"])[(len(measured) - 1) // 2]
    return median | {
        "rounds": [
            {
                "steady_images_per_s": r["steady_images_per_s"],
                "forward_images_per_s": r["forward_same_batch"]["images_per_s"],
                "ratio": r["ratio_to_forward_same_batch"],
            }
            for r in measured
        ]
    }


def benchmark_summary(bundle: Bundle, results: dict) -> dict:
    """The index's ``benchmark`` record: the fastest exact (fp32) backend at batch 1 and its best throughput."""
    exact = {k: v for k, v in results["forward"].items() if k in ("torch", "onnx")}
    fastest = min(exact, key=lambda k: exact[k]["latency_ms_b1"])
    best = exact[fastest]
    return {
        "version": bundle.metadata["version"],
        "backend": fastest,
        "latency_ms_b1": round(best["latency_ms_b1"], 2),
        "throughput_img_s": round(best["best_images_per_s"], 2),
        "peak_memory_mb": round(best["peak_rss_mb"]),
        "size_mb": round(best["size_bytes"] / 1e6, 2),
        "machine": results["machine"],
        "measured_at": results["measured_at"],
    }
