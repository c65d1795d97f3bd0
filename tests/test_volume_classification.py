"""The 3D ResNet classification bundle learns the lesion class of held-out phantoms, and predicts per file."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

BUNDLE = "ct_resnet3d_classification"
# The tiny but learnable settings of configs/demo.json (32^3 phantoms at 3 mm, ResNet-10 at a quarter of the width,
# 18 held-out test volumes), as run by `medzoo quickstart`, so the model card's figures are this test's.
DEMO = ["demo.json"]
QUIET = {"progress_bar": False}


@pytest.mark.slow
def test_resnet_learns_the_lesion_class_of_held_out_volumes(tmp_path):
    bundle = Bundle(BUNDLE)
    dirs = {
        "dataset_dir": str(tmp_path / "data"),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
    }
    run_configs(bundle, ["sample_data.json", *DEMO], dataset_dir=dirs["dataset_dir"])
    run_configs(bundle, ["train.json", *DEMO], workflow_type="train", **QUIET, **dirs)
    run_configs(bundle, ["train.json", "evaluate.json", *DEMO], workflow_type="eval", **QUIET, **dirs)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_samples"] == 18
    assert metrics["accuracy"] >= 0.75, metrics  # chance: 1/3 (balanced classes)
    assert metrics["auroc"] >= 0.85, metrics

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("case_072.nii.gz", "case_073.nii.gz"):
        shutil.copy(tmp_path / "data" / "imagesTs" / name, inputs / name)
    (inputs / "broken.nii.gz").write_bytes(b"not a nifti file")
    run_configs(bundle, ["inference.json", *DEMO], workflow_type="infer", **dirs, input=str(inputs))
    with open(tmp_path / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in rows] == ["case_072.nii.gz", "case_073.nii.gz"]
    with open(tmp_path / "eval" / "errors.csv") as f:
        errors = list(csv.DictReader(f))
    assert len(errors) == 1 and errors[0]["file"].endswith("broken.nii.gz") and "broken.nii.gz" in errors[0]["error"]
    for row in rows:
        probabilities = [float(row[name]) for name in ("no_lesion", "cyst", "hyperdense_lesion")]
        assert abs(sum(probabilities) - 1.0) < 1e-4
