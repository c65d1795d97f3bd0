"""3D volume loading per volume: ``LoadVolumed`` against MONAI's four transforms it replaces.

Two ways to turn a NIfTI file into the classification bundle's ``(1, 64, 64, 48)`` input, on one thread:

- ``load_volume``: ``medzoo.volume.transforms.LoadVolumed`` (reorientation, axis-by-axis linear resampling and a
  centred fit on plain arrays), the bundle's preprocessing from 0.1.4;
- ``monai_transforms``: ``LoadImaged`` + ``Orientationd`` + ``Spacingd(mode="bilinear")`` + ``ResizeWithPadOrCropd``
  on MetaTensors, the bundle's preprocessing before it.

The volumes are the bundle's own sample phantoms (``medzoo.volume.phantoms``: int16, per-case spacing within 20% of
the target, half stored flipped). Both are timed alternately over all files, ``--rounds`` times; the median time per
volume of each is reported with their ratio taken in the same run. Writes ``<output>.json`` and ``<output>.md``::

    python benchmarks/volume_loading.py --output docs/volume_loading
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from monai.transforms import Compose, LoadImaged, Orientationd, ResizeWithPadOrCropd, Spacingd

from medzoo.bench.timing import report_stamp, time_per_item
from medzoo.fileio import publish_report
from medzoo.volume.phantoms import generate_lesion_classification_sample
from medzoo.volume.transforms import LoadVolumed

PIXDIM, SPATIAL_SIZE = (2.0, 2.0, 2.5), (64, 64, 48)


def loaders() -> dict[str, Callable[[str], object]]:
    """Name -> function of a file path."""
    load_volume = LoadVolumed("image", pixdim=PIXDIM, spatial_size=SPATIAL_SIZE, axcodes="RAS")
    monai_transforms = Compose(
        [
            LoadImaged("image", ensure_channel_first=True),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=PIXDIM, mode="bilinear"),
            ResizeWithPadOrCropd("image", SPATIAL_SIZE),
        ]
    )
    return {
        "load_volume": lambda path: load_volume({"image": path}),
        "monai_transforms": lambda path: monai_transforms({"image": path}),
    }


def time_loaders(files: list[str], rounds: int) -> dict:
    """Median milliseconds per volume of each loader over ``rounds`` alternating passes over ``files``."""
    medians = time_per_item(loaders(), files, rounds)
    return {
        "files": len(files),
        "ms_per_volume": medians,
        "speedup": medians["monai_transforms"] / medians["load_volume"],
    }


def markdown(report: dict) -> str:
    ms = report["ms_per_volume"]
    return (
        "\n".join(
            [
                f"`benchmarks/volume_loading.py`, {report['measured_at']}, {report['machine']}, one thread; median of "
                f"{report['rounds']} alternating passes over {report['files']} sample volumes, ratio taken in the same run.",
                "",
                "| LoadVolumed (ms/volume) | LoadImaged + Orientationd + Spacingd + ResizeWithPadOrCropd (ms/volume) | speed-up |",
                "|---|---|---|",
                f"| {ms['load_volume']:.2f} | {ms['monai_transforms']:.2f} | {report['speedup']:.2f}x |",
            ]
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30, help="sample volumes")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed passes over the files")
    parser.add_argument("--output", default=None, help="report path without suffix (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        generate_lesion_classification_sample(
            scratch, num_training=0, num_test=args.count, image_size=SPATIAL_SIZE, spacing=PIXDIM, seed=0
        )
        files = sorted(str(p) for p in (Path(scratch) / "imagesTs").glob("*.nii.gz"))
        report = {
            **report_stamp(),
            "rounds": args.rounds,
            "pixdim": list(PIXDIM),
            "spatial_size": list(SPATIAL_SIZE),
            **time_loaders(files, args.rounds),
        }
    print(json.dumps(report), flush=True)
    table = markdown(report)
    publish_report(args.output, report, table)


if __name__ == "__main__":
    main()
