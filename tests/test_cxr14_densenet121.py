"""The chest X-ray DenseNet121 bundle: it learns, and its inference survives bad inputs."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medzoo.weights import write_init_weights
from medzoo.workflows import run_configs

QUICK = ["quick.json"]


@pytest.fixture(scope="module")
def init_weights(cxr_bundle, tmp_path_factory) -> Path:
    return write_init_weights(cxr_bundle, tmp_path_factory.mktemp("models") / "model.pt")


def _infer(bundle, weights: Path, output_dir: Path, **overrides):
    return run_configs(
        bundle,
        ["inference.json", *QUICK],
        workflow_type="infer",
        ckpt_path=str(weights),
        output_dir=str(output_dir),
        **overrides,
    )


def _read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _good_png(path: Path, seed: int, size: int = 80, mode: str = "L") -> Path:
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, len(mode))
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def test_inference_reports_bad_files_and_predicts_the_rest(cxr_bundle, init_weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    good = [
        _good_png(images / "a.png", 0),
        _good_png(images / "b_rgb.jpg", 1, mode="RGB"),
        _good_png(images / "c_rgba.png", 2, mode="RGBA"),
    ]
    (images / "empty.png").write_bytes(b"")
    (images / "notes.png").write_text("this is not an image")
    truncated = _good_png(images / "truncated.png", 3, size=200)
    truncated.write_bytes(truncated.read_bytes()[:300])
    out = tmp_path / "eval"
    _infer(cxr_bundle, init_weights, out, input=str(images))

    rows = _read_csv(out / "predictions.csv")
    assert [Path(r["file"]).name for r in rows] == [p.name for p in good]
    assert all(0.0 <= float(r["Hernia"]) <= 1.0 for r in rows) and len(rows[0]) == 15
    errors = {Path(r["file"]).name: r["error"] for r in _read_csv(out / "errors.csv")}
    assert set(errors) == {"empty.png", "notes.png", "truncated.png"}
    assert "empty.png: file is empty" in errors["empty.png"]
    assert "notes.png: not a readable image" in errors["notes.png"]
    assert "truncated.png" in errors["truncated.png"]
    assert sorted(os.listdir(out)) == ["errors.csv", "predictions.csv"]  # no temporary files left


def test_inference_on_a_datalist_names_a_missing_file(cxr_bundle, init_weights, tmp_path):
    _good_png(tmp_path / "ok.png", 4)
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"test": [{"image": "ok.png"}, {"image": "gone.png"}]}))
    _infer(cxr_bundle, init_weights, tmp_path / "eval", input=str(datalist))
    assert [Path(r["file"]).name for r in _read_csv(tmp_path / "eval" / "predictions.csv")] == ["ok.png"]
    assert "gone.png: file not found" in _read_csv(tmp_path / "eval" / "errors.csv")[0]["error"]


def _messages(error: BaseException) -> str:
    """All messages of an exception chain: MONAI wraps errors raised while building components."""
    parts = []
    while error is not None:
        parts.append(str(error))
        error = error.__cause__
    return "\n".join(parts)


def test_failed_run_leaves_earlier_csv_untouched(cxr_bundle, init_weights, tmp_path):
    _good_png(tmp_path / "ok.png", 5)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "predictions.csv").write_text("earlier run\n")
    failing = "$monai.transforms.Lambdad(keys='pred', func=lambda x: 1 / 0)"
    with pytest.raises(Exception) as failure:
        _infer(cxr_bundle, init_weights, out, input=str(tmp_path / "ok.png"), postprocessing=failing)
    assert "division by zero" in _messages(failure.value)
    assert (out / "predictions.csv").read_text() == "earlier run\n"
    assert os.listdir(out) == ["predictions.csv"]


def test_inference_refuses_missing_or_mismatched_weights(cxr_bundle, tmp_path):
    import torch

    _good_png(tmp_path / "ok.png", 6)
    with pytest.raises(Exception) as missing:
        _infer(cxr_bundle, tmp_path / "absent.pt", tmp_path / "eval", input=str(tmp_path / "ok.png"))
    assert "no weights at" in _messages(missing.value) and "absent.pt" in _messages(missing.value)
    torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "wrong.pt")
    with pytest.raises(Exception) as wrong:
        _infer(cxr_bundle, tmp_path / "wrong.pt", tmp_path / "eval", input=str(tmp_path / "ok.png"))
    assert "wrong.pt do not fit the DenseNet121 network" in _messages(wrong.value)
    assert not (tmp_path / "eval" / "predictions.csv").exists()


def test_gradcam_overlays(cxr_bundle, init_weights, tmp_path):
    _good_png(tmp_path / "x.png", 7)
    _infer(
        cxr_bundle, init_weights, tmp_path / "eval", input=str(tmp_path / "x.png"), gradcam=True, gradcam_threshold=0.0
    )
    overlays = sorted((tmp_path / "eval" / "gradcam").glob("x_*_gradcam.png"))
    index = _read_csv(tmp_path / "eval" / "gradcam" / "gradcam.csv")  # every class is >= 0: one row each
    assert [r["label"] for r in index] == list(_read_csv(tmp_path / "eval" / "predictions.csv")[0])[1:]
    assert overlays and sorted(r["overlay"] for r in index if r["overlay"].endswith(".png")) == [
        p.name for p in overlays
    ]
    picture = np.asarray(Image.open(overlays[0]))
    assert picture.shape == (80, 80, 3) and picture.std() > 0  # the input's size, not the network's 64 x 64


@pytest.mark.slow
def test_short_training_learns(cxr_bundle, trained_cxr, tmp_path):
    """A fixed-seed few-epoch training on synthetic images beats chance clearly on held-out patients."""
    dirs, settings = trained_cxr
    run_configs(
        cxr_bundle,
        ["train.json", "evaluate.json"],
        workflow_type="eval",
        **settings,
        **{**dirs, "output_dir": str(tmp_path / "eval")},
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_samples"] >= 50  # held-out test patients
    assert metrics["mean_auroc"] >= 0.8, metrics


def test_monai_bundle_cli_from_the_repository_root(cxr_bundle, init_weights, tmp_path):
    """`python -m monai.bundle run --config_file bundles/<name>/configs/inference.json` finds its bundle root."""
    import subprocess
    import sys

    _good_png(tmp_path / "ok.png", 8)
    repo_root = cxr_bundle.root.parent.parent
    config = cxr_bundle.root.relative_to(repo_root) / "configs" / "inference.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(config),
            "--input",
            str(tmp_path / "ok.png"),
            "--ckpt_path",
            str(init_weights),
            "--output_dir",
            str(tmp_path / "eval"),
            "--num_workers",
            "0",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [Path(r["file"]).name for r in _read_csv(tmp_path / "eval" / "predictions.csv")] == ["ok.png"]
