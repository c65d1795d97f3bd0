"""The three cardiac bundles learn, on held-out synthetic cases, at a tiny scale (48x48 phantoms, a few epochs).

Runs each bundle's own configs (train.json, evaluate.json with quick.json) through ``run_configs``, on one shared
sample data set, and reads the metrics evaluate.json writes for the test cases (patients not seen in training):
- motion: the L1 photometric error of the warped end-diastole falls by at least half against the identity;
- registration: myocardium Dice after registration beats Dice before it;
- MI segmentation, on top of the trained motion network: Dice >= 0.7.
"""

import json

import pytest
import torch

from medzoo.cmr.datasets import prepare_cmr
from medzoo.cmr.synthetic import generate_cmr_sample
from medzoo.weights import load_state_dict
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions gain nothing from a second thread on a shared CPU; it only spins."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmr_learning")
    generate_cmr_sample(root / "data", num_cases=12, slices_per_case=2, frames=4, image_size=48, seed=1)
    prepare_cmr(root / "data", root / "data" / "datalist.json", require=["cine_myo", "lge", "lge_myo", "cine_mi"])
    return root


def _train_and_evaluate(name: str, root, **overrides) -> dict:
    bundle = Bundle(name)
    dirs = {
        "dataset_dir": str(root / "data"),
        "ckpt_dir": str(root / name / "models"),
        "output_dir": str(root / name / "eval"),
    }
    settings = {"val_interval": overrides["max_epochs"], **dirs, **overrides}
    run_configs(bundle, ["train.json", "quick.json"], **settings)
    run_configs(bundle, ["train.json", "evaluate.json", "quick.json"], **settings)
    metrics = json.loads((root / name / "eval" / "metrics.json").read_text())
    print(f"{name}: {metrics}")
    return metrics


@pytest.fixture(scope="module")
def motion(dataset):
    metrics = _train_and_evaluate("cmr_motion_estimation", dataset, max_epochs=24, batch_size=2, learning_rate=0.003)
    return metrics, dataset / "cmr_motion_estimation" / "models" / "model.pt"


def test_motion_halves_the_photometric_error(motion):
    metrics, _ = motion
    assert metrics["num_samples"] == 4
    assert metrics["photometric_reduction"] >= 0.5, metrics
    assert metrics["folding_fraction"] < 0.02, metrics


def test_registration_raises_myocardium_dice(dataset):
    metrics = _train_and_evaluate("cmr_lge_registration", dataset, max_epochs=20, batch_size=2, learning_rate=0.003)
    assert metrics["myo_dice"] > metrics["myo_dice_before"] + 0.05, metrics
    assert metrics["folding_fraction"] < 0.02, metrics


def test_mi_segmentation_on_trained_motion_reaches_dice_07(dataset, motion):
    _, trained_motion = motion
    kept_motion = dataset / "cmr_mi_segmentation" / "models" / "motion_model.pt"  # train.json's default place
    metrics = _train_and_evaluate(
        "cmr_mi_segmentation",
        dataset,
        max_epochs=30,
        batch_size=4,
        learning_rate=0.003,
        write_motion_init=False,
        motion_source=str(trained_motion),
        motion_checkpoint=str(kept_motion),
    )
    assert metrics["mi_dice"] >= 0.7, metrics
    source, copy = load_state_dict(trained_motion), load_state_dict(kept_motion)  # the bundle keeps what it used
    assert source.keys() == copy.keys() and all(torch.equal(source[k], copy[k]) for k in source)
