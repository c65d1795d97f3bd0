"""Does SimCLR pretraining learn? Linear probe on SimCLR features vs on randomly initialised features.

Generates the synthetic NIH-layout sample, pretrains the ``cxr_simclr_pretraining`` bundle on its unlabelled
train/val images (``configs/train.json``), then runs the bundle's linear-probe evaluation (``configs/evaluate.json``):
a logistic regression per finding on the frozen embeddings of the labelled training images, scored by AUROC on the
test patients, for the pretrained encoder and for a randomly initialised encoder of the same architecture. Prints
and writes ``<workdir>/eval/metrics.json`` (``mean_auroc``, ``baseline_mean_auroc``, ``margin``).

The documented run (the bundle's card renders ``docs/linear_probe.json``)::

    OMP_NUM_THREADS=2 python benchmarks/ssl_linear_probe_margin.py --workdir /tmp/ssl_margin \
        --report bundles/cxr_simclr_pretraining/docs/linear_probe.json

Any train/evaluate config id can be overridden, e.g. ``--max_epochs 20 --spatial_size "[96, 96]"``.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import fire

from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

BUNDLE = "cxr_simclr_pretraining"

#: Defaults of the documented run: 64 x 64 images and 36 optimiser steps of 32 images, minutes on a CPU.
DEFAULTS: dict[str, Any] = {
    "num_patients": 80,
    "images_per_patient": 6,
    "image_size": 96,
    "spatial_size": [64, 64],
    "max_epochs": 3,
    "warmup_epochs": 1,
    "batch_size": 32,
    "accumulation_steps": 1,
    "num_workers": 0,
    "progress_bar": False,
}


def measure_margin(workdir: str | Path, **overrides: Any) -> dict:
    """Sample data, SimCLR pretraining and the linear probe with its random-init baseline, in ``workdir``.

    Returns the linear-probe report (see :func:`medzoo.ssl.probe.run_linear_probe`) plus the settings used.
    """
    bundle = Bundle(BUNDLE)
    workdir = Path(workdir)
    settings = {**DEFAULTS, **overrides}
    dirs = {
        "dataset_dir": str(workdir / "data"),
        "ckpt_dir": str(workdir / "models"),
        "output_dir": str(workdir / "eval"),
    }
    sample = {k: settings[k] for k in ("num_patients", "images_per_patient", "image_size") if k in settings}
    run_configs(bundle, ["sample_data.json"], dataset_dir=dirs["dataset_dir"], **sample)
    training = {k: v for k, v in settings.items() if k not in sample}
    run_configs(bundle, ["train.json"], workflow_type="train", **dirs, **training)
    run_configs(bundle, ["train.json", "evaluate.json"], workflow_type="eval", **dirs, **training)
    report = json.loads((workdir / "eval" / "metrics.json").read_text())
    report["settings"] = settings
    return report


def main(workdir: str = "/tmp/ssl_linear_probe_margin", report: str | None = None, **overrides: Any) -> None:
    """Run :func:`measure_margin` in ``workdir``, print the summary and, with ``report``, write the whole report
    (with the date, the bundle's version and the wall time in seconds) to that JSON path."""
    start = time.time()
    result = measure_margin(workdir, **overrides)
    result["date"] = datetime.date.today().isoformat()
    result["version"] = Bundle(BUNDLE).metadata["version"]
    result["wall_time_s"] = round(time.time() - start, 1)
    keys = ("mean_auroc", "baseline_mean_auroc", "margin", "num_train", "num_samples", "settings", "wall_time_s")
    print(json.dumps({k: result.get(k) for k in keys}, indent=2))
    if report:
        Path(report).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    fire.Fire(main)
