"""Grad-CAM overlays (`--gradcam True`): a map that is not degenerate for every classifier bundle, drawn only for the
classes predicted above the threshold, at the input image's resolution.

Not tested: that the map lies on the finding. After the shared short training (`trained_cxr`, 64 x 64), the map's mass
inside a region around a phantom's finding was no larger than the region's share of the image, so no bound is set.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from medzoo.cxr import synthetic
from medzoo.handlers import GradCAMSaver
from medzoo.paths import bundle_names
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

CLASSIFIERS = sorted(
    name for name in bundle_names()
    if "medzoo.handlers.GradCAMSaver" in (Bundle(name).root / "configs" / "inference.json").read_text()
)


def _saver_config(name: str) -> dict:
    config = json.loads((Bundle(name).root / "configs" / "inference.json").read_text())
    return next(h for h in config["handlers"] if h["_target_"] == "medzoo.handlers.GradCAMSaver")


def finding_phantom(seed: int, size: int, finding: str = "Mass") -> tuple[np.ndarray, np.ndarray]:
    """A synthetic radiograph (size, size) uint8 showing only ``finding``, and the boolean mask of where it is.

    Drawn by the sample generator's own steps (:mod:`medzoo.cxr.synthetic`): the mask is where the finding changed the
    density map by more than half its largest change.
    """
    rng = np.random.default_rng(seed)
    patient = synthetic.new_patient(rng)
    scene = synthetic._anatomy(rng, size, patient, {finding})
    before = scene.dens.copy()
    synthetic._FINDINGS[finding](scene, rng, rng.uniform(0.8, 1.1))
    change = np.abs(scene.dens - before)
    return synthetic._finish(rng, scene, patient), change > 0.5 * change.max()


def _read_index(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_target_layer_gives_a_map_for_the_predicted_class(name):
    """With the bundle's own target layer and deterministic initial weights, the most probable class gets a map that is
    neither zero nor uniform, at the requested size. (For a class with no positive evidence anywhere, Grad-CAM's ReLU
    gives zero at any layer: the saver then writes no overlay and says so in gradcam.csv.)"""
    parser = Bundle(name).parser("inference.json", "quick.json")
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    saver = GradCAMSaver(network, _saver_config(name)["target_layer"], "unused", parser.get_parsed_content("labels"))
    size = parser.get_parsed_content("spatial_size")
    image = torch.as_tensor(finding_phantom(0, size[0])[0], dtype=torch.float32)[None] / 255.0
    image = image.expand(parser.get_parsed_content("in_channels"), -1, -1)
    with torch.no_grad():
        top = int(network(image[None])[0].argmax())
    heat = saver.heatmap(image, top, (96, 80))
    assert heat.shape == (96, 80) and heat.max() == pytest.approx(1.0, abs=0.05), heat.max()  # peak 1, blurred by upsampling
    assert heat.std() > 0.05, heat.std()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("gradcam_phantoms")
    masks = {}
    for seed in range(SEEDS):
        image, masks[f"mass_{seed}"] = finding_phantom(seed, PHANTOM_SIZE)
        Image.fromarray(image).save(folder / f"mass_{seed}.png")
    return folder, masks


SEEDS, PHANTOM_SIZE = 8, 128


@pytest.mark.slow
def test_overlays_only_for_predicted_classes_at_input_resolution(cxr_bundle, trained_cxr, phantoms, tmp_path):
    dirs, settings = trained_cxr
    folder, _ = phantoms
    run_configs(cxr_bundle, ["inference.json"], workflow_type="infer", spatial_size=settings["spatial_size"], num_workers=0,
                ckpt_dir=dirs["ckpt_dir"], output_dir=str(tmp_path), input=str(folder), gradcam=True)
    with open(tmp_path / "predictions.csv") as f:
        predictions = {row["file"]: row for row in csv.DictReader(f)}
    rows = _read_index(tmp_path / "gradcam" / "gradcam.csv")
    assert {row["file"] for row in rows} == set(predictions)
    for row in rows:
        probs = {k: float(v) for k, v in predictions[row["file"]].items() if k != "file"}
        if row["overlay"].endswith(".png"):
            assert probs[row["label"]] >= 0.5
            overlay = np.asarray(Image.open(tmp_path / "gradcam" / row["overlay"]))
            assert overlay.shape == (PHANTOM_SIZE, PHANTOM_SIZE, 3)  # the input's, not the network's 64 x 64
        else:
            assert row["overlay"] == "none: no class >= 0.5" and max(probs.values()) < 0.5
            assert probs[row["label"]] == max(probs.values())
    drawn = {(row["file"], row["label"]) for row in rows if row["overlay"].endswith(".png")}
    expected = {(f, k) for f, p in predictions.items() for k, v in p.items() if k != "file" and float(v) >= 0.5}
    assert drawn == expected and len(list((tmp_path / "gradcam").glob("*.png"))) == len(drawn)
