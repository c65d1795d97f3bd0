"""Gzipped NIfTI files: Python's ``gzip`` against ISA-L's (``isal.igzip``), the inflater of ``medzoo.io_checks``.

For each kind of file the zoo reads, on one thread, alternately over all files and ``--rounds`` times:

- ``python_gzip``: ``gzip.decompress`` of the file's bytes (zlib), what ``load_nifti_image`` used before;
- ``isal``: ``isal.igzip.decompress`` of the same bytes, what it uses now (the same output, checked once per file);
- ``read_nifti``: the whole checked read (``medzoo.io_checks.read_nifti``: file, ISA-L inflate, header, array, checks),
  for the share decompression takes.

The files are the bundles' own sample data: cine slices ``(T, H, W)`` int16 of the cardiac bundles
(``medzoo.cmr.synthetic``) and int16 CT phantoms of ct_resnet3d (``medzoo.volume.phantoms``). Median time per file,
ratios taken in the same run. Writes ``<output>.json`` and ``<output>.md``::

    python benchmarks/nifti_decompression.py --output docs/nifti_decompression
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

import torch
from isal import igzip

from medzoo.bench.timing import report_stamp, time_per_item
from medzoo.cmr.synthetic import generate_cmr_sample
from medzoo.fileio import publish_report
from medzoo.io_checks import read_nifti
from medzoo.volume.phantoms import generate_lesion_classification_sample


def sample_files(folder: Path, count: int) -> dict[str, list[str]]:
    """Kind of file -> ``count`` gzipped NIfTI files of that kind written under ``folder``."""
    generate_cmr_sample(folder / "cmr", num_cases=max(1, count // 3), slices_per_case=3, frames=12, image_size=96)
    generate_lesion_classification_sample(folder / "ct", num_training=0, num_test=count)
    return {
        "cine slice (12x96x96 int16)": sorted(str(p) for p in (folder / "cmr" / "images" / "cmr").glob("*/*.nii.gz")),
        "CT volume (64x64x48 int16)": sorted(str(p) for p in (folder / "ct" / "imagesTs").glob("*.nii.gz")),
    }


def time_kind(files: list[str], rounds: int) -> dict:
    """Median milliseconds per file of each way over ``rounds`` alternating passes over ``files``."""
    blobs = {path: Path(path).read_bytes() for path in files}
    for path, blob in blobs.items():
        if igzip.decompress(blob) != gzip.decompress(blob):
            raise RuntimeError(f"{path}: ISA-L and zlib decompress to different bytes")
    medians = time_per_item(
        {
            "python_gzip": lambda path: gzip.decompress(blobs[path]),
            "isal": lambda path: igzip.decompress(blobs[path]),
            "read_nifti": lambda path: read_nifti(path, ndim=3),
        },
        files,
        rounds,
    )
    return {
        "files": len(files),
        "compressed_kb": sum(map(len, blobs.values())) / len(blobs) / 1024,
        "ms_per_file": medians,
        "speedup": medians["python_gzip"] / medians["isal"],
        "isal_share_of_read_nifti": medians["isal"] / medians["read_nifti"],
    }


def markdown(report: dict) -> str:
    lines = [
        f"`benchmarks/nifti_decompression.py`, {report['measured_at']}, {report['machine']}, one thread; "
        f"median of {report['rounds']} alternating passes, ratios taken in the same run.",
        "",
        "| file | files | gzipped size (KB) | gzip.decompress (ms/file) | isal.igzip.decompress (ms/file) | speed-up "
        "| read_nifti with ISA-L (ms/file) | decompression share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in report["kinds"].items():
        ms = row["ms_per_file"]
        lines.append(
            f"| {kind} | {row['files']} | {row['compressed_kb']:.0f} | {ms['python_gzip']:.2f} | {ms['isal']:.2f} "
            f"| {row['speedup']:.2f}x | {ms['read_nifti']:.2f} | {100 * row['isal_share_of_read_nifti']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30, help="files per kind")
    parser.add_argument("--rounds", type=int, default=7, help="alternating timed passes over the files")
    parser.add_argument("--output", default=None, help="report path without suffix (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {**report_stamp(), "rounds": args.rounds, "kinds": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for kind, files in sample_files(Path(scratch), args.count).items():
            report["kinds"][kind] = time_kind(files, args.rounds)
            print(json.dumps({kind: report["kinds"][kind]}), flush=True)
    table = markdown(report)
    publish_report(args.output, report, table)


if __name__ == "__main__":
    main()
