"""The medzoo command line, driven in-process through fire."""

import json

import fire
import pytest
import torch

from medzoo.cli import ZooCLI


def _run(capsys, *args):
    fire.Fire(ZooCLI, command=list(args), name="medzoo")
    return capsys.readouterr().out


def test_list_and_info(capsys):
    assert "cxr14_densenet121_classification" in _run(capsys, "list")
    info = json.loads(_run(capsys, "info", "cxr14_densenet121_classification").split("\n", 0)[0])
    assert info["parameters"] > 6_000_000 and info["labels"][-1] == "Hernia"


def test_unknown_bundle_is_a_clear_error(capsys):
    with pytest.raises(FileNotFoundError, match="no bundle 'nope'.*known bundles: .*cxr14_densenet121_classification"):
        _run(capsys, "info", "nope")


def test_index_check(capsys):
    assert "is up to date" in _run(capsys, "index", "--check")


def test_sample_data_and_init_weights(capsys, tmp_path):
    out = _run(capsys, "sample-data", "cxr14_densenet121_classification", f"--dataset_dir={tmp_path / 'data'}",
               "--num_patients=3", "--images_per_patient=2", "--image_size=64")
    assert "sample data written to" in out
    datalist = json.loads((tmp_path / "data" / "datalist.json").read_text())
    assert len(datalist["training"]) + len(datalist["validation"]) + len(datalist["test"]) == 6
    _run(capsys, "init-weights", "cxr14_densenet121_classification", f"--output={tmp_path / 'w.pt'}")
    _run(capsys, "init-weights", "cxr14_densenet121_classification", f"--output={tmp_path / 'w2.pt'}")
    first, second = (torch.load(tmp_path / n, weights_only=True) for n in ("w.pt", "w2.pt"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)  # deterministic
