"""Packages run unpacked from any working folder; metadata lists installable packages; eval_metrics and card notes
come from the bundle's own evaluation output and metadata."""

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from medzoo.archives import safe_extract
from medzoo.bundle_checks import check_metadata
from medzoo.cards import PUBLIC_DATA_TERMS, data_licence_section, evaluation_section
from medzoo.eval_metrics import eval_metrics_from, record_eval_metrics
from medzoo.package import write_package
from medzoo.paths import bundle_names
from medzoo.weights import write_init_weights
from medzoo.zoo import Bundle

BUNDLES = bundle_names()


def _clean_env() -> dict:
    """A Python that sees site-packages only: no repository, no editable install (with ``-S``), no PYTHONPATH."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
    }


def _monai_bundle_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run ARGS`` in a clean interpreter (-S: no site module, hence no .pth of an editable
    install of the repository)."""
    return subprocess.run(
        [sys.executable, "-S", "-m", "monai.bundle", "run", *args],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_unpacked_package_runs_from_its_parent_folder(tmp_path, cxr_bundle):
    """The README's command for an unpacked package, run from the folder that holds it."""
    archive = write_package(cxr_bundle, tmp_path / "p.zip")
    parent = safe_extract(archive, tmp_path / "unpacked")
    name = cxr_bundle.name
    write_init_weights(cxr_bundle, parent / name / "models" / "model.pt")
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import medzoo"],
        cwd=parent,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No module named 'medzoo'" in probe.stderr  # only the vendored copy can serve the run

    data = _monai_bundle_run(
        "--config_file",
        f"['{name}/configs/sample_data.json','{name}/configs/quick.json']",
        "--bundle_root",
        name,
        cwd=parent,
    )
    assert data.returncode == 0, data.stderr[-3000:]
    run = _monai_bundle_run("--config_file", f"{name}/configs/inference.json", "--bundle_root", name, cwd=parent)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = (parent / name / "eval" / "predictions.csv").read_text().splitlines()
    assert len(lines) == 1 + len(list((parent / name / "sample_data" / "images").rglob("*.png")))

    # without --bundle_root the bundle is found from the config file's location
    again = _monai_bundle_run("--config_file", f"{name}/configs/inference.json", "--output_dir", "out", cwd=parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (parent / "out" / "predictions.csv").read_text() == "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", BUNDLES)
def test_required_packages_are_installable_distributions(name):
    packages = Bundle(name).metadata["required_packages_version"]
    assert "medzoo" not in packages and "fire" in packages
    for distribution in packages:
        importlib.metadata.version(distribution)  # raises PackageNotFoundError for a name no index installs


@pytest.mark.parametrize("name", BUNDLES)
def test_card_has_the_data_licence_and_evaluation_notes_of_its_metadata(name):
    bundle = Bundle(name)
    meta, card = bundle.metadata, (bundle.root / "docs" / "README.md").read_text()
    assert evaluation_section(meta, name) in card
    named = [d for d in PUBLIC_DATA_TERMS if d in meta.get("data_source", "")]
    licence = data_licence_section(meta)
    assert (licence is None) == (not named)
    if licence:
        assert licence in card and all(PUBLIC_DATA_TERMS[d] in " ".join(licence.split()) for d in named)
    if meta["eval_metrics"]:
        assert "synthetic phantoms" in meta["eval_metrics"]["setting"]


def test_check_metadata_rejects_medzoo_a_missing_fire_and_a_flat_class_shape(tmp_path, cxr_bundle):
    import shutil

    copy = Bundle(
        shutil.copytree(
            cxr_bundle.root, tmp_path / cxr_bundle.name, ignore=shutil.ignore_patterns("sample_data", "eval", "*.pt")
        )
    )
    original = copy.metadata
    for change, message in [
        (lambda m: m["required_packages_version"].update(medzoo="0.1.0"), "lists medzoo"),
        (lambda m: m["required_packages_version"].pop("fire"), "must list fire"),
        (lambda m: m["network_data_format"]["outputs"]["pred"].update(spatial_shape=[1]), r"\[1, num_channels\]"),
    ]:
        meta = json.loads(json.dumps(original))
        change(meta)
        copy.metadata_file.write_text(json.dumps(meta, indent=4) + "\n")
        with pytest.raises(ValueError, match=message):
            check_metadata(copy)


def test_record_eval_metrics_copies_the_evaluation_output(tmp_path, cxr_bundle):
    import shutil

    copy = Bundle(
        shutil.copytree(
            cxr_bundle.root, tmp_path / cxr_bundle.name, ignore=shutil.ignore_patterns("sample_data", "eval", "*.pt")
        )
    )
    metrics = {"mean_auroc": 0.712345, "per_class_auroc": {"Mass": 0.5, "Hernia": None}, "num_samples": 90}
    (copy.root / "eval").mkdir()
    (copy.root / "eval" / "metrics.json").write_text(json.dumps(metrics))
    before = copy.metadata
    recorded = record_eval_metrics(copy)
    assert recorded == {
        "mean_auroc": 0.7123,
        "per_class_auroc/Mass": 0.5,
        "num_samples": 90,
        "setting": recorded["setting"],
    }
    assert "synthetic phantoms" in recorded["setting"] and copy.name in recorded["setting"]
    after = copy.metadata
    assert after["eval_metrics"] == recorded and {**after, "eval_metrics": None} == {**before, "eval_metrics": None}
    assert evaluation_section(after, copy.name) in (copy.root / "docs" / "README.md").read_text()
    check_metadata(copy)

    with pytest.raises(FileNotFoundError, match="run its evaluate.json first"):
        record_eval_metrics(copy, tmp_path / "missing.json")
    with pytest.raises(ValueError, match="no finite number"):
        eval_metrics_from({"mean_auroc": None, "note": "x"}, "s")
