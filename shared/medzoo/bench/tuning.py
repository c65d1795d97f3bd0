"""Tune a bundle's inference defaults: end-to-end inference over a grid of batch sizes, data-loader workers and
thread layouts (eager: ``torch_concurrent_runs``, ONNX Runtime: ``onnx_threads`` / ``onnx_concurrent_runs``), each
cell in a fresh process. The bundles' defaults (``batch_size``, ``num_workers`` and those layouts) come from it."""

from __future__ import annotations

import os
from pathlib import Path

from ..zoo import Bundle
from .runner import in_subprocess

__all__ = ["thread_layouts", "tune_inference"]


def thread_layouts(backend: str) -> list[dict]:
    """The two ways of running a backend that tuning compares, as inference config ids: one run at a time with an
    intra-op thread per core, or one single-threaded run per core at the same time (``onnx``: ``inference_onnx.json``'s
    ``onnx_threads`` / ``onnx_concurrent_runs``; ``torch``: ``inference.json``'s ``torch_concurrent_runs``)."""
    if backend == "onnx":
        return [{"onnx_threads": 0, "onnx_concurrent_runs": 1}, {"onnx_threads": 1, "onnx_concurrent_runs": 0}]
    if backend == "torch":
        return [{"torch_concurrent_runs": 1}, {"torch_concurrent_runs": 0}]
    raise ValueError(f"thread layouts are tuned for torch and onnx, not '{backend}'")


def tune_inference(
    bundle: Bundle,
    dataset_dir: str | os.PathLike,
    workdir: str | os.PathLike,
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
    worker_counts: tuple[int, ...] = (0, 1, 2),
    backend: str = "torch",
    model: str | os.PathLike | None = None,
    layouts: list[dict] | None = None,
) -> dict:
    """End-to-end inference (:func:`~medzoo.bench.measure.measure_inference`, a fresh process per cell) over a grid
    of ``batch_size`` and data-loader ``num_workers`` and, when the bundle's config sets ``onnx_concurrent_runs``
    (``onnx``) or ``torch_concurrent_runs`` (``torch``), the thread ``layouts`` (default :func:`thread_layouts`): the
    measurement the bundle's defaults are chosen from.

    Returns every cell, the fastest cell in steady state and the bundle's current defaults. Bundles whose
    ``inference.json`` has no ``batch_size`` (sliding-window volumes) are tuned over the workers only. On ``torch``
    with more than one core, if the fastest cell ran one forward at a time on PyTorch's intra-op threads (one per
    core), it runs once more with one intra-op thread (``torch_threads``).
    """
    onnx = backend == "onnx"
    parser = bundle.parser("inference.json", "inference_onnx.json") if onnx else bundle.parser("inference.json")
    if f"{backend}_concurrent_runs" in parser:
        layouts = layouts or thread_layouts(backend)
    else:
        layouts = [{}]
    keys = ["batch_size", "num_workers", *sorted({k for layout in layouts for k in layout})]
    defaults = {k: parser.get_parsed_content(k) for k in keys}
    cells = []
    for batch_size in batch_sizes if defaults["batch_size"] is not None else (None,):
        for workers in worker_counts:
            for layout in layouts:
                settings = {"num_workers": workers, **layout} | ({"batch_size": batch_size} if batch_size else {})
                name = "_".join(f"{k}{v}" for k, v in sorted(settings.items()))
                cell = in_subprocess(
                    "inference",
                    bundle,
                    backend=backend,
                    model=str(model) if model else None,
                    dataset_dir=str(dataset_dir),
                    workdir=str(Path(workdir) / name),
                    **settings,
                )
                cells.append(cell | {"settings": settings})
    best = max(cells, key=lambda c: c["steady_images_per_s"])
    tuning = {
        "backend": backend,
        "defaults": defaults,
        "cells": cells,
        "best": {
            **{k: best["settings"].get(k, best.get(k)) for k in keys},
            **{k: best[k] for k in ("images_per_s", "steady_images_per_s")},
        },
    }
    if backend == "torch" and best["torch_threads"] > 1 and best["settings"].get("torch_concurrent_runs", 1) == 1:
        one_thread = in_subprocess(
            "inference",
            bundle,
            backend=backend,
            model=str(model) if model else None,
            dataset_dir=str(dataset_dir),
            workdir=str(Path(workdir) / "torch_threads1"),
            torch_threads=1,
            **best["settings"],
        )
        tuning["torch_threads"] = [
            {k: c[k] for k in ("torch_threads", "images_per_s", "steady_images_per_s")} for c in (best, one_thread)
        ]
    return tuning
