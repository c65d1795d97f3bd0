"""End-to-end chest X-ray inference, this zoo against torchxrayvision, on the same files, same CPU, same run.

The job: N frontal radiographs as 1024x1024 8-bit PNG files on disk -> a CSV with one row of probabilities per file.

- zoo: ``cxr14_densenet121_classification``'s ``inference.json`` + ``inference_onnx.json`` (ONNX Runtime, fp32 - exact,
  parity with eager checked by ``medzoo export``) with the bundle's default batch size and workers (or --batch_size / --num_workers);
- torchxrayvision: ``xrv.models.DenseNet(weights=None)`` with its own reading and preprocessing
  (``skimage.io.imread``, ``xrv.datasets.normalize``, ``XRayCenterCrop``, ``XRayResizer(224)``), one file at a time
  under ``torch.inference_mode``, rows written to a CSV.

Both run in their own subprocess, one after the other, on the same files; the weights are initial ones (speed does
not depend on their values). Writes ``<output>.json`` and ``<output>.md``.

    python scripts/benchmark_cxr_vs_xrv.py --count 60 --output bundles/cxr14_densenet121_classification/docs/vs_xrv
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medzoo.benchmark import in_subprocess, peak_rss_mb
from medzoo.export import example_input, export_onnx
from medzoo.fileio import write_report
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
    return {"inputs": len(files), "seconds": seconds, "images_per_s": len(files) / seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="number of 1024x1024 PNG files")
    parser.add_argument("--output", default=None, help="report path without suffix (default: print only)")
    parser.add_argument("--batch_size", type=int, default=None, help="zoo batch size (default: the bundle's)")
    parser.add_argument("--num_workers", type=int, default=None, help="zoo data-loader workers (default: the bundle's)")
    parser.add_argument("--onnx_spinning", type=int, choices=(0, 1), default=None,
                        help="ONNX Runtime threads spin-wait (1) or not (0) (default: the bundle's)")
    parser.add_argument("--xrv_job", nargs=2, metavar=("IMAGE_DIR", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.xrv_job:
        print(json.dumps(run_xrv(*args.xrv_job)))
        return

    from medzoo.cxr.synthetic import generate_nih_sample
    from medzoo.verify import write_init_weights

    bundle = Bundle(BUNDLE)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = scratch / "data"
        generate_nih_sample(data, num_patients=max(1, args.count // 6), images_per_patient=6, image_size=1024)
        weights = write_init_weights(bundle, scratch / "model.pt")
        network = bundle.network()
        network.load_state_dict(load_state_dict(weights))
        onnx_file = export_onnx(network, example_input(bundle, 1), scratch / "model.onnx")
        chosen = {"batch_size": args.batch_size, "num_workers": args.num_workers,
                  "onnx_spinning": None if args.onnx_spinning is None else bool(args.onnx_spinning)}
        settings = {k: v for k, v in chosen.items() if v is not None}
        zoo = in_subprocess("inference", bundle, backend="onnx", model=str(onnx_file), dataset_dir=str(data),
                            workdir=str(scratch / "zoo"), **settings)
        result = subprocess.run([sys.executable, __file__, "--xrv_job", str(data / "images"), str(scratch / "xrv.csv")],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"the torchxrayvision job failed:\n{result.stderr[-3000:]}")
        xrv = json.loads(result.stdout.strip().splitlines()[-1])
    report = {"job": "1024x1024 8-bit PNG files -> CSV of probabilities", "files": zoo["inputs"], "zoo_settings": settings,
              "zoo_onnxruntime": zoo,
              "torchxrayvision": xrv, "throughput_ratio": zoo["images_per_s"] / xrv["images_per_s"]}
    table = (
        "| pipeline | files | images/s | peak memory (MB) |\n|---|---|---|---|\n"
        f"| zoo, ONNX Runtime fp32, batch {zoo['batch_size']}, {zoo['num_workers']} workers"
        f"{', threads not spinning' if settings.get('onnx_spinning') is False else ''} | {zoo['inputs']} | "
        f"{zoo['images_per_s']:.2f} | {zoo['peak_rss_mb']:.0f} |\n"
        f"| torchxrayvision DenseNet, its preprocessing, one file at a time | {xrv['inputs']} | {xrv['images_per_s']:.2f} | "
        f"{xrv['peak_rss_mb']:.0f} |\n\nThroughput ratio zoo / torchxrayvision: **{report['throughput_ratio']:.2f}x**\n"
    )
    print(table)
    if args.output:
        write_report(args.output, report, table)


if __name__ == "__main__":
    main()
