"""HybridMedNet training options, run through the smallest bundle's own configs on synthetic data: warmup + cosine
schedule, gradient accumulation, hierarchical loss, pos_weight, early stopping, AMP only on CUDA, and a short
training that learns."""

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from PIL import Image

from medzoo.data import positive_class_weights
from medzoo.weights import write_init_weights
from medzoo.workflows import run_configs, write_held_out_datalist
from medzoo.zoo import Bundle

SMALLEST = "cxr14_hybridmednet_efficientnetv2_s_classification"
TINY = {"spatial_size": [64, 64], "batch_size": 8, "num_workers": 0, "progress_bar": False, "cache_rate": 1.0}


@pytest.fixture(scope="module")
def bundle():
    return Bundle(SMALLEST)


@pytest.fixture(scope="module")
def tiny_data(bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hybridmednet_data")
    run_configs(bundle, ["sample_data.json", "quick.json"], dataset_dir=str(folder))
    return folder


def _workflow(bundle, tmp_path, data, **overrides) -> ConfigWorkflow:
    workflow = ConfigWorkflow(
        config_file=[str(bundle.config_path("train.json"))],
        meta_file=str(bundle.metadata_file),
        workflow_type="train",
        logging_file=False,
        bundle_root=str(bundle.root),
        dataset_dir=str(data),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        **{**TINY, **overrides},
    )
    workflow.initialize()
    return workflow


@pytest.mark.slow
def test_warmup_cosine_accumulation_hierarchical_loss_and_pos_weight(bundle, tiny_data, tmp_path):
    epochs, accumulation = 3, 2
    wf = _workflow(
        bundle,
        tmp_path,
        tiny_data,
        max_epochs=epochs,
        warmup_epochs=1,
        accumulation_steps=accumulation,
        hierarchical=True,
        learning_rate=1e-3,
        pos_weight="$medzoo.data.positive_class_weights(@datalist)",
    )
    trainer = wf.parser.get_parsed_content("train#trainer")
    iterations = len(wf.parser.get_parsed_content("train#dataloader"))
    assert iterations >= 3
    lrs, outputs = [], []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: lrs.append(e.optimizer.param_groups[0]["lr"]))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output[0]["pred"].shape))
    wf.run()
    wf.finalize()

    # linear warmup from 0 over the first epoch, then cosine decay towards 0
    assert lrs[0] == 0.0
    assert lrs[1:iterations] == pytest.approx([1e-3 * i / iterations for i in range(1, iterations)])
    assert max(lrs) == pytest.approx(1e-3, rel=1e-6) and lrs.index(max(lrs)) == iterations
    assert all(a > b for a, b in zip(lrs[iterations:], lrs[iterations + 1 :])) and lrs[-1] < 0.1e-3

    # gradient accumulation: one optimiser step per 2 batches, an odd last batch flushed at the end of each epoch
    steps = {int(s["step"]) for s in trainer.optimizer.state.values()}
    assert steps == {epochs * math.ceil(iterations / accumulation)}

    # hierarchical: the trainer sees coarse + fine logits; the loss weights positives by the training split's ratio
    assert set(outputs) == {torch.Size([17])}
    loss = wf.parser.get_parsed_content("loss")
    assert loss.groups is not None
    expected = torch.as_tensor(positive_class_weights(str(tiny_data / "datalist.json")), dtype=torch.float)
    assert torch.allclose(loss.fine_loss.pos_weight, expected) and not torch.allclose(expected, torch.ones(14))
    # mixed precision only where CUDA exists
    assert trainer.amp is torch.cuda.is_available()
    assert (tmp_path / "models" / "model.pt").is_file()


@pytest.mark.slow
def test_early_stopping_ends_training_after_patience_validations(bundle, tiny_data, tmp_path):
    # no validation can improve the mean AUROC by more than 1, so training stops after 1 + patience epochs
    wf = _workflow(bundle, tmp_path, tiny_data, max_epochs=5, early_stop_patience=2, early_stop_min_delta=1.0)
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 3 < trainer.state.max_epochs
    wf.finalize()


@pytest.mark.slow
def test_short_training_of_the_smallest_variant_learns(bundle, tmp_path):
    """A fixed-seed 6-epoch training on synthetic images reaches a mean AUROC >= 0.75 on unseen patients.

    The unseen patients come from another generator seed (all 200 of their images are scored), so the figure does not
    hinge on the 64 images of the sample's own test split. Measured on 2026-12-01 (2-core CPU, 1 thread): held-out
    mean AUROC 0.815 (training seed 0) and 0.812 (seed 2) on 400 such images; the 0.1.0 head without batch norm of
    the pooled features reached 0.72 with lr 1e-3 and needed 10 epochs at lr 2e-3 for 0.76.
    """
    dirs = {
        "dataset_dir": str(tmp_path / "data"),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
    }
    run_configs(bundle, ["sample_data.json"], num_patients=40, images_per_patient=8, image_size=128, **dirs)
    unseen = write_held_out_datalist(
        bundle, tmp_path / "unseen", num_patients=50, images_per_patient=4, image_size=128, seed=1
    )

    settings = {**TINY, "max_epochs": 6, "warmup_epochs": 1, "batch_size": 16, "learning_rate": 2e-3}
    run_configs(bundle, ["train.json"], workflow_type="train", **settings, **dirs)
    run_configs(
        bundle,
        ["train.json", "evaluate.json"],
        workflow_type="eval",
        **settings,
        **dirs,
        **{"validate#dataset#data": f"$medzoo.data.load_datalist({unseen!r}, 'test')"},
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_samples"] == 200
    assert metrics["mean_auroc"] >= 0.75, metrics


def test_inference_with_gradcam_of_the_fused_map(bundle, tmp_path):
    weights = write_init_weights(bundle, tmp_path / "model.pt")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80), dtype=np.uint8), mode="L").save(
        tmp_path / "x.png"
    )
    run_configs(
        bundle,
        ["inference.json", "quick.json"],
        workflow_type="infer",
        ckpt_path=str(weights),
        output_dir=str(tmp_path / "eval"),
        input=str(tmp_path / "x.png"),
        gradcam=True,
        gradcam_threshold=0.0,
    )
    assert (tmp_path / "eval" / "predictions.csv").read_text().count("\n") == 2
    overlays = list((tmp_path / "eval" / "gradcam").glob("x_*_gradcam.png"))
    assert overlays  # threshold 0: every class whose map is not zero
    picture = np.asarray(Image.open(overlays[0]))
    assert picture.shape == (80, 80, 3) and picture.std() > 0  # the input's size
