"""Grad-CAM overlays (`--gradcam True`): a map that is not degenerate for every classifier bundle, drawn only for the
classes predicted above the threshold, at the input image's resolution, and one that lies on the finding.

Localisation (DenseNet121 bundle): trained briefly with its own ``train.json`` at 128 px on phantoms where half of the
images show a Mass and nothing else, the bundle's Grad-CAM on held-out Mass phantoms puts on average at least twice the
Mass region's share of the image inside that region (chance: the share itself, under 3%). The other classifiers are
not trained here: the MobileNetV3 student distils from a trained DenseNet121 teacher, REMEDIS fine-tunes from a SimCLR
checkpoint, and the HybridMedNet backbones are several times heavier; each would multiply this test's training time.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from medzoo.cxr import synthetic
from medzoo.cxr.datasets import prepare_nih
from medzoo.gradcam import GradCAMSaver
from medzoo.paths import bundle_names
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

CLASSIFIERS = sorted(
    name
    for name in bundle_names()
    if "medzoo.gradcam.GradCAMSaver" in (Bundle(name).root / "configs" / "inference.json").read_text()
)


def _saver_config(name: str) -> dict:
    config = json.loads((Bundle(name).root / "configs" / "inference.json").read_text())
    return next(h for h in config["handlers"] if h["_target_"] == "medzoo.gradcam.GradCAMSaver")


def finding_phantom(seed: int, size: int, finding: str = "Mass") -> tuple[np.ndarray, np.ndarray]:
    """A synthetic radiograph (size, size) uint8 showing only ``finding``, and the boolean mask of where it is."""
    image, masks = synthetic.render_phantom(seed, size, {finding})
    return image, masks[finding]


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
    assert heat.shape == (96, 80) and heat.max() == pytest.approx(1.0, abs=0.05), (
        heat.max()
    )  # peak 1, blurred by upsampling
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
    run_configs(
        cxr_bundle,
        ["inference.json"],
        workflow_type="infer",
        spatial_size=settings["spatial_size"],
        num_workers=0,
        ckpt_dir=dirs["ckpt_dir"],
        output_dir=str(tmp_path),
        input=str(folder),
        gradcam=True,
    )
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


#: (height, width) of the phantoms the overlay test predicts: not square, not the network's input size
OVERLAY_INPUT = (120, 100)


def _predict_with_gradcam(name: str, folder, weights, output, threshold: float) -> tuple[dict, list[dict]]:
    """The bundle's inference.json (+ quick.json) on ``folder`` with Grad-CAM at ``threshold``: (probabilities by file
    and class, rows of gradcam.csv)."""
    run_configs(
        Bundle(name),
        ["inference.json", "quick.json"],
        workflow_type="infer",
        input=str(folder),
        ckpt_path=str(weights),
        output_dir=str(output),
        gradcam=True,
        gradcam_threshold=threshold,
    )
    with open(output / "predictions.csv") as f:
        probs = {row.pop("file"): {k: float(v) for k, v in row.items()} for row in csv.DictReader(f)}
    return probs, _read_index(output / "gradcam" / "gradcam.csv")


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_each_classifier_draws_overlays_only_when_predicted_at_input_resolution(name, tmp_path):
    """Every classifier bundle's own gradcam config, initial weights, on non-square phantoms: at threshold 1 nothing
    is predicted and no overlay is written (gradcam.csv says so for each input); at a threshold between the two
    highest per-image peaks, exactly the classes at or above it are drawn, each overlay at the input's (H, W)."""
    from medzoo.weights import save_weights

    folder = tmp_path / "inputs"
    folder.mkdir()
    for seed in range(3):
        image = finding_phantom(seed, max(OVERLAY_INPUT))[0][: OVERLAY_INPUT[0], : OVERLAY_INPUT[1]]
        Image.fromarray(image).save(folder / f"phantom_{seed}.png")
    torch.manual_seed(0)  # initial weights of the network as quick.json sizes it (Swin's windows follow the input)
    network = Bundle(name).parser("inference.json", "quick.json").get_parsed_content("network_def")
    weights = save_weights(network.state_dict(), tmp_path / "init.pt")

    probs, rows = _predict_with_gradcam(name, folder, weights, tmp_path / "none", threshold=1.0)
    assert not list((tmp_path / "none" / "gradcam").glob("*.png"))
    assert sorted(row["file"] for row in rows) == sorted(probs) and len(probs) == 3
    assert all(row["overlay"] == "none: no class >= 1" for row in rows), rows

    peaks = sorted({max(p.values()) for p in probs.values()})
    assert len(peaks) > 1, probs  # the phantoms differ, so do the networks' outputs
    threshold = (peaks[-1] + peaks[-2]) / 2
    probs, rows = _predict_with_gradcam(name, folder, weights, tmp_path / "some", threshold=threshold)
    expected = {(f, k) for f, p in probs.items() for k, v in p.items() if v >= threshold}
    drawn = {(row["file"], row["label"]) for row in rows if row["overlay"].endswith(".png")}
    assert drawn == expected and expected, (drawn, expected)
    undrawn = {row["file"] for row in rows if not row["overlay"].endswith(".png")}
    assert undrawn == {f for f, p in probs.items() if max(p.values()) < threshold} and undrawn
    for row in rows:
        if row["overlay"].endswith(".png"):
            overlay = np.asarray(Image.open(tmp_path / "some" / "gradcam" / row["overlay"]))
            assert overlay.shape == (*OVERLAY_INPUT, 3), (row, overlay.shape)
            assert overlay.std() > 0, row  # the map is drawn, not a blank image


def test_phantom_option_draws_only_the_chosen_finding(tmp_path):
    """``findings`` restricts the sample's labels; ``render_phantom`` gives the finding's region, a small part of the
    image inside the body."""
    root = synthetic.generate_nih_sample(
        tmp_path,
        num_patients=4,
        images_per_patient=4,
        image_size=64,
        findings=["Mass"],
        finding_probability=0.5,
        normal_probability=0.0,
    )
    with open(root / "Data_Entry_2017.csv") as f:
        labels = [line.split(",")[1] for line in f.readlines()[1:]]
    assert set(labels) == {"Mass", "No Finding"}, labels
    image, masks = synthetic.render_phantom(3, 128, {"Mass", "Nodule", "Cardiomegaly"})
    assert image.shape == (128, 128) and set(masks) == {"Mass", "Nodule"}
    assert 0.005 < masks["Mass"].mean() < 0.06 and not masks["Mass"][:, :8].any()
    with pytest.raises(ValueError, match="unknown findings"):
        synthetic.render_phantom(0, 64, {"Tumour"})


#: Localisation run: training sample (patients, images each, side), training settings, held-out phantoms.
LOCALISATION_SAMPLE = {"num_patients": 24, "images_per_patient": 4, "image_size": 128}
LOCALISATION_TRAINING = {
    "spatial_size": [128, 128],
    "max_epochs": 4,
    "val_interval": 4,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "num_workers": 0,
    "progress_bar": False,
}
HELD_OUT_SEEDS = range(1000, 1012)
#: Lower bound of (mean heatmap mass inside the Mass region) / (mean share of the image the region covers).
LOCALISATION_RATIO = 2.0


def localisation_ratio(bundle: Bundle, tmp_path, **training) -> tuple[float, list[float], list[float]]:
    """Train ``bundle`` with its own ``train.json`` on Mass phantoms (``LOCALISATION_SAMPLE``,
    ``LOCALISATION_TRAINING`` updated by ``training``), then run its Grad-CAM (own target layer, weights,
    preprocessing) for Mass on held-out Mass phantoms. Returns (mean heatmap mass inside the region / mean region
    share of the image, per-phantom inside fractions, per-phantom region shares)."""
    dirs = {
        name: str(tmp_path / folder)
        for name, folder in (("dataset_dir", "data"), ("ckpt_dir", "models"), ("output_dir", "eval"))
    }
    synthetic.generate_nih_sample(
        dirs["dataset_dir"], **LOCALISATION_SAMPLE, findings=["Mass"], finding_probability=0.5, normal_probability=0.0
    )
    prepare_nih(dirs["dataset_dir"], tmp_path / "data" / "datalist.json")
    settings = {**LOCALISATION_TRAINING, **training}
    run_configs(bundle, ["train.json"], workflow_type="train", **settings, **dirs)

    size = LOCALISATION_SAMPLE["image_size"]
    held_out, masks = tmp_path / "held_out", {}
    held_out.mkdir()
    for seed in HELD_OUT_SEEDS:
        image, masks[f"mass_{seed}.png"] = finding_phantom(seed, size)
        Image.fromarray(image).save(held_out / f"mass_{seed}.png")
    workflow = run_configs(
        bundle,
        ["inference.json"],
        workflow_type="infer",
        num_workers=0,
        input=str(held_out),
        spatial_size=settings["spatial_size"],
        ckpt_dir=dirs["ckpt_dir"],
        output_dir=str(tmp_path / "out"),
        gradcam=True,
    )
    saver = next(h for h in workflow.parser.get_parsed_content("handlers") if isinstance(h, GradCAMSaver))
    preprocessing = workflow.parser.get_parsed_content("preprocessing")
    mass = saver.labels.index("Mass")
    inside, share = [], []
    for name, mask in sorted(masks.items()):
        heat = saver.heatmap(preprocessing({"image": str(held_out / name)})["image"], mass, mask.shape)
        inside.append(float(heat[mask].sum() / heat.sum()) if heat.any() else 0.0)
        share.append(float(mask.mean()))
    return float(np.mean(inside) / np.mean(share)), inside, share


@pytest.mark.slow
def test_heatmap_mass_lies_on_the_finding(cxr_bundle, tmp_path):
    """The DenseNet121 bundle's Grad-CAM after a short training on Mass phantoms: the mean fraction of the heatmap's
    mass inside the Mass region is at least ``LOCALISATION_RATIO`` times the mean fraction of the image the region
    covers (what a map unrelated to the finding would give)."""
    ratio, inside, share = localisation_ratio(cxr_bundle, tmp_path)
    print(
        f"heatmap mass inside the Mass region: mean {np.mean(inside):.3f}, region share {np.mean(share):.3f}, "
        f"ratio {ratio:.2f}; per phantom {np.round(inside, 3).tolist()}"
    )
    assert ratio >= LOCALISATION_RATIO, (ratio, inside, share)
