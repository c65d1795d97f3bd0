"""The main job: a bundle's whole life on its own synthetic sample data, in a few minutes on a CPU."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .workflows import run_configs
from .zoo import Bundle

__all__ = ["run_quickstart", "per_class_metrics"]

#: Files listed by name per output folder in the summary; the rest are counted.
_LISTED_FILES = 5


def per_class_metrics(metrics: dict, labels: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """``{label: {metric: value}}`` from an ``eval/metrics.json`` as the bundles' evaluate configs write it.

    Per-class figures are the entries whose value is a dict keyed by the bundle's labels (``per_class_auroc`` of the
    chest X-ray bundles, ``<metric>_per_class`` of the 3D bundles); the metric name drops the ``per_class`` part. A
    bundle with a single output class (e.g. the infarct of ``cmr_mi_segmentation``) has every overall figure for that
    class. Otherwise (e.g. displacement channels, or an evaluation of overall figures only) the result is empty.
    """
    per_class: dict[str, dict[str, float | None]] = {}
    for key, value in metrics.items():
        if isinstance(value, dict) and value and set(value) <= set(labels):
            name = key.replace("_per_class", "").replace("per_class_", "") or key
            for label in labels:
                if label in value:
                    per_class.setdefault(label, {})[name] = value[label]
    if not per_class and len(labels) == 1:
        per_class[labels[0]] = {
            k: v for k, v in metrics.items() if isinstance(v, float) or (v is None and k != "num_samples")
        }
    return per_class


def _files_since(folder: Path, since: float) -> list[Path]:
    """Files under ``folder`` (not hidden) last written at or after ``since`` (seconds since the epoch), sorted."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and p.stat().st_mtime >= since
    )


def _describe(files: list[Path]) -> list[str]:
    shown = [str(p) for p in files[:_LISTED_FILES]]
    if len(files) > _LISTED_FILES:
        shown.append(f"... and {len(files) - _LISTED_FILES} more")
    return shown


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (data loader workers), in seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def run_quickstart(bundle: Bundle, settings: Sequence[str] | None = None, **overrides: Any) -> dict:
    """Generate sample data, train, evaluate on the held-out test split, run inference; print a summary.

    Args:
        bundle: the bundle to run.
        settings: configs merged on every step, by default ``configs/demo.json`` (the few-minute CPU settings) where
            the bundle has one; e.g. ``["quick.json"]`` for a tiny run.
        overrides: config ids set on every step, e.g. ``dataset_dir``, ``ckpt_dir``, ``output_dir`` to keep the run
            out of the bundle folder (default: the bundle's ``sample_data/``, ``models/``, ``eval/``).

    If the settings name ``quickstart_requires: {"bundle": B, "weights_id": K}``, bundle B is trained first (its own
    ``train.json`` and ``demo.json``) on this run's sample data and its ``model.pt`` passed as config id K (the MI
    bundle's motion network).

    The summary lists the held-out metrics overall and per class (:func:`per_class_metrics`, with the bundle's
    labels), the number of held-out cases, the files the run wrote (only files written during this run), and the
    time of each step and the whole run.

    Returns:
        ``{"metrics", "per_class", "num_test", "outputs": {kind: [paths]}, "seconds": {step: s}, "total_seconds",
        "cpu_seconds"}``.
    """
    start_wall, start, start_cpu = time.time(), time.perf_counter(), _cpu_seconds()
    settings = list(settings) if settings is not None else (["demo.json"] if "demo.json" in bundle.configs else [])
    timings: dict[str, float] = {}

    def step(name: str, which: Bundle, configs: list[str], workflow_type: str | None = None, **extra: Any):
        print(f"\n=== {which.name}: {name} ===", flush=True)
        t0 = time.perf_counter()
        workflow = run_configs(which, [*configs, *settings], workflow_type=workflow_type, **{**overrides, **extra})
        timings[name] = time.perf_counter() - t0
        return workflow

    data = step("sample data", bundle, ["sample_data.json"])
    dataset_dir = data.parser.get_parsed_content("dataset_dir")
    plan = bundle.parser("train.json", *settings, **overrides)
    required = plan.get("quickstart_requires")
    extra: dict[str, Any] = {}
    if required:
        first = Bundle(required["bundle"])
        first_dir = f"{plan.get_parsed_content('ckpt_dir')}/{first.name}"
        print(f"\n=== {first.name}: train (required by {bundle.name}) ===", flush=True)
        t0 = time.perf_counter()
        first_settings = [c for c in settings if c in first.configs]
        run_configs(
            first,
            ["train.json", *first_settings],
            workflow_type="train",
            **{
                **overrides,
                "dataset_dir": dataset_dir,
                "datalist": data.parser.get_parsed_content("datalist"),
                "ckpt_dir": first_dir,
                "output_dir": f"{first_dir}/eval",
            },
        )
        timings[f"train {first.name}"] = time.perf_counter() - t0
        extra[required["weights_id"]] = f"{first_dir}/model.pt"
    train = step("train", bundle, ["train.json"], "train", **extra)
    evaluate = step("evaluate", bundle, ["train.json", "evaluate.json"], "eval")
    infer = step("inference", bundle, ["inference.json"], "infer")
    total, cpu = time.perf_counter() - start, _cpu_seconds() - start_cpu

    metrics_file = Path(evaluate.parser.get_parsed_content("output_dir")) / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    labels = [
        v
        for _, v in sorted(
            bundle.metadata["network_data_format"]["outputs"]["pred"].get("channel_def", {}).items(),
            key=lambda kv: int(kv[0]),
        )
    ]
    per_class = per_class_metrics(metrics, labels)
    num_test = metrics.get("num_samples")

    ckpt_dir = Path(train.parser.get_parsed_content("ckpt_dir"))
    train_out = Path(train.parser.get_parsed_content("output_dir"))
    infer_out = Path(infer.parser.get_parsed_content("output_dir"))
    outputs = {
        "weights": _files_since(ckpt_dir, start_wall),
        "metrics": [metrics_file],
        "inference": [
            p
            for p in _files_since(infer_out, start_wall)
            if p != metrics_file and "tfevents" not in p.name and not p.is_relative_to(ckpt_dir)
        ],
        "TensorBoard": sorted({p.parent for p in _files_since(train_out, start_wall) if "tfevents" in p.name}),
    }

    print(f"\n=== {bundle.name}: done in {_duration(total)} ===")
    print(f"  held-out test cases: {num_test}")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key}: {value:.4f}")
    if per_class:
        print("  per class:")
        width = max(map(len, per_class))
        for label, values in per_class.items():
            shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in values.items())
            print(f"    {label:<{width}}  {shown}")
    else:
        print("  per class: not reported (this bundle's evaluate.json writes overall figures only)")
    print(f"  sample data: {dataset_dir}")
    for kind, files in outputs.items():
        if files and kind != "TensorBoard":
            for i, line in enumerate(_describe(files)):
                print(f"  {kind + ':' if i == 0 else '':<13}{line}")
    for p in outputs["TensorBoard"]:
        print(f"  TensorBoard: tensorboard --logdir {p}")
    print(
        "  time: "
        + ", ".join(f"{k} {_duration(v)}" for k, v in timings.items())
        + f"; total {_duration(total)} (CPU time {_duration(cpu)})"
    )
    print("  Research use only: not for clinical use.")
    return {
        "metrics": metrics,
        "per_class": per_class,
        "num_test": num_test,
        "outputs": {k: [str(p) for p in v] for k, v in outputs.items()},
        "seconds": timings,
        "total_seconds": total,
        "cpu_seconds": cpu,
    }
