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
# Tiny but learnable: 32^3 phantoms at 3 mm, ResNet-10 at a quarter of the width, 18 held-out test volumes.
LEARN = {
    "num_training": 72, "num_test": 2, "val_fraction": 0.15, "test_fraction": 0.25, "image_size": [32, 32, 32],
    "spacing": [3.0, 3.0, 3.0], "pixdim": [3.0, 3.0, 3.0], "spatial_size": [32, 32, 32], "resnet_depth": 10,
    "widen_factor": 0.25, "batch_size": 8, "num_workers": 0, "progress_bar": False, "max_epochs": 30, "val_interval": 1,
    "learning_rate": 0.001, "seed": 0,
}


@pytest.mark.slow
def test_resnet_learns_the_lesion_class_of_held_out_volumes(tmp_path):
    bundle = Bundle(BUNDLE)
    dirs = {"dataset_dir": str(tmp_path / "data"), "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    run_configs(bundle, ["sample_data.json"], **LEARN, dataset_dir=dirs["dataset_dir"])
    run_configs(bundle, ["train.json"], workflow_type="train", **LEARN, **dirs)
    run_configs(bundle, ["train.json", "evaluate.json"], workflow_type="eval", **LEARN, **dirs)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_samples"] == 18
    assert metrics["accuracy"] >= 0.75, metrics  # chance: 1/3 (balanced classes)
    assert metrics["auroc"] >= 0.85, metrics

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("case_072.nii.gz", "case_073.nii.gz"):
        shutil.copy(tmp_path / "data" / "imagesTs" / name, inputs / name)
    (inputs / "broken.nii.gz").write_bytes(b"not a nifti file")
    run_configs(bundle, ["inference.json"], workflow_type="infer", **LEARN, **dirs, input=str(inputs))
    with open(tmp_path / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in rows] == ["case_072.nii.gz", "case_073.nii.gz"]
    with open(tmp_path / "eval" / "errors.csv") as f:
        errors = list(csv.DictReader(f))
    assert len(errors) == 1 and errors[0]["file"].endswith("broken.nii.gz") and "broken.nii.gz" in errors[0]["error"]
    for row in rows:
        probabilities = [float(row[name]) for name in ("no_lesion", "cyst", "hyperdense_lesion")]
        assert abs(sum(probabilities) - 1.0) < 1e-4
