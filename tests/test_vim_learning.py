"""The Vision Mamba bundle learns: a short training through its own configs lifts the held-out mean AUROC on
synthetic radiographs of unseen patients from its seeded initial weights' to a bound they do not reach.

32x32 images keep the plain-PyTorch selective scan within the CPU budget of the test suite (64 tokens a scan); the
figures say that the network and its bundle learn, on phantoms only, not how well Vim reads radiographs.
"""

import json

import pytest
import torch

from medzoo.weights import save_weights
from medzoo.workflows import run_configs, write_held_out_datalist
from medzoo.zoo import Bundle

BUNDLE = "cxr14_hybridmednet_vim_small_classification"
SETTINGS = {
    "spatial_size": [32, 32],
    "num_workers": 0,
    "progress_bar": False,
    "cache_rate": 1.0,
    "max_epochs": 5,
    "warmup_epochs": 1,
    "batch_size": 16,
    "learning_rate": 2e-3,
}
#: Held-out mean AUROC the trained network must reach and the seeded initial weights must not.
MIN_AUROC = 0.62


@pytest.mark.slow
def test_short_training_of_the_vim_bundle_learns(tmp_path):
    """5 epochs on 32 patients x 8 images (32x32), scored on all 120 images of 30 unseen patients (generator seed 1)."""
    bundle = Bundle(BUNDLE)
    data = {"dataset_dir": str(tmp_path / "data")}
    run_configs(bundle, ["sample_data.json"], num_patients=32, images_per_patient=8, image_size=128, **data)
    unseen = write_held_out_datalist(
        bundle, tmp_path / "unseen", num_patients=30, images_per_patient=4, image_size=128, seed=1
    )
    held_out = {"validate#dataset#data": f"$medzoo.data.load_datalist({unseen!r}, 'test')"}

    torch.manual_seed(0)
    initial = bundle.parser("train.json", **SETTINGS).get_parsed_content("network_def")
    save_weights(initial.state_dict(), tmp_path / "initial" / "model.pt")
    auroc = {}
    for name in ("initial", "trained"):
        dirs = {**data, "ckpt_dir": str(tmp_path / name), "output_dir": str(tmp_path / name / "eval")}
        if name == "trained":
            run_configs(bundle, ["train.json"], workflow_type="train", **SETTINGS, **dirs)
        run_configs(bundle, ["train.json", "evaluate.json"], workflow_type="eval", **SETTINGS, **dirs, **held_out)
        metrics = json.loads((tmp_path / name / "eval" / "metrics.json").read_text())
        assert metrics["num_samples"] == 120
        auroc[name] = metrics["mean_auroc"]
    assert auroc["initial"] < MIN_AUROC <= auroc["trained"], auroc
