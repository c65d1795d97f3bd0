"""`medzoo quickstart`: one bundle of each family (chest X-ray, cardiac, 3D) at tiny settings (quick.json).

The summary must name only files that exist, give per-class figures under the bundle's own labels, state the number
of held-out cases and the measured time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medzoo.quickstart import per_class_metrics, run_quickstart
from medzoo.zoo import Bundle

pytestmark = pytest.mark.slow

# bundle -> (label names of its outputs, per-class metric it must report)
FAMILIES = {
    "cxr14_densenet121_classification": ("Atelectasis", "auroc"),
    "cmr_mi_segmentation": ("myocardial_infarction", "mi_dice"),
    "msd_unet3d_segmentation": ("liver", "mean_dice"),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_quickstart_summary_names_real_files_and_per_class_figures(name, tmp_path, capsys):
    label, metric = FAMILIES[name]
    dirs = {
        "dataset_dir": str(tmp_path / "data"),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
    }
    result = run_quickstart(Bundle(name), settings=["quick.json"], **dirs)
    summary = capsys.readouterr().out.split(f"=== {name}: done", 1)[1]
    print(summary)

    paths = [Path(p) for p in re.findall(r"(?<!\S)(/\S+)", summary)]  # absolute paths, not "n/a"
    assert paths and all(p.exists() for p in paths), [p for p in paths if not p.exists()]
    assert all(str(p).startswith(str(tmp_path)) for p in paths), paths  # nothing from an earlier run elsewhere
    assert result["outputs"]["weights"] and result["outputs"]["inference"], result["outputs"]
    assert all(Path(p).exists() for files in result["outputs"].values() for p in files)
    assert "predictions.csv" not in summary or name.startswith("cxr")  # the volume bundles write label volumes

    per_class = summary.split("per class:", 1)[1].split("sample data:", 1)[0]
    assert f"{label} " in per_class and metric in per_class, per_class
    assert metric in result["per_class"][label], result["per_class"]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert f"held-out test cases: {metrics['num_samples']}\n" in summary
    assert re.match(r" in \d+(\.\d)? (s|min) ===", summary) and re.search(r"total \d+(\.\d)? (s|min)", summary)


def test_per_class_metrics_reads_each_family_s_layout():
    assert per_class_metrics(
        {"mean_auroc": 0.8, "per_class_auroc": {"Mass": 0.9, "Nodule": None}}, ["Mass", "Nodule"]
    ) == {"Mass": {"auroc": 0.9}, "Nodule": {"auroc": None}}
    volume = {
        "mean_dice": 0.9,
        "mean_dice_per_class": {"liver": 0.95, "spleen": 0.85},
        "hd95_per_class": {"liver": 1.0, "spleen": 2.0},
        "hd95_non_finite": 0,
        "num_samples": 18,
    }
    assert per_class_metrics(volume, ["background", "liver", "spleen"]) == {
        "liver": {"mean_dice": 0.95, "hd95": 1.0},
        "spleen": {"mean_dice": 0.85, "hd95": 2.0},
    }
    assert per_class_metrics({"mi_dice": 0.7, "mi_hd95": None, "num_samples": 8}, ["myocardial_infarction"]) == {
        "myocardial_infarction": {"mi_dice": 0.7, "mi_hd95": None}
    }
    assert (
        per_class_metrics({"photometric_reduction": 0.6, "num_samples": 4}, ["displacement_y", "displacement_x"]) == {}
    )
