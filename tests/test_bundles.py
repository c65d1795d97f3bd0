"""The zoo verification, parametrised over every bundle: a new bundle is checked without new test code."""

import json
import shutil
from pathlib import Path

import pytest
from bundle_sets import smallest_of_each_configuration

from medzoo.bundle_checks import SCHEMA_FILE, check_export, check_files, check_metadata, check_net_in_out
from medzoo.monailabel_checks import check_monailabel_ready
from medzoo.paths import bundle_names
from medzoo.workflow_checks import check_multi_gpu, check_workflows
from medzoo.zoo import INDEX_FILE, Bundle, build_index

BUNDLES = bundle_names()


def test_there_are_bundles():
    assert "cxr14_densenet121_classification" in BUNDLES


@pytest.mark.parametrize("name", BUNDLES)
def test_files_and_disclaimer(name):
    check_files(Bundle(name))


def test_inference_reading_another_bundle_is_refused(tmp_path, cxr_bundle):
    copy = Path(
        shutil.copytree(cxr_bundle.root, tmp_path / cxr_bundle.name, ignore=shutil.ignore_patterns("sample_data"))
    )
    config = json.loads((copy / "configs" / "inference.json").read_text())
    config["teacher"] = "$medzoo.paths.bundle_root('cmr_motion_estimation') + '/models/model.pt'"
    (copy / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"inference.json reads files of other bundles \['cmr_motion_estimation'\]"):
        check_files(Bundle(copy))


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata(name):
    check_metadata(Bundle(name))


@pytest.mark.parametrize("field", ["version", "network_data_format", "intended_use", "changelog"])
def test_schema_rejects_metadata_missing_a_required_field(tmp_path, cxr_bundle, field):
    meta = cxr_bundle.metadata
    del meta[field]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps(meta))
    from monai.bundle import verify_metadata

    with pytest.raises(ValueError, match=f"'{field}' is a required property"):
        verify_metadata(meta_file=str(tmp_path / "configs" / "metadata.json"), filepath=str(SCHEMA_FILE))


def test_metadata_rejects_unnamed_output_channels(tmp_path, cxr_bundle):
    import shutil

    copy = tmp_path / cxr_bundle.name
    shutil.copytree(cxr_bundle.root / "configs", copy / "configs")
    meta = cxr_bundle.metadata
    del meta["network_data_format"]["outputs"]["pred"]["channel_def"]["13"]
    (copy / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="14 channels but channel_def names 13"):
        check_metadata(Bundle(copy))


def test_metadata_rejects_a_long_changelog_entry(tmp_path, cxr_bundle):
    import shutil

    copy = tmp_path / cxr_bundle.name
    shutil.copytree(cxr_bundle.root / "configs", copy / "configs")
    meta = cxr_bundle.metadata
    meta["changelog"][meta["version"]] = "x" * 120
    (copy / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"changelog entry {meta['version']} is 120 characters"):
        check_metadata(Bundle(copy))


@pytest.mark.parametrize("name", BUNDLES)
def test_monailabel_ready(name):
    check_monailabel_ready(Bundle(name))


@pytest.mark.parametrize(
    "change, message",
    [
        ("rename", "MONAI Label would serve this classification bundle as 'segmentation'"),
        ("labels", "distinct in lower case"),
        ("ids", r"lacks the ids MONAI Label sets or reads: \['inferer'\]"),
        ("docs", "must give the MONAI Label command"),
        ("meta", "refers to _meta_, which MONAI Label"),
        ("compose", "'postprocessing' is Activationsd, not a Compose"),
    ],
)
def test_monailabel_check_catches_what_monailabel_would_trip_on(tmp_path, cxr_bundle, change, message):
    import shutil

    copy = tmp_path / ("cxr14_densenet121" if change == "rename" else cxr_bundle.name)
    shutil.copytree(cxr_bundle.root / "configs", copy / "configs")
    shutil.copytree(cxr_bundle.root / "docs", copy / "docs")
    if change == "labels":
        meta = cxr_bundle.metadata
        meta["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] = "ATELECTASIS"
        (copy / "configs" / "metadata.json").write_text(json.dumps(meta))
    if change == "ids":
        config = json.loads((copy / "configs" / "inference.json").read_text())
        del config["inferer"]
        (copy / "configs" / "inference.json").write_text(json.dumps(config))
    if change == "meta":
        config = json.loads((copy / "configs" / "inference.json").read_text())
        config["labels"] = "$list(@_meta_#network_data_format#outputs#pred#channel_def.values())"
        (copy / "configs" / "inference.json").write_text(json.dumps(config))
    if change == "compose":
        config = json.loads((copy / "configs" / "inference.json").read_text())
        config["postprocessing"] = config["postprocessing"]["transforms"][0]
        (copy / "configs" / "inference.json").write_text(json.dumps(config))
    if change == "docs":
        (copy / "docs" / "README.md").write_text("Research model, not for clinical use.\n")
    with pytest.raises(ValueError, match=message):
        check_monailabel_ready(Bundle(copy))


@pytest.mark.parametrize("name", BUNDLES)
def test_net_in_out(name):
    check_net_in_out(Bundle(name))


@pytest.mark.parametrize("name", BUNDLES)
def test_torchscript_export_round_trip(name, tmp_path):
    import torch

    ts_file = check_export(Bundle(name), tmp_path)
    assert isinstance(torch.jit.load(str(ts_file)), torch.jit.ScriptModule)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_workflows_train_evaluate_infer(name, tmp_path):
    outputs = check_workflows(Bundle(name), tmp_path)
    if "metrics" in outputs:
        metrics = json.loads(outputs["metrics"].read_text())
        assert any(isinstance(v, float) for v in metrics.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n for n in smallest_of_each_configuration() if "multi_gpu_train.json" in Bundle(n).configs]
)
def test_multi_gpu_training_under_torchrun(name, tmp_path):
    bundle = Bundle(name)
    from medzoo.workflows import run_configs

    run_configs(bundle, ["sample_data.json", "quick.json"], dataset_dir=str(tmp_path / "data"))
    assert check_multi_gpu(bundle, tmp_path / "data", tmp_path / "run").stat().st_size > 0


def test_index_is_up_to_date():
    on_disk = json.loads(INDEX_FILE.read_text())
    assert on_disk == build_index(), "zoo_index.json is stale: run `medzoo index`"


def test_index_lists_every_bundle_with_its_facts():
    entries = {e["name"]: e for e in build_index()["bundles"]}
    assert sorted(entries) == BUNDLES
    cxr = entries["cxr14_densenet121_classification"]
    assert cxr["network"] == "DenseNet121"
    assert cxr["parameters"] == sum(p.numel() for p in Bundle(cxr["name"]).network().parameters())
    assert len(cxr["labels"]) == 14 and cxr["labels"][0] == "Atelectasis"
    assert {"train.json", "inference.json", "evaluate.json", "multi_gpu_train.json"} <= set(cxr["configs"])
    assert cxr["weights"]["status"] in ("init", "trained", "converted")
