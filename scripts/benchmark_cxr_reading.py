"""Chest X-ray preprocessing per image: resizing while reading against reading at full size and resizing after.

Three ways to turn a PNG file into the network's ``(1, 224, 224)`` input, on one thread:

- ``resized_while_read``: ``LoadChestXRayd(spatial_size=...)`` + ``ChestXRayIntensityd``, the bundles' preprocessing
  (the image is converted and box-filtered inside Pillow; only the small image becomes a tensor);
- ``full_size_then_resized``: ``LoadChestXRayd`` at full size + MONAI's ``Resized(mode="area")`` +
  ``ChestXRayIntensityd``, the bundles' preprocessing before it;
- ``decode_only``: Pillow opening and decoding the file, nothing else: the floor of any reader built on it.

Synthetic NIH-layout PNGs of each ``--sizes`` are generated; the three are timed alternately over all files,
``--rounds`` times, and the median time per image of each is reported with ratios taken in the same run.
Writes ``<output>.json`` and ``<output>.md``::

    python scripts/benchmark_cxr_reading.py --output docs/cxr_reading
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from monai.transforms import Compose, Resized
from PIL import Image

from medzoo.benchmark import report_stamp, time_per_item
from medzoo.cxr.synthetic import generate_nih_sample
from medzoo.cxr.transforms import ChestXRayIntensityd, LoadChestXRayd
from medzoo.fileio import publish_report

SPATIAL_SIZE = (224, 224)


def _decode(path: str) -> None:
    with Image.open(path) as image:
        image.load()


def readers() -> dict[str, Callable[[str], object]]:
    """Name -> function of a file path."""
    resized_while_read = Compose([LoadChestXRayd("image", spatial_size=SPATIAL_SIZE), ChestXRayIntensityd("image")])
    full_size_then_resized = Compose([LoadChestXRayd("image"), Resized("image", spatial_size=SPATIAL_SIZE, mode="area"),
                                      ChestXRayIntensityd("image")])
    return {"resized_while_read": lambda path: resized_while_read({"image": path}),
            "full_size_then_resized": lambda path: full_size_then_resized({"image": path}),
            "decode_only": _decode}


def time_readers(files: list[str], rounds: int) -> dict:
    """Median milliseconds per image of each reader over ``rounds`` alternating passes over ``files``."""
    medians = time_per_item(readers(), files, rounds)
    return {"files": len(files), "ms_per_image": medians,
            "speedup_over_full_size": medians["full_size_then_resized"] / medians["resized_while_read"],
            "decode_share_of_resized_while_read": medians["decode_only"] / medians["resized_while_read"]}


def markdown(report: dict) -> str:
    lines = [f"`scripts/benchmark_cxr_reading.py`, {report['measured_at']}, {report['machine']}, one thread; median of "
             f"{report['rounds']} alternating passes, ratios taken in the same run.", "",
             "| PNG size | files | resized while read (ms/image) | full size, then Resized (ms/image) | PNG decode alone "
             "(ms/image) | speed-up | decode share |", "|---|---|---|---|---|---|---|"]
    for size, row in report["sizes"].items():
        ms = row["ms_per_image"]
        lines.append(f"| {size}x{size} | {row['files']} | {ms['resized_while_read']:.2f} | "
                     f"{ms['full_size_then_resized']:.2f} | {ms['decode_only']:.2f} | "
                     f"{row['speedup_over_full_size']:.2f}x | {100 * row['decode_share_of_resized_while_read']:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 256], help="square PNG sizes")
    parser.add_argument("--count", type=int, default=60, help="files per size")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed passes over the files")
    parser.add_argument("--output", default=None, help="report path without suffix (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {**report_stamp(), "rounds": args.rounds, "spatial_size": list(SPATIAL_SIZE), "sizes": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            folder = Path(scratch) / str(size)
            generate_nih_sample(folder, num_patients=max(1, args.count // 6), images_per_patient=6, image_size=size)
            files = sorted(str(p) for p in (folder / "images").glob("*.png"))
            report["sizes"][str(size)] = time_readers(files, args.rounds)
            print(json.dumps({size: report["sizes"][str(size)]}), flush=True)
    table = markdown(report)
    publish_report(args.output, report, table)


if __name__ == "__main__":
    main()
