"""Every compression method on one bundle, measured against FP32 eager in the same run, as one Markdown table.

Needs the bundle's trained weights (``models/model.pt``, e.g. from ``medzoo quickstart``) and its sample data; each
method runs through ``medzoo.compress.compress_bundle`` (the same code as ``medzoo compress``), whose comparison
measures FP32 eager, FP32 ONNX Runtime and the compressed model in fresh subprocesses and evaluates each with the
bundle's ``evaluate.json``.

    python benchmarks/compression_report.py cxr14_densenet121_classification \\
        --output bundles/cxr14_densenet121_classification/docs/compression
"""

from __future__ import annotations

import argparse
import json

from medzoo.compress import compress_bundle
from medzoo.fileio import publish_report
from medzoo.zoo import Bundle

#: method -> extra arguments; fine-tuning uses the bundle's demo resolution to stay within minutes on a CPU.
PLAN = {
    "int8_dynamic": {},
    "int8_static": {"calibration_count": 32},
    "prune_magnitude": {"amount": 0.5},
    "prune_channels": {"amount": 0.25, "fine_tune_epochs": 2},
    "qat": {"fine_tune_epochs": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--methods", nargs="+", default=list(PLAN), choices=list(PLAN))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--output", default=None, help="report path without suffix")
    parser.add_argument(
        "--train_overrides",
        default='{"spatial_size": [128, 128], "batch_size": 16}',
        help="JSON config overrides for the fine-tuning runs",
    )
    args = parser.parse_args()
    bundle = Bundle(args.bundle)
    overrides = json.loads(args.train_overrides)
    rows, reports = [], {}
    for method in args.methods:
        settings = PLAN[method]
        report = compress_bundle(
            bundle,
            method,
            runs=args.runs,
            batch_sizes=(1, 4, 8),
            **settings,
            **(overrides if settings.get("fine_tune_epochs") else {}),
        )
        reports[method] = report
        variants = report["comparison"]["variants"]
        for name in (["fp32_eager", "fp32_onnx"] if not rows else []) + [method]:
            r = variants[name]
            ratios = r["ratios"]
            metric = next((v for k, v in r.get("metrics", {}).items() if isinstance(v, float)), float("nan"))
            delta = next(iter(ratios.get("metric_delta", {}).values()), float("nan"))
            rows.append(
                f"| {name} | {r['size_bytes'] / 1e6:.1f} ({ratios['size']:.2f}x) | {r['latency_ms_b1']:.1f} "
                f"({ratios['speedup_b1']:.2f}x) | {r['best_images_per_s']:.1f} ({ratios['throughput']:.2f}x) | "
                f"{r['peak_rss_mb']:.0f} ({ratios['peak_memory']:.2f}x) | {metric:.4f} ({delta:+.4f}) |"
            )
    table = (
        "Ratios are to FP32 eager measured in the same run as each method (speed-up: higher is faster).\n\n"
        "| variant | size MB | latency b1 ms (speed-up) | best throughput img/s | peak memory MB | metric (delta) |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    publish_report(args.output, reports, table)


if __name__ == "__main__":
    main()
