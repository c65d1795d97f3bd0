"""Compare HybridMedNet variants: parameters, MACs, CPU latency at batch 1, and synthetic-data AUROC after the same
short training.

Every variant is trained with the same bundle configs (``cxr14_hybridmednet_efficientnetv2_s_classification``'s train.json, with
``backbone``/``attention``/``neck`` overridden), on the same synthetic sample, for the same epochs, image size, batch
and learning rate, and scored on the same unseen patients (another generator seed; all their images). Latency: eval-mode forward of one 1x1x224x224 image
after warm-up, median of ``--runs``, next to MONAI's DenseNet121 (the zoo's CheXNet bundle network) measured in the
same run, so the ratio stays meaningful on a busy machine. The load average at start and end is recorded.

Writes ``docs/hybridmednet_comparison.json`` and ``docs/hybridmednet_comparison.md``; then run
``python -m medzoo.variants`` and ``python -m medzoo.cli index`` to copy the latency into the bundles' metadata and
``zoo_index.json``.

With ``--add_to_report True`` the measured variants' rows replace or join those of the existing report instead of
replacing the report; such rows carry their own ``setup`` (date, machine, latency baseline) and the training settings
must equal the report's.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/hybridmednet_compare.py                       # the full comparison
    python benchmarks/hybridmednet_compare.py --variants fast low_resource --epochs 2  # a subset, shorter
    python benchmarks/hybridmednet_compare.py --variants state_space --add_to_report True  # one more row
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from monai.networks.nets import DenseNet121

from medzoo.fileio import write_report
from medzoo.networks.complexity import count_macs, count_parameters
from medzoo.networks.hybridmednet import VARIANTS, create_hybridmednet
from medzoo.paths import REPO_ROOT
from medzoo.workflows import run_configs, write_held_out_datalist
from medzoo.zoo import Bundle

OUTPUT = REPO_ROOT / "docs" / "hybridmednet_comparison"
TRAIN_BUNDLE = "cxr14_hybridmednet_efficientnetv2_s_classification"
SHAPE = (1, 1, 224, 224)


def latency_ms(network: torch.nn.Module, warmup: int, runs: int) -> float:
    """Median wall time (ms) of an eval-mode forward pass on one image of ``SHAPE``."""
    network.eval()
    x = torch.rand(*SHAPE)
    times = []
    with torch.no_grad():
        for i in range(warmup + runs):
            start = time.perf_counter()
            network(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def short_training_auroc(variant: str, data_dir: Path, unseen: Path, workdir: Path, args: argparse.Namespace) -> float:
    """Mean AUROC on the unseen patients after the shared short training budget."""
    options = {"neck": "project", **VARIANTS[variant]}
    bundle = Bundle(TRAIN_BUNDLE)
    settings = {
        "backbone": options["backbone"],
        "attention": options["attention"],
        "neck": options["neck"],
        "spatial_size": [args.train_size] * 2,
        "max_epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "warmup_epochs": args.warmup_epochs,
        "num_workers": 0,
        "progress_bar": False,
        "seed": 0,
        "dataset_dir": str(data_dir),
        "ckpt_dir": str(workdir / "models"),
        "output_dir": str(workdir / "eval"),
    }
    run_configs(bundle, ["train.json"], workflow_type="train", **settings)
    run_configs(
        bundle,
        ["train.json", "evaluate.json"],
        workflow_type="eval",
        **settings,
        **{"validate#dataset#data": f"$medzoo.data.load_datalist({str(unseen)!r}, 'test')"},
    )
    return json.loads((workdir / "eval" / "metrics.json").read_text())["mean_auroc"]


def markdown(result: dict) -> str:
    setup = result["setup"]
    lines = [
        "# HybridMedNet variants compared",
        "",
        (
            f"Produced by `benchmarks/hybridmednet_compare.py` on {setup['date']}: {setup['machine']}. "
            f"Latency: {setup['latency']}. AUROC: {setup['training']}"
        ),
        "",
        (
            "| variant | backbone | attention | neck | parameters (M) | MACs at 224x224 (G) | CPU latency, batch 1 (ms) "
            "| latency / DenseNet121 | synthetic mean AUROC, unseen patients |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    separate = []
    for r in result["rows"]:
        auroc = "-" if r["auroc"] is None else f"{r['auroc']:.3f}"
        mark = ""
        if "setup" in r:
            separate.append(r)
            mark = f" [{len(separate)}]"
        lines.append(
            f"| {r['variant']}{mark} | {r['backbone']} | {r['attention']} | {r['neck']} | {r['parameters'] / 1e6:.1f} "
            f"| {r['macs'] / 1e9:.2f} | {r['latency_ms']:.0f} | {r['latency_ratio']:.2f} | {auroc} |"
        )
    lines += [""] if separate else []
    for i, r in enumerate(separate, 1):
        lines.append(
            f"[{i}] measured in a separate run on {r['setup']['date']}: {r['setup']['machine']}. "
            f"Latency: {r['setup']['latency']}."
        )
    lines += [
        "",
        (
            "Synthetic phantoms: the AUROC column says each variant learns under a tiny budget, not how it "
            "would rank on radiographs; large backbones are under-trained by this budget."
        ),
    ]
    return "\n".join(lines) + "\n"


def added_to_report(report_file: Path, setup: dict, rows: list[dict]) -> dict:
    """The report in ``report_file`` with ``rows`` (each carrying ``setup``) replacing or joining its rows of the same
    variants, in :data:`VARIANTS` order. Refused when the training settings differ from the report's."""
    report = json.loads(report_file.read_text())
    if setup["training"] != report["setup"]["training"]:
        raise SystemExit(
            f"error: {report_file} was trained with '{report['setup']['training']}', this run with "
            f"'{setup['training']}': use the same training settings, or rerun the whole comparison"
        )
    by_variant = {r["variant"]: r for r in report["rows"]}
    by_variant.update({r["variant"]: {**r, "setup": setup} for r in rows})
    return {"setup": report["setup"], "rows": [by_variant[v] for v in VARIANTS if v in by_variant]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--warmup_epochs", type=int, default=1)
    parser.add_argument("--num_patients", type=int, default=40)
    parser.add_argument("--unseen_patients", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--skip_training", action="store_true", help="size and latency only")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="output path without suffix (.json and .md)")
    parser.add_argument(
        "--add_to_report",
        default="False",
        choices=("True", "False"),
        help="True: replace or add the measured variants' rows in the existing report (same training settings)",
    )
    args = parser.parse_args()

    load_start = os.getloadavg()
    torch.manual_seed(0)
    baseline = latency_ms(DenseNet121(spatial_dims=2, in_channels=1, out_channels=14), args.warmup, args.runs)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hybridmednet_compare_") as tmp:
        data_dir, unseen = Path(tmp) / "data", Path(tmp) / "unseen" / "all.json"
        if not args.skip_training:
            run_configs(
                Bundle(TRAIN_BUNDLE),
                ["sample_data.json"],
                dataset_dir=str(data_dir),
                num_patients=args.num_patients,
                images_per_patient=8,
                image_size=128,
            )
            write_held_out_datalist(
                TRAIN_BUNDLE,
                unseen.parent,
                num_patients=args.unseen_patients,
                images_per_patient=4,
                image_size=128,
                seed=1,
            )
        for variant in args.variants:
            options = {"neck": "project", **VARIANTS[variant]}
            network = create_hybridmednet(variant, img_size=SHAPE[2:])
            latency = latency_ms(network, args.warmup, args.runs)
            row = {
                "variant": variant,
                **options,
                "parameters": count_parameters(network),
                "macs": count_macs(network, SHAPE),
                "latency_ms": round(latency, 1),
                "latency_ratio": round(latency / baseline, 3),
                "auroc": None,
            }
            del network
            if not args.skip_training:
                row["auroc"] = round(short_training_auroc(variant, data_dir, unseen, Path(tmp) / variant, args), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    load_end = os.getloadavg()
    setup = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{' '.join(filter(None, [platform.machine(), platform.processor()]))} CPU, {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, no GPU, 1-minute load average "
        f"{load_start[0]:.1f} at start and {load_end[0]:.1f} at end",
        "latency": f"eval forward of 1x1x224x224, median of {args.runs} after {args.warmup} warm-up runs; "
        f"MONAI DenseNet121 in the same run: {baseline:.0f} ms",
        "training": "skipped"
        if args.skip_training
        else (
            f"{args.epochs} epochs at {args.train_size}x{args.train_size}, batch {args.batch_size}, lr "
            f"{args.learning_rate} with {args.warmup_epochs} warm-up epoch(s) then cosine, on synthetic sample data "
            f"({args.num_patients} patients x 8 images); mean AUROC on all 4 images of each of "
            f"{args.unseen_patients} unseen patients (generator seed 1)."
        ),
    }
    if args.add_to_report == "True":
        result = added_to_report(args.output.with_suffix(".json"), setup, rows)
    else:
        result = {"setup": setup, "rows": rows}
    write_report(args.output, result, markdown(result))
    print(f"wrote {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
