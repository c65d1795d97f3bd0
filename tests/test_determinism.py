"""Determinism: with the config's fixed ``seed``, two CPU training runs of a bundle give identical losses.

Parametrised over every bundle with a ``train.json``, through :func:`medzoo.workflow_checks.check_determinism` (ids used:
``seed``, ``train#trainer``, ``max_epochs``, ``val_interval``, plus ``quick.json`` when the bundle has one).
"""

import math

import pytest

from medzoo.hardening_checks import check_hardening
from medzoo.paths import bundle_names
from medzoo.workflow_checks import check_determinism
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

BUNDLES = bundle_names()
TRAINABLE = [n for n in BUNDLES if (Bundle(n).root / "configs" / "train.json").is_file()]


def _sample_data(bundle: Bundle, folder) -> str:
    if "sample_data.json" in bundle.configs:
        quick = ["quick.json"] if "quick.json" in bundle.configs else []
        run_configs(bundle, ["sample_data.json", *quick], dataset_dir=str(folder))
    return str(folder)


@pytest.mark.parametrize("name", BUNDLES)
def test_hardening_conventions(name):
    check_hardening(Bundle(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINABLE)
def test_two_seeded_cpu_runs_give_identical_losses(name, tmp_path):
    bundle = Bundle(name)
    data = _sample_data(bundle, tmp_path / "data")
    losses = check_determinism(bundle, data, tmp_path, iterations=3)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_hardening_check_rejects_a_non_atomic_saver(tmp_path, cxr_bundle):
    import json
    import shutil

    copy = tmp_path / cxr_bundle.name
    shutil.copytree(cxr_bundle.root / "configs", copy / "configs")
    train = json.loads((copy / "configs" / "train.json").read_text())
    train["validate"]["handlers"][-1] = {
        "_target_": "CheckpointSaver",
        "save_dir": "@ckpt_dir",
        "save_dict": {"model": "@network"},
    }
    (copy / "configs" / "train.json").write_text(json.dumps(train))
    with pytest.raises(ValueError, match="configs/train.json uses CheckpointSaver; use medzoo.handlers.SaveBestModel"):
        check_hardening(Bundle(copy))
    del train["resume"]
    train["validate"]["handlers"].pop()
    (copy / "configs" / "train.json").write_text(json.dumps(train))
    with pytest.raises(ValueError, match=r"train.json lacks the ids \['resume'\]"):
        check_hardening(Bundle(copy))
