"""Chest X-ray preprocessing per image: medzoo's PNG decoder and box resize against Pillow's, and resizing while
reading against resizing after.

Ways to turn a PNG file into the network's ``(1, 224, 224)`` input, and the decoding inside them, on one thread:

- ``resized_while_read``: ``LoadChestXRayd(spatial_size=...)`` + ``ChestXRayIntensityd``, the bundles' preprocessing
  (grayscale PNGs decoded by ``medzoo.cxr.png``, the stored pixels box-filtered by ``medzoo.cxr.resize``; only the
  small image becomes a tensor);
- ``pillow_resized_while_read``: the same done by Pillow (decode, conversion to float32, ``BOX`` resize), the
  bundles' preprocessing before ``medzoo.cxr.png`` and ``medzoo.cxr.resize`` (the same input to float32 rounding,
  checked once per file);
- ``full_size_then_resized``: ``LoadChestXRayd`` at full size + MONAI's ``Resized(mode="area")`` +
  ``ChestXRayIntensityd``, the bundles' preprocessing before resizing while reading;
- ``medzoo_decode``: reading the file and ``decode_gray_png`` (ISA-L inflate, compiled unfilter), nothing else;
- ``pillow_decode``: Pillow opening and decoding the file, nothing else (the same pixels, checked once per file).

Synthetic NIH-layout PNGs of each ``--sizes`` are generated; the five are timed alternately over all files,
``--rounds`` times, and the median time per image of each is reported with ratios taken in the same run.
Writes ``<output>.json`` and ``<output>.md``::

    python benchmarks/cxr_reading.py --output docs/cxr_reading
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Compose, Resized
from PIL import Image

from medzoo.bench.timing import report_stamp, time_per_item
from medzoo.cxr.png import decode_gray_png
from medzoo.cxr.synthetic import generate_nih_sample
from medzoo.cxr.transforms import (
    ChestXRayIntensity,
    ChestXRayIntensityd,
    LoadChestXRayd,
)
from medzoo.fileio import publish_report

SPATIAL_SIZE = (224, 224)


def _pillow_decode(path: str) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def _medzoo_decode(path: str) -> np.ndarray:
    return decode_gray_png(Path(path).read_bytes())


def readers() -> dict[str, Callable[[str], object]]:
    """Name -> function of a file path (8-bit grayscale PNGs)."""
    resized_while_read = Compose([LoadChestXRayd("image", spatial_size=SPATIAL_SIZE), ChestXRayIntensityd("image")])
    full_size_then_resized = Compose(
        [
            LoadChestXRayd("image"),
            Resized("image", spatial_size=SPATIAL_SIZE, mode="area"),
            ChestXRayIntensityd("image"),
        ]
    )
    intensity = ChestXRayIntensity()

    def pillow_resized_while_read(path: str) -> torch.Tensor:
        small = _pillow_decode(path).convert("F").resize(SPATIAL_SIZE[::-1], Image.Resampling.BOX)
        return intensity(torch.from_numpy(np.array(small))[None])

    return {
        "resized_while_read": lambda path: resized_while_read({"image": path})["image"],
        "pillow_resized_while_read": pillow_resized_while_read,
        "full_size_then_resized": lambda path: full_size_then_resized({"image": path}),
        "medzoo_decode": _medzoo_decode,
        "pillow_decode": _pillow_decode,
    }


def time_readers(files: list[str], rounds: int) -> dict:
    """Median milliseconds per image of each reader over ``rounds`` alternating passes over ``files``."""
    ways = readers()
    for path in files:
        if not np.array_equal(_medzoo_decode(path), np.array(_pillow_decode(path))):
            raise RuntimeError(f"{path}: medzoo.cxr.png and Pillow decode to different pixels")
        if not torch.allclose(
            ways["resized_while_read"](path).as_tensor(), ways["pillow_resized_while_read"](path), rtol=0, atol=1e-6
        ):
            raise RuntimeError(f"{path}: medzoo and Pillow give different network inputs")
    medians = time_per_item(ways, files, rounds)
    return {
        "files": len(files),
        "ms_per_image": medians,
        "decoder_speedup": medians["pillow_decode"] / medians["medzoo_decode"],
        "speedup_over_pillow": medians["pillow_resized_while_read"] / medians["resized_while_read"],
        "speedup_over_full_size": medians["full_size_then_resized"] / medians["resized_while_read"],
        "decode_share_of_resized_while_read": medians["medzoo_decode"] / medians["resized_while_read"],
    }


def markdown(report: dict) -> str:
    header = (
        "| PNG size | files | decode: Pillow (ms/image) | decode: medzoo.cxr.png (ms/image) | decoder speed-up "
        "| resized while read (ms/image) | the same by Pillow (ms/image) | speed-up over Pillow "
        "| full size, then Resized (ms/image) | speed-up of resizing while reading | decode share |"
    )
    stamp = (
        f"`benchmarks/cxr_reading.py`, {report['measured_at']}, {report['machine']}, one thread; median of "
        f"{report['rounds']} alternating passes, ratios taken in the same run."
    )
    lines = [stamp, "", header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size, row in report["sizes"].items():
        ms = row["ms_per_image"]
        lines.append(
            f"| {size}x{size} | {row['files']} | {ms['pillow_decode']:.2f} | {ms['medzoo_decode']:.2f} "
            f"| {row['decoder_speedup']:.2f}x | {ms['resized_while_read']:.2f} "
            f"| {ms['pillow_resized_while_read']:.2f} | {row['speedup_over_pillow']:.2f}x "
            f"| {ms['full_size_then_resized']:.2f} | {row['speedup_over_full_size']:.2f}x "
            f"| {100 * row['decode_share_of_resized_while_read']:.0f}% |"
        )
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
            generate_nih_sample(folder, num_patients=max(2, args.count // 6), images_per_patient=6, image_size=size)
            files = sorted(str(p) for p in (folder / "images").glob("*.png"))
            report["sizes"][str(size)] = time_readers(files, args.rounds)
            print(json.dumps({size: report["sizes"][str(size)]}), flush=True)
    table = markdown(report)
    publish_report(args.output, report, table)


if __name__ == "__main__":
    main()
