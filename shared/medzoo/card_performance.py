"""The "Performance" section of a bundle's model card, rendered from the measurement reports in its ``docs/`` folder.

:func:`performance_section` renders speed on CPU (``benchmark.json``, written by ``medzoo benchmark``) and, where the
bundle has them, compression, the comparison with torchxrayvision, whole-volume memory, sliding-window overhead and the
learning figures on phantoms, then lists the other reports (:data:`REPORTS`). :mod:`medzoo.cards` puts the section into
the card."""

from __future__ import annotations

import json
from pathlib import Path

from .card_text import paragraph, section, table

__all__ = ["REPORTS", "SLIDING_WINDOW_OVERHEAD_TARGET", "VOLUME_MEMORY_TARGETS", "performance_section"]

#: Reports a bundle's ``docs/`` may hold besides ``benchmark.md``, and what each one is.
REPORTS = {
    "benchmark_tuning.md": "the `--tune` grid of ONNX Runtime inference (`configs/inference_onnx.json`): batch size, "
    "data-loader workers and thread layout, where that config's defaults come from",
    "benchmark_tuning_torch.md": "the `--tune --tune_backend torch` grid of eager inference "
    "(`configs/inference.json`), where that config's defaults come from",
    "compression.md": "`medzoo compress` of every method against FP32 eager in the same run",
    "vs_xrv.md": "`benchmarks/cxr_vs_xrv.py`: this bundle against torchxrayvision on the same PNG files",
    "volume_memory.md": "`benchmarks/volume_memory.py`: peak memory and time, stage by stage, against MONAI's "
    "reference pipeline",
}
#: Targets of whole-volume inference against MONAI's reference pipeline (``docs/volume_memory.json``).
VOLUME_MEMORY_TARGETS = {"peak_rss": 0.5, "seconds": 0.9, "large_peak_gib": 8.0}
#: Largest time of sliding-window inference over its bare network on the same windows, as a fraction (0.15: 15 %).
SLIDING_WINDOW_OVERHEAD_TARGET = 0.15


def _steady(e2e: dict | None) -> str:
    if not e2e:
        return "-"
    batch = "" if e2e["batch_size"] is None else f" (batch {e2e['batch_size']})"
    return f"{e2e['steady_images_per_s']:.1f}{batch}"


def _benchmark_text(report: dict, name: str) -> str:
    rows = []
    for backend, forward in report["forward"].items():
        e2e = (report.get("inference") or {}).get(backend)
        ratio = e2e.get("ratio_to_forward_same_batch") if e2e else None
        rows.append(
            [
                backend,
                f"{forward['latency_ms_b1']:.1f}",
                f"{forward['best_images_per_s']:.1f} (batch {forward['best_batch_size']})",
                _steady(e2e),
                f"{ratio:.2f}" if ratio is not None else "-",
                f"{forward['peak_rss_mb']:.0f}",
            ]
        )
    text = (
        "## Performance\n### Speed on CPU\n"
        + paragraph(
            f"Measured by `medzoo benchmark {name}` on {report['measured_at']} ({report['machine']}, "
            f"{report['weights']} weights): the bare network per backend at batch 1 and at its best batch, and "
            "end-to-end inference from files on disk to written outputs in steady state, against the bare network at "
            "the same batch size (end-to-end / forward). One run on a shared machine: compare rows with each other, not "
            "with other machines. The full report, with the command that reproduces it, is [`benchmark.md`](benchmark.md) "
            "(raw figures in `benchmark.json`; the summary in `zoo_index.json`, which `medzoo select` reads)."
        )
        + "\n"
    )
    text += table(
        [
            "backend",
            "forward, batch 1 (ms)",
            "best forward (inputs/s)",
            "end-to-end, steady (inputs/s)",
            "end-to-end / forward",
            "peak memory (MB)",
        ],
        rows,
    )
    train = report.get("train")
    if train:
        text += "\n" + paragraph(
            f"Training: {train['step_s']:.3f} s per iteration over {train['iterations']} iterations, "
            f"{100 * train['data_wait_ratio']:.1f} % of it waiting for data."
        )
    return text


def _first_metric(metrics: dict) -> tuple[str, float] | None:
    return next(((k, v) for k, v in (metrics or {}).items() if isinstance(v, float)), None)


def _compression_text(report: dict) -> str:
    rows = []
    for method, result in report.items():
        variants = result["comparison"]["variants"]
        reference, compressed = variants[result["comparison"]["reference"]], variants[method]
        metric, reference_metric = _first_metric(compressed.get("metrics")), _first_metric(reference.get("metrics"))
        change = "-"
        if metric and reference_metric:
            change = f"{metric[0]} {metric[1]:.4f} ({metric[1] - reference_metric[1]:+.4f})"
        rows.append(
            [
                method,
                f"{result['size_ratio']:.2f}",
                f"{reference['latency_ms_b1'] / compressed['latency_ms_b1']:.2f}",
                f"{compressed['best_images_per_s'] / reference['best_images_per_s']:.2f}",
                change,
            ]
        )
    intro = (
        "[`compression.md`](compression.md): each method against FP32 eager measured in the same run, on the "
        "weights the report names; a speed-up above 1 is faster."
    )
    header = ["method", "size / FP32", "batch-1 speed-up", "best throughput / FP32", "metric (change)"]
    return "\n### Compression\n" + paragraph(intro) + "\n" + table(header, rows)


def _vs_xrv_text(report: dict) -> str:
    ratios = [r["throughput_ratio"] for r in report["rounds"]]
    return "\n### Against torchxrayvision\n" + paragraph(
        f"On the same {report['files']} files ({report['job']}; [`vs_xrv.md`](vs_xrv.md)): "
        f"{report['median_throughput_ratio']:.2f}x its throughput, median of {len(ratios)} alternating rounds "
        f"({_range(ratios, '.2f')}x)."
    )


def _range(values: list[float], spec: str) -> str:
    return f"{min(values):{spec}}-{max(values):{spec}}"


def _volume_memory_text(report: dict) -> str:
    gib, targets = 1024.0, VOLUME_MEMORY_TARGETS
    runs = {pipeline: [r for r in report["runs"] if r["pipeline"] == pipeline] for pipeline in ("reference", "bundle")}
    rows = [
        [
            title,
            _range([r["peak_rss_mib"] / gib for r in runs[p]], ".2f"),
            _range([r["seconds"] for r in runs[p]], ".0f"),
        ]
        for title, p in (("MONAI reference", "reference"), ("this bundle", "bundle"))
    ]
    ratios, median = report["ratios"], report["median_ratios"]
    ratio_rows = [
        [title, _range([r[key] for r in ratios], ".2f"), f"{median[key]:.2f}", f"<= {targets[key]}"]
        for title, key in (("peak memory", "peak_rss"), ("wall time", "seconds"))
    ]
    load = report.get("load_average_range") or []
    load_text = f", load average {load[0]}-{load[-1]}" if load else ""
    text = (
        "\n### Memory: whole-volume inference on a CT-sized volume\n"
        + paragraph(
            f"Peak memory and wall time of inference on a {'x'.join(map(str, report['settings']['shape']))} volume "
            f"against MONAI's reference pipeline ([`volume_memory.md`](volume_memory.md), measured on "
            f"{report['measured_at']}, {report['machine']}{load_text}; {len(ratios)} alternating rounds; peak resident "
            "memory of the process):"
        )
        + "\n"
        + table(["pipeline", "peak memory (GiB)", "wall time (s)"], rows)
        + "\n"
        + table(["ratio to the reference", "rounds", "median", "target"], ratio_rows)
    )
    large = report.get("large")
    if large:
        peak = large["peak_rss_mib"] / gib
        text += "\n" + paragraph(
            f"On a {'x'.join(map(str, large['shape']))} volume this bundle peaks at {peak:.2f} GiB "
            f"({peak * 2**30 / 1e9:.2f} GB) in {large['seconds']:.0f} s; target: under "
            f"{targets['large_peak_gib']:.0f} GB."
        )
    return text


def _sliding_window_text(runs: list[dict]) -> str:
    """The sliding-window table: one row per run, the network named by the override configs it was measured with;
    a network measured as a variant (``relative_to_base``) also shows its time and memory against the base network of
    the same invocation."""
    compared = any("relative_to_base" in run for run in runs)
    rows = []
    for run in runs:
        row = [
            ", ".join(f"`{c}`" for c in run.get("configs", [])) or "default (U-Net)",
            str(run["sw_batch_size"]),
            str(run["windows"]),
            str(run["repeats"]),
            f"{run['seconds']:.2f}",
            f"{run['network_seconds']:.2f}",
            f"{100 * run['sliding_window_overhead']:+.1f} %",
            f"{run['peak_rss_mib']:.0f}",
            f"{run['peak_rss_increase_mib']:.0f}",
        ]
        if compared:
            relative = run.get("relative_to_base")
            row.append(f"{relative['seconds']:.2f}x / {relative['peak_rss_increase']:.2f}x" if relative else "")
        rows.append(row)
    intro = (
        f"Sliding-window inference against the bare network on the same windows, on a "
        f"{'x'.join(map(str, runs[0]['volume_shape']))} volume (`benchmarks/sliding_window_overhead.py`, "
        f"[`sliding_window_overhead.json`](sliding_window_overhead.json); medians of the timed passes, with "
        f"`--configs` naming the network variant; peak resident memory of the process, and its increase during the "
        f"measurement; target: an overhead of at most {100 * SLIDING_WINDOW_OVERHEAD_TARGET:.0f} %)"
    )
    if compared:
        intro += (
            "; a variant's last column is its sliding-window time and memory increase as multiples of the network "
            "measured before it at the same sw_batch_size, in the same invocation"
        )
    header = [
        "network",
        "sw_batch_size",
        "windows",
        "timed passes",
        "sliding window + argmax (s)",
        "network alone (s)",
        "overhead",
        "peak memory (MiB)",
        "memory increase (MiB)",
    ] + (["vs base network (time / memory increase)"] if compared else [])
    return "\n### Sliding-window overhead\n" + paragraph(intro + ":") + "\n" + table(header, rows)


def _chain_text(report: dict) -> str:
    """The cardiac chain's learning figures (``docs/chain.json``, written by ``benchmarks/cmr_chain.py``)."""
    motion, registration, mi = report["motion"], report["registration"], report["mi_segmentation"]
    rows = [
        ["motion", "photometric error reduction vs identity", f"{motion['photometric_reduction']:.3f}"],
        ["motion", "folding fraction", f"{motion['folding_fraction']:.3f}"],
        ["registration", "myocardium Dice before", f"{registration['myo_dice_before']:.3f}"],
        ["registration", "myocardium Dice after", f"{registration['myo_dice']:.3f}"],
        ["registration", "folding fraction", f"{registration['folding_fraction']:.3f}"],
        ["MI segmentation", "Dice", f"{mi['mi_dice']:.3f}"],
        ["MI segmentation", "HD95 (pixels)", f"{mi['mi_hd95']:.3f}"],
    ]
    s = report["settings"]
    intro = (
        f"The three cardiac bundles trained and evaluated with their own configs by `benchmarks/cmr_chain.py` "
        f"([`chain.json`](chain.json), {report['date']}, versions "
        + ", ".join(f"{n} {v}" for n, v in report["versions"].items())
        + f"): {s['num_cases']} synthetic cases ({s['slices_per_case']} slices, {s['frames']} frames, "
        f"{s['image_size']}x{s['image_size']}), split by case; motion {s['motion_epochs']} epochs, registration "
        f"{s['registration_epochs']}, MI segmentation {s['mi_epochs']} on the trained, frozen motion network; batch "
        f"{s['batch_size']}, lr {s['learning_rate']}, seed {s['seed']}. Figures on the test cases (patients not seen in "
        "training). Phantoms: they show that the chain learns, not how it performs on patients."
    )
    return (
        "\n### Learning on phantoms\n"
        + paragraph(intro)
        + "\n"
        + table(["bundle", "metric (test cases)", "value"], rows)
    )


def _linear_probe_text(report: dict) -> str:
    """SimCLR linear-probe margin (``docs/linear_probe.json``, written by ``benchmarks/ssl_linear_probe_margin.py``)."""

    def weakest(per_class: dict) -> str:
        label, value = min(((k, v) for k, v in per_class.items() if v is not None), key=lambda kv: kv[1])
        return f"{label} {value:.3f}"

    s = report["settings"]
    gains = [
        (k, v - report["baseline_per_class_auroc"][k])
        for k, v in report["per_class_auroc"].items()
        if v is not None and report["baseline_per_class_auroc"].get(k) is not None
    ]
    better = sum(gain > 0 for _, gain in gains)
    intro = (
        f"`benchmarks/ssl_linear_probe_margin.py` ([`linear_probe.json`](linear_probe.json), {report['date']}, "
        f"version {report['version']}): SimCLR pretraining on {s['num_patients']} synthetic patients x "
        f"{s['images_per_patient']} images at {s['spatial_size'][0]} x {s['spatial_size'][1]} for {s['max_epochs']} "
        f"epochs (batch {s['batch_size']}), then `configs/evaluate.json`: a logistic regression per finding on the "
        f"frozen embeddings of {report['num_train']} labelled training images, AUROC on {report['num_samples']} "
        "images of held-out test patients, for the SimCLR encoder and for a randomly initialised encoder of the same "
        f"architecture. SimCLR features beat random ones on {better} of {len(gains)} findings. Phantoms: this shows "
        "that pretraining learns features a linear probe can use, not how good they are on radiographs."
    )
    rows = [
        ["SimCLR features", f"{report['mean_auroc']:.3f}", weakest(report["per_class_auroc"])],
        ["random-init features", f"{report['baseline_mean_auroc']:.3f}", weakest(report["baseline_per_class_auroc"])],
        ["margin", f"{report['margin']:+.3f}", ""],
    ]
    header = ["linear probe on", "mean test AUROC", "weakest finding"]
    return "\n### Learning on phantoms\n" + paragraph(intro) + "\n" + table(header, rows)


def performance_section(docs: Path, name: str) -> str:
    """The "Performance" section of bundle ``name`` from the reports in its ``docs`` folder: ``benchmark.json``
    (speed on CPU), and where present ``compression.json``, ``vs_xrv.json``, ``volume_memory.json`` and
    ``sliding_window_overhead.json``, ``chain.json`` and ``linear_probe.json``, with a list of the generated reports. Without ``benchmark.json``: a section
    saying that nothing is measured yet."""

    def read(f):
        return json.loads((docs / f).read_text()) if (docs / f).is_file() else None

    benchmark = read("benchmark.json")
    if benchmark is None:
        return section(
            "Performance",
            (f"Not measured yet: `medzoo benchmark {name}` writes `docs/benchmark.md` and `docs/benchmark.json`."),
        )
    text = _benchmark_text(benchmark, name)
    for file, render in (
        ("compression.json", _compression_text),
        ("vs_xrv.json", _vs_xrv_text),
        ("volume_memory.json", _volume_memory_text),
        ("sliding_window_overhead.json", _sliding_window_text),
        ("chain.json", _chain_text),
        ("linear_probe.json", _linear_probe_text),
    ):
        report = read(file)
        if report is not None:
            text += render(report)
    others = [
        paragraph(f"- [`{file}`]({file}): {what}.").replace("\n", "\n  ").rstrip()
        for file, what in REPORTS.items()
        if (docs / file).is_file()
    ]
    if others:
        text += "\n### Reports\n" + "\n".join(others) + "\n"
    return text
