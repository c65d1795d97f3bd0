"""End-to-end chest X-ray inference, this zoo against torchxrayvision, on the same files, same CPU, same run.

The job: N frontal radiographs as 1024x1024 8-bit PNG files on disk -> a CSV with one row of probabilities per file.

- zoo: ``cxr14_densenet121_classification``'s ``inference.json`` + ``inference_onnx.json`` (ONNX Runtime, fp32 - exact,
  parity with eager checked by ``medzoo export``) with the bundle's defaults (batch size, workers, ONNX Runtime threads),
  or other values of those config ids given as ``--zoo_settings '{"batch_size": 8}'``;
- torchxrayvision: ``xrv.models.DenseNet(weights=None)`` with its own reading and preprocessing
  (``skimage.io.imread``, ``xrv.datasets.normalize``, ``XRayCenterCrop``, ``XRayResizer(224)``), one file at a time
  under ``torch.inference_mode``, rows written to a CSV.

Both run in their own subprocess, one after the other, on the same files; the weights are initial ones (speed does
not depend on their values). A shared machine's speed drifts, so the pair runs ``--rounds`` times, alternating, and
the report gives each round's ratio and their median. Writes ``<output>.json`` and ``<output>.md``.

    python benchmarks/cxr_vs_xrv.py --count 240 --rounds 3 --output bundles/cxr14_densenet121_classification/docs/vs_xrv
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medzoo.bench.measure import ONNX_OPTION_IDS
from medzoo.bench.report import thread_layout_text
from medzoo.bench.runner import in_subprocess
from medzoo.bench.timing import peak_rss_mb
from medzoo.export import example_input, export_onnx
from medzoo.fileio import publish_report
from medzoo.weights import load_state_dict
from medzoo.zoo import Bundle

BUNDLE = "cxr14_densenet121_classification"


def run_xrv(image_dir: str, output_csv: str) -> dict:
    """The torchxrayvision job on every PNG of ``image_dir``; returns its timing (run in a subprocess)."""
    import skimage.io
    import torch
    import torchvision
    import torchxrayvision as xrv

    model = xrv.models.DenseNet(weights=None).eval()
    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])
    files = sorted(Path(image_dir).glob("*.png"))
    with torch.inference_mode():  # warm-up on the first file, not timed
        model(torch.from_numpy(transform(xrv.datasets.normalize(skimage.io.imread(files[0]), 255)[None]))[None])
    start = time.perf_counter()
    with open(output_csv, "w", newline="") as f, torch.inference_mode():
        writer = csv.writer(f)
        writer.writerow(["file", *model.targets])
        for file in files:
            image = xrv.datasets.normalize(skimage.io.imread(file), 255)[None]
            probabilities = torch.sigmoid(model(torch.from_numpy(transform(image))[None]))[0]  # weights=None: logits
            writer.writerow([str(file), *(f"{p:.6f}" for p in probabilities.tolist())])
    seconds = time.perf_counter() - start
    return {
        "inputs": len(files),
        "seconds": seconds,
        "images_per_s": len(files) / seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=240, help="number of 1024x1024 PNG files")
    parser.add_argument("--rounds", type=int, default=3, help="zoo / torchxrayvision pairs, run alternately")
    parser.add_argument("--output", default=None, help="report path without suffix (default: print only)")
    parser.add_argument(
        "--zoo_settings",
        type=json.loads,
        default={},
        help="JSON of inference config ids to override, e.g. batch_size, num_workers, onnx_concurrent_runs",
    )
    parser.add_argument("--xrv_job", nargs=2, metavar=("IMAGE_DIR", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.xrv_job:
        print(json.dumps(run_xrv(*args.xrv_job)))
        return

    from medzoo.cxr.synthetic import generate_nih_sample
    from medzoo.weights import write_init_weights

    bundle = Bundle(BUNDLE)
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = scratch / "data"
        generate_nih_sample(data, num_patients=max(1, args.count // 6), images_per_patient=6, image_size=1024)
        weights = write_init_weights(bundle, scratch / "model.pt")
        network = bundle.network()
        network.load_state_dict(load_state_dict(weights))
        onnx_file = export_onnx(network, example_input(bundle, 1), scratch / "model.onnx")
        for _ in range(args.rounds):
            zoo = in_subprocess(
                "inference",
                bundle,
                backend="onnx",
                model=str(onnx_file),
                dataset_dir=str(data),
                workdir=str(scratch / "zoo"),
                **args.zoo_settings,
            )
            result = subprocess.run(
                [sys.executable, __file__, "--xrv_job", str(data / "images"), str(scratch / "xrv.csv")],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"the torchxrayvision job failed:\n{result.stderr[-3000:]}")
            xrv = json.loads(result.stdout.strip().splitlines()[-1])
            rounds.append(
                {
                    "zoo_onnxruntime": zoo,
                    "torchxrayvision": xrv,
                    "throughput_ratio": zoo["images_per_s"] / xrv["images_per_s"],
                }
            )
    ratio = statistics.median(r["throughput_ratio"] for r in rounds)
    zoo = rounds[0]["zoo_onnxruntime"]
    report = {
        "job": "1024x1024 8-bit PNG files -> CSV of probabilities",
        "files": zoo["inputs"],
        "zoo_settings": {"batch_size": zoo["batch_size"], "num_workers": zoo["num_workers"], **zoo["onnx_options"]},
        "rounds": rounds,
        "median_throughput_ratio": ratio,
    }
    settings = report["zoo_settings"]
    layout = thread_layout_text({ONNX_OPTION_IDS[k]: v for k, v in zoo["onnx_options"].items()})
    lines = [
        "| round | zoo images/s | torchxrayvision images/s | ratio | zoo steady state (images/s) | "
        "zoo peak memory (MB) | xrv peak memory (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(rounds, 1):
        z, x = r["zoo_onnxruntime"], r["torchxrayvision"]
        lines.append(
            f"| {k} | {z['images_per_s']:.2f} | {x['images_per_s']:.2f} | {r['throughput_ratio']:.2f} | "
            f"{z['steady_images_per_s']:.2f} | {z['peak_rss_mb']:.0f} | {x['peak_rss_mb']:.0f} |"
        )
    table = (
        f"{zoo['inputs']} files. Zoo: ONNX Runtime fp32, batch {settings['batch_size']}, {settings['num_workers']} "
        f"data-loader workers, {layout}, whole run from the start of the data loader to the CSV written (steady "
        "state: from the first batch written to the last). torchxrayvision: its DenseNet and preprocessing, one file "
        "at a time, after one untimed file.\n\n"
        + "\n".join(lines)
        + f"\n\nThroughput ratio zoo / torchxrayvision, median of {len(rounds)} rounds: **{ratio:.2f}x**\n"
    )
    publish_report(args.output, report, table)


if __name__ == "__main__":
    main()
