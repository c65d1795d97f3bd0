import os
import sys
from pathlib import Path

import pytest
import torch

# the experiments in benchmarks/ (not part of the installed package) import as `from benchmarks import <name>`
sys.path.append(str(Path(__file__).resolve().parents[1]))

# under pytest-xdist (-n N) the workers share the cores
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))


@pytest.fixture(scope="session")
def cxr_bundle():
    from medzoo.zoo import Bundle

    return Bundle("cxr14_densenet121_classification")


@pytest.fixture(scope="session")
def trained_cxr(cxr_bundle, tmp_path_factory):
    """The DenseNet121 bundle trained for a few epochs at 64 px on synthetic images (shared by the learning tests).

    Returns the folders of the run (``dataset_dir``, ``ckpt_dir``, ``output_dir``) and its training settings.
    """
    from medzoo.workflows import run_configs

    root = tmp_path_factory.mktemp("trained_cxr")
    dirs = {"dataset_dir": str(root / "data"), "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    run_configs(cxr_bundle, ["sample_data.json"], num_patients=40, images_per_patient=8, image_size=128, **dirs)
    settings = {
        "spatial_size": [64, 64],
        "max_epochs": 4,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "num_workers": 0,
        "progress_bar": False,
    }
    run_configs(cxr_bundle, ["train.json"], workflow_type="train", **settings, **dirs)
    return dirs, settings
