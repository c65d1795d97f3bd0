"""Peak memory and wall time, stage by stage, of whole-volume CT segmentation: the segmentation bundle's
``configs/inference.json`` against a reference pipeline built from MONAI components as in the MONAI model zoo's
spleen CT segmentation bundle.

Both pipelines run on the same synthetic CT volume (an abdominal phantom, ``medzoo.volume.phantoms.draw_phantom``,
stored as int16 NIfTI), with the same network (the bundle's ``network_def``: MONAI ``UNet``, channels 16-256, 2
residual units, batch norm, deterministic initial weights: memory and time do not depend on the weight values), the
same sliding windows (``--roi``, ``--sw_batch_size``, ``--overlap``, Gaussian blending in both) and the same target
spacing. The reference: ``LoadImaged``, ``EnsureChannelFirstd``, ``Orientationd`` RAS, ``Spacingd`` bilinear,
``ScaleIntensityRanged`` (-57..164 HU to 0..1, clipped), ``SlidingWindowInferer``, ``Activationsd`` softmax,
``Invertd`` of the probabilities to the original grid, ``AsDiscreted`` argmax, ``SaveImaged`` uint8. The bundle runs its
own ``preprocessing``, ``inferer`` and ``postprocessing`` with the same window settings and HU window overridden.

Each run is a fresh process (``--child``) that executes the stages in order on one data dict, under
``torch.no_grad``: load (the preprocessing's ``Load*`` / channel steps), resample (the rest of the preprocessing),
sliding window, invert (the postprocessing before saving), save. Before each stage the process's peak resident set
size is reset (``/proc/self/clear_refs``), so each stage's ``VmHWM`` is the peak during that stage; the run's peak is
the largest of them (``startup``, the imports and network, included). Runs alternate between the two pipelines
(``--rounds`` pairs, the order swapped every round) so a shared machine's drift affects both; the ratios bundle /
reference are per round. ``--large_shape`` adds one run of the bundle alone on a longer volume. The label maps of the
last round are compared voxel by voxel (agreement and per-label Dice).

The report is written as JSON and rendered as Markdown (``--report_dir``); ``--record`` stores the bundle's figure
in ``zoo_index.json`` (``memory`` record, read by ``medzoo select --max_memory_mb``); ``--record_from REPORT.json``
stores that of a report already written.

Example::

    python benchmarks/volume_memory.py --shape 512 512 300 --rounds 2 --large_shape 512 512 1000 \\
        --report_dir bundles/msd_unet3d_segmentation/docs --record
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUNDLE = "msd_unet3d_segmentation"
REPORT_NAME = "volume_memory"
CLASSIFICATION_BUNDLE = "ct_resnet3d_classification"
REFERENCE_HU_WINDOW = (-57.0, 164.0)


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Start a new peak resident set size (``VmHWM``) at the current one (Linux ``clear_refs`` value 5)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def write_phantom(path: Path, shape: list[int], spacing: list[float], seed: int = 0, block: Path | None = None) -> Path:
    """An abdominal CT phantom of ``shape`` voxels at ``spacing`` mm as int16 NIfTI (x and y stored reversed, as an
    LPS-ordered scan, so orientation is undone too). A shape longer than 300 slices repeats a 300-slice phantom
    along z, read from ``block`` when given (drawing is float64 and slow at that size; memory and time do not depend
    on the content)."""
    from medzoo.io_checks import read_nifti, save_nifti
    from medzoo.volume.phantoms import draw_phantom

    drawn = [shape[0], shape[1], min(shape[2], 300)]
    if block is not None and block.exists():
        image = read_nifti(block, ndim=3, dtype=np.int16)[0]
    else:
        phantom = draw_phantom(np.asarray(drawn) * spacing, spacing, np.random.default_rng(seed), flip_xy=True)
        image = np.round(phantom.image).astype(np.int16)
        del phantom
    drawn = list(image.shape)
    if drawn[2] < shape[2]:
        image = np.take(image, np.arange(shape[2]) % drawn[2], axis=2)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [(shape[0] - 1) * spacing[0] / 2, (shape[1] - 1) * spacing[1] / 2, -(shape[2] - 1) * spacing[2] / 2]
    save_nifti(image, affine, path, compresslevel=1)
    return path


def _network(settings: dict):
    """The bundle's ``network_def`` with the weights of seed 0, in eval mode (both pipelines use it)."""
    import torch

    from medzoo.zoo import Bundle

    torch.manual_seed(0)
    return Bundle(BUNDLE).parser("inference.json", **settings).get_parsed_content("network_def").eval()


def _window_settings(args: argparse.Namespace) -> dict:
    return {
        "patch_size": args.roi,
        "sw_batch_size": args.sw_batch_size,
        "sw_overlap": args.overlap,
        "pixdim": args.pixdim,
        "device": "$torch.device('cpu')",
    }


def reference_stages(args: argparse.Namespace, output_dir: Path) -> list[tuple[str, list]]:
    """The MONAI model zoo's spleen CT segmentation pipeline, with this run's window and spacing settings."""
    import numpy as np
    from monai.inferers import SlidingWindowInferer
    from monai.transforms import (
        Activationsd,
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        Invertd,
        LoadImaged,
        Orientationd,
        SaveImaged,
        ScaleIntensityRanged,
        Spacingd,
    )

    load = [LoadImaged(keys="image"), EnsureChannelFirstd(keys="image")]
    resample = [
        Orientationd(keys="image", axcodes="RAS"),
        Spacingd(keys="image", pixdim=args.pixdim, mode="bilinear"),
        ScaleIntensityRanged(
            keys="image", a_min=REFERENCE_HU_WINDOW[0], a_max=REFERENCE_HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True
        ),
    ]
    inferer = SlidingWindowInferer(
        roi_size=args.roi, sw_batch_size=args.sw_batch_size, overlap=args.overlap, mode="gaussian"
    )
    invert = [
        Activationsd(keys="pred", softmax=True),
        Invertd(
            keys="pred", transform=Compose(load + resample), orig_keys="image", nearest_interp=False, to_tensor=True
        ),
        AsDiscreted(keys="pred", argmax=True),
    ]
    save = [
        SaveImaged(
            keys="pred",
            output_dir=str(output_dir),
            output_postfix="seg",
            output_dtype=np.uint8,
            resample=False,
            separate_folder=False,
            print_log=False,
        )
    ]
    return [("load", load), ("resample", resample), ("sliding window", inferer), ("invert", invert), ("save", save)]


def bundle_stages(args: argparse.Namespace, output_dir: Path) -> list[tuple[str, list]]:
    """The bundle's own preprocessing, inferer and postprocessing, with this run's window settings."""
    from medzoo.zoo import Bundle

    parser = Bundle(BUNDLE).parser(
        "inference.json", **_window_settings(args), hu_window=list(REFERENCE_HU_WINDOW), output_dir=str(output_dir)
    )
    pre = parser.get_parsed_content("preprocessing").transforms
    post = parser.get_parsed_content("postprocessing").transforms
    loading = [t for t in pre if type(t).__name__.startswith(("Load", "EnsureChannelFirst"))]
    saving = [t for t in post if type(t).__name__.startswith("Save")]
    return [
        ("load", loading),
        ("resample", [t for t in pre if t not in loading]),
        ("sliding window", parser.get_parsed_content("inferer")),
        ("invert", [t for t in post if t not in saving]),
        ("save", saving),
    ]


def classification_stages(args: argparse.Namespace, output_dir: Path) -> list[tuple[str, list]]:
    """``ct_resnet3d_classification``'s preprocessing (``LoadVolumed``: read, reorient, resample, fit; then the
    intensity window) and its network on the result."""
    import torch

    from medzoo.zoo import Bundle

    parser = Bundle(CLASSIFICATION_BUNDLE).parser("inference.json", device="$torch.device('cpu')")
    pre = parser.get_parsed_content("preprocessing").transforms
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()

    def classify(data: dict) -> dict:
        return {**data, "pred": torch.softmax(network(data["image"][None]), dim=1)[0]}

    return [("load + resample", pre[:1]), ("intensity", pre[1:]), ("network", [classify])]


def run_child(args: argparse.Namespace) -> dict:
    """One pipeline on one volume in this process: per-stage seconds and peak RSS, the output label map's path."""
    import torch

    start_rss = _status_mib("VmHWM")  # interpreter and imports of this script so far
    output_dir = Path(args.output_dir)
    if args.child == "classification":
        network, stages = None, classification_stages(args, output_dir)
    else:
        network = _network(_window_settings(args))
        stages = (reference_stages if args.child == "reference" else bundle_stages)(args, output_dir)
    results = [{"stage": "startup", "seconds": None, "peak_rss_mib": round(max(start_rss, _status_mib("VmHWM")), 1)}]
    data: dict = {"image": str(args.volume)}
    started = time.perf_counter()
    with torch.no_grad():
        for name, steps in stages:
            _reset_peak()
            begin = time.perf_counter()
            if name == "sliding window":
                data["pred"] = steps(data["image"].unsqueeze(0), network).squeeze(0)
            else:
                for step in steps:
                    data = step(data)
            results.append(
                {
                    "stage": name,
                    "seconds": round(time.perf_counter() - begin, 2),
                    "peak_rss_mib": round(_status_mib("VmHWM"), 1),
                    "rss_after_mib": round(_status_mib("VmRSS"), 1),
                    "steps": [getattr(s, "__name__", type(s).__name__) for s in steps]
                    if isinstance(steps, list)
                    else [type(steps).__name__],
                }
            )
    seconds = time.perf_counter() - started
    outputs = sorted(output_dir.glob("*_seg.nii.gz"))
    return {
        "pipeline": args.child,
        "stages": results,
        "seconds": round(seconds, 2),
        "volume_mib": _volume_mib(args.volume),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "torch_threads": torch.get_num_threads(),
        "output": str(outputs[0]) if outputs else None,
    }


def _volume_mib(path: Path) -> float:
    """Size of the volume in ``path`` as float32, MiB: the unit of "copies of the volume"."""
    from medzoo.io_checks import read_nifti_header

    return round(4 * float(np.prod(read_nifti_header(path).get_data_shape())) / 2**20, 1)


def _spawn(pipeline: str, volume: Path, output_dir: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        pipeline,
        "--volume",
        str(volume),
        "--output_dir",
        str(output_dir),
        "--roi",
        *map(str, args.roi),
        "--sw_batch_size",
        str(args.sw_batch_size),
        "--overlap",
        str(args.overlap),
        "--pixdim",
        *map(str, args.pixdim),
    ]
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{pipeline} run on {volume} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    print(json.dumps({k: v for k, v in result.items() if k != "stages"}), flush=True)
    return result


def compare_labels(first: str, second: str) -> dict:
    """Voxel agreement of two label maps and the Dice of every label present in either."""
    import nibabel as nib
    import numpy as np

    a, b = (np.asarray(nib.load(p).dataobj) for p in (first, second))
    dice = {}
    for label in np.union1d(np.unique(a), np.unique(b)).tolist():
        x, y = a == label, b == label
        dice[str(label)] = round(2.0 * float((x & y).sum()) / float(x.sum() + y.sum()), 6)
    return {"agreement": round(float((a == b).mean()), 6), "dice": dice, "shape": list(a.shape)}


def render_markdown(report: dict) -> str:
    """The report as Markdown: settings, one table per run kind with the stage peaks, the ratios."""
    s = report["settings"]
    lines = [
        f"# Whole-volume inference memory: `{report['bundle']}` against the MONAI reference pipeline",
        "",
        f"`python benchmarks/volume_memory.py {report['command']}`, {report['measured_at']}: "
        f"{report['machine']}, {report['memory_total_gib']} GiB RAM, shared with other jobs (load average "
        f"{report['load_average_range'][0]}-{report['load_average_range'][1]} over the runs). Times depend on that "
        "load; compare the two pipelines through the per-round ratios (the runs alternate).",
        "",
        f"Volume: synthetic CT phantom {'x'.join(map(str, s['shape']))} voxels at {'x'.join(map(str, s['spacing_mm']))}"
        f" mm (int16 NIfTI, stored LPS), resampled to {'x'.join(map(str, s['pixdim']))} mm; windows "
        f"{'x'.join(map(str, s['roi']))}, sw_batch_size {s['sw_batch_size']}, overlap {s['overlap']}, Gaussian "
        "blending; the bundle's U-Net (initial weights of seed 0) in both; one process per run, torch threads "
        f"{report['runs'][0]['torch_threads']}. Peak = the process's peak resident set size during each stage.",
        "",
        "| round | pipeline | " + " | ".join(report["stage_names"]) + " | peak | wall time |",
        "|---|---|" + "---|" * len(report["stage_names"]) + "---|---|",
    ]
    for run in report["runs"]:
        peaks = {r["stage"]: r["peak_rss_mib"] for r in run["stages"]}
        lines.append(
            f"| {run['round']} | {run['pipeline']} | "
            + " | ".join(f"{peaks[n]:.0f} MiB" for n in report["stage_names"])
            + f" | **{run['peak_rss_mib']:.0f} MiB** | {run['seconds']:.0f} s |"
        )
    lines += ["", "| round | peak memory bundle / reference | wall time bundle / reference |", "|---|---|---|"]
    for r in report["ratios"]:
        lines.append(f"| {r['round']} | {r['peak_rss']:.2f} | {r['seconds']:.2f} |")
    m = report["median_ratios"]
    lines += [
        "",
        f"Median over rounds: peak memory **{m['peak_rss']:.2f}x**, wall time **{m['seconds']:.2f}x** the reference's.",
    ]
    if report.get("labels"):
        lab = report["labels"]
        lines += [
            "",
            f"Label maps of the last round ({'x'.join(map(str, lab['shape']))}): voxel agreement "
            f"{lab['agreement']:.6f}, Dice per label "
            + ", ".join(f"{k}: {v:.6f}" for k, v in lab["dice"].items())
            + " (initial weights: what the labels are says nothing about the network; that the two pipelines "
            "give the same labels is the point).",
        ]
    if report.get("large"):
        run = report["large"]
        peaks = {r["stage"]: r["peak_rss_mib"] for r in run["stages"]}
        lines += [
            "",
            f"Bundle alone on a {'x'.join(map(str, run['shape']))} volume (same spacing and settings): "
            + ", ".join(f"{n} {peaks[n]:.0f} MiB" for n in report["stage_names"])
            + f"; peak **{run['peak_rss_mib']:.0f} MiB** ({run['peak_rss_mib'] / 1024:.2f} GiB), "
            f"{run['seconds']:.0f} s, load average {run['load_average'][0]}-{run['load_average'][1]}.",
        ]
    if report.get("classification"):
        run = report["classification"]
        lines += [
            "",
            f"`{CLASSIFICATION_BUNDLE}` on the first volume ({run['volume_mib']:.0f} MiB as float32): "
            + ", ".join(f"{r['stage']} {r['peak_rss_mib']:.0f} MiB" for r in run["stages"])
            + f"; peak {run['peak_rss_mib']:.0f} MiB, **{run['peak_increase_in_volume_copies']:.2f} float32 copies "
            "of the volume** above the startup peak, "
            f"{run['seconds']:.0f} s.",
        ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.5], help="of the volume, mm")
    parser.add_argument("--pixdim", type=float, nargs=3, default=[1.5, 1.5, 2.0], help="network grid spacing, mm")
    parser.add_argument("--roi", type=int, nargs=3, default=[96, 96, 96])
    parser.add_argument("--sw_batch_size", type=int, default=4)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=2, help="alternating pairs of runs")
    parser.add_argument("--large_shape", type=int, nargs=3, help="one more run, bundle only, on a volume this size")
    parser.add_argument("--workdir", type=Path, help="keeps the phantoms between invocations (default: temporary)")
    parser.add_argument("--report_dir", type=Path, help=f"write {REPORT_NAME}.json and .md here")
    parser.add_argument("--record", action="store_true", help="store the bundle's peak in zoo_index.json")
    parser.add_argument("--record_from", type=Path, help="only store the bundle's peak of this JSON report")
    parser.add_argument(
        "--classification",
        action="store_true",
        help=f"also one run of {CLASSIFICATION_BUNDLE}'s preprocessing and network on the volume",
    )
    parser.add_argument("--child", choices=["reference", "bundle", "classification"], help=argparse.SUPPRESS)
    parser.add_argument("--volume", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.record_from:
        print(json.dumps(record_memory(json.loads(args.record_from.read_text()))["memory"]))
        return
    if args.child:
        print(json.dumps(run_child(args)))
        return

    from medzoo.bench.timing import report_stamp

    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        volume = work / f"ct_{'x'.join(map(str, args.shape))}.nii.gz"
        if not volume.exists():
            write_phantom(volume, args.shape, args.spacing)
        runs = []
        for round_ in range(args.rounds):
            for pipeline in ("reference", "bundle") if round_ % 2 == 0 else ("bundle", "reference"):
                out = work / f"out_{pipeline}_{round_}"
                for old in out.glob("*"):
                    old.unlink()
                runs.append({"round": round_ + 1, **_spawn(pipeline, volume, out, args)})
        by_round = {(r["round"], r["pipeline"]): r for r in runs}
        ratios = [
            {
                "round": k,
                "peak_rss": round(by_round[k, "bundle"]["peak_rss_mib"] / by_round[k, "reference"]["peak_rss_mib"], 3),
                "seconds": round(by_round[k, "bundle"]["seconds"] / by_round[k, "reference"]["seconds"], 3),
            }
            for k in range(1, args.rounds + 1)
        ]
        last = args.rounds
        labels = compare_labels(by_round[last, "reference"]["output"], by_round[last, "bundle"]["output"])
        large = None
        if args.large_shape:
            big = work / f"ct_{'x'.join(map(str, args.large_shape))}.nii.gz"
            if not big.exists():
                write_phantom(
                    big,
                    args.large_shape,
                    args.spacing,
                    block=volume if args.large_shape[:2] == args.shape[:2] else None,
                )
            large = {"shape": args.large_shape, **_spawn("bundle", big, work / "out_large", args)}
        classification = None
        if args.classification:
            classification = _spawn("classification", volume, work / "out_classification", args)
            startup = classification["stages"][0]["peak_rss_mib"]
            classification["peak_increase_in_volume_copies"] = round(
                (classification["peak_rss_mib"] - startup) / classification["volume_mib"], 2
            )
    all_runs = runs + ([large] if large else []) + ([classification] if classification else [])
    loads = [x for r in all_runs for x in r["load_average"]]
    command = " ".join(a for a in sys.argv[1:])
    report = {
        "bundle": BUNDLE,
        **report_stamp(),
        "command": command,
        "memory_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_range": [min(loads), max(loads)],
        "settings": {
            "shape": args.shape,
            "spacing_mm": args.spacing,
            "pixdim": args.pixdim,
            "roi": args.roi,
            "sw_batch_size": args.sw_batch_size,
            "overlap": args.overlap,
            "rounds": args.rounds,
        },
        "stage_names": [r["stage"] for r in runs[0]["stages"]],
        "runs": runs,
        "ratios": ratios,
        "median_ratios": {k: round(statistics.median(r[k] for r in ratios), 3) for k in ("peak_rss", "seconds")},
        "labels": labels,
        "large": large,
        "classification": classification,
    }
    for r in all_runs:
        r.pop("output", None)
    print(render_markdown(report))
    if args.report_dir:
        from medzoo.fileio import atomic_write_text

        atomic_write_text(args.report_dir / f"{REPORT_NAME}.json", json.dumps(report, indent=2) + "\n")
        atomic_write_text(args.report_dir / f"{REPORT_NAME}.md", render_markdown(report))
    if args.record:
        record_memory(report)


def record_memory(report: dict) -> dict:
    """Store the bundle's peak of the report's last round in ``zoo_index.json`` (``memory`` record); its entry."""
    from medzoo.zoo import Bundle, record

    s, last = report["settings"], report["settings"]["rounds"]
    bundle_run = next(r for r in report["runs"] if r["round"] == last and r["pipeline"] == "bundle")
    return record(
        BUNDLE,
        "memory",
        {
            "version": Bundle(BUNDLE).metadata["version"],
            "peak_memory_mb": round(bundle_run["peak_rss_mib"] * 2**20 / 1e6),
            "task": "whole-volume inference",
            "volume_shape": s["shape"],
            "spacing_mm": s["spacing_mm"],
            "reference_ratio": report["median_ratios"]["peak_rss"],
            "machine": report["machine"],
            "measured_at": report["measured_at"],
            "report": f"docs/{REPORT_NAME}.md",
        },
    )


if __name__ == "__main__":
    main()
