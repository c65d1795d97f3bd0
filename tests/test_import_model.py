"""``medzoo import-model``: plain PyTorch model folders become verified bundles whose outputs equal the source model's."""

import csv
import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from monai.networks import nets
from PIL import Image

from medzoo.import_model import import_model
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

# (config.json, the source model built independently of medzoo)
CASES = {
    "densenet121_timm": (
        {"architecture": "DenseNet121", "input_shape": [3, 32, 32]},
        lambda: timm.create_model("densenet121", num_classes=3),
    ),
    "resnet50_timm_gray": (
        {
            "architecture": "ResNet50",
            "input_shape": [1, 32, 32],
            "preprocessing": {"resize": [40, 40], "scale": 255, "normalize": {"mean": [0.45], "std": [0.2]}},
        },
        lambda: timm.create_model("resnet50", num_classes=3, in_chans=1),
    ),
    "efficientnet_b0_timm_data_parallel_keys": (
        {"architecture": "EfficientNet-B0", "input_shape": [3, 32, 32], "state_dict_prefix": "module."},
        lambda: timm.create_model("efficientnet_b0", num_classes=3),
    ),
    "efficientnet_b4_monai": (
        {"architecture": "EfficientNet-B4", "library": "monai", "input_shape": [3, 32, 32]},
        lambda: nets.EfficientNetBN("efficientnet-b4", pretrained=False, spatial_dims=2, in_channels=3, num_classes=3),
    ),
    "vit_timm_gray_sigmoid": (
        {
            "architecture": "vit_tiny_patch16_224",
            "input_shape": [1, 32, 32],
            "activation": "sigmoid",
            "model_kwargs": {"depth": 2},
            "preprocessing": {"resize": [32, 32], "normalize": {"mean": [0.5], "std": [0.25]}},
        },
        lambda: timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=[32, 32], in_chans=1, depth=2),
    ),
}


def _model_folder(folder, config, model, prefix=""):
    folder.mkdir()
    full = {
        "num_classes": 3,
        "class_names": ["benign", "malignant", "normal"],
        "preprocessing": {"resize": config["input_shape"][1:], "normalize": IMAGENET},
        **config,
    }
    full.pop("state_dict_prefix", None)
    (folder / "config.json").write_text(json.dumps(full))
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, folder / "model.pth")
    (folder / "metadata.json").write_text(json.dumps({"name": "Test lesion classifier", "modality": "dermoscopy"}))
    return full


def _images(folder, channels):
    folder.mkdir()
    rng = np.random.default_rng(0)
    shape = (48, 40, 3) if channels == 3 else (48, 40)  # not the input size: the bundle must resize
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img{i}.png")
    return sorted(folder.glob("*.png"))


def _reference(model, files, config):
    """The source model on the declared preprocessing, written with plain torch."""
    channels = config["input_shape"][0]
    norm = config["preprocessing"]["normalize"]
    outputs = []
    for f in files:
        array = np.asarray(Image.open(f).convert("RGB" if channels == 3 else "L"), dtype=np.float32)
        x = torch.from_numpy(array).reshape(array.shape[0], array.shape[1], channels).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=config["preprocessing"]["resize"], mode="bilinear", align_corners=False) / 255.0
        x = (x - torch.tensor(norm["mean"])[:, None, None]) / torch.tensor(norm["std"])[:, None, None]
        with torch.no_grad():
            logits = model.eval()(x)
        probs = torch.sigmoid(logits) if config.get("activation") == "sigmoid" else torch.softmax(logits, dim=1)
        outputs.append(probs[0].numpy())
    return np.stack(outputs)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_imported_bundle_reproduces_the_source_model(case, tmp_path):
    config, build = CASES[case]
    torch.manual_seed(0)
    model = build()
    full = _model_folder(tmp_path / "upload", config, model, prefix=config.get("state_dict_prefix", ""))
    # TorchScript export of an imported bundle is checked on the cheapest case (scripting a DenseNet costs a minute on
    # a loaded 2-core machine); the other checks run for all
    torchscript = case == "vit_timm_gray_sigmoid"
    bundle_dir = import_model(
        tmp_path / "upload", tmp_path / "bundles" / f"{case}_classification", torchscript=torchscript
    )
    bundle = Bundle(bundle_dir)
    assert bundle.metadata["weights"]["status"] == "converted"
    assert bundle.metadata["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] == "malignant"

    files = _images(tmp_path / "images", config["input_shape"][0])
    run_configs(bundle, ["inference.json"], input=str(tmp_path / "images"), output_dir=str(tmp_path / "eval"))
    with open(tmp_path / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [str(p) for p in files]
    predicted = np.array([[float(r[c]) for c in full["class_names"]] for r in rows])
    np.testing.assert_allclose(predicted, _reference(model, files, full), atol=2e-5)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"architecture": "AlexNet"}, "unknown architecture 'AlexNet'; known: DenseNet121, ResNet50"),
        (
            {"architecture": "ViT", "library": "monai"},
            r"library 'monai' is not supported for ViT; use one of \['timm'\]",
        ),
    ],
)
def test_unknown_architecture_is_a_clear_error(tmp_path, config, message):
    _model_folder(tmp_path / "upload", {"input_shape": [3, 32, 32], **config}, torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match=message):
        import_model(tmp_path / "upload", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("drop", r"1 missing \(e.g. \['classifier.bias'\]\)"),
        ("extra", r"1 unexpected \(e.g. \['extra.weight'\]\)"),
        ("classes", r"of another shape \(e.g. \['classifier.weight: \(4, 1024\) vs \(3, 1024\)'"),
    ],
)
def test_a_state_dict_that_does_not_fit_is_a_clear_error(tmp_path, damage, message):
    torch.manual_seed(0)
    model = timm.create_model("densenet121", num_classes=4 if damage == "classes" else 3)
    _model_folder(tmp_path / "upload", {"architecture": "DenseNet121", "input_shape": [3, 32, 32]}, model)
    state = torch.load(tmp_path / "upload" / "model.pth", weights_only=True)
    if damage == "drop":
        del state["classifier.bias"]
    elif damage == "extra":
        state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "upload" / "model.pth")
    with pytest.raises(ValueError, match=message):
        import_model(tmp_path / "upload", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inconsistent_config_is_rejected(tmp_path):
    _model_folder(
        tmp_path / "upload",
        {"architecture": "DenseNet121", "input_shape": [3, 32, 32], "num_classes": 5},
        torch.nn.Linear(1, 1),
    )
    with pytest.raises(ValueError, match="5 classes but 3 class_names"):
        import_model(tmp_path / "upload", tmp_path / "out")


def test_cli_import_model_reports_the_problem(tmp_path):
    import fire

    from medzoo.cli_commands import ZooCLI

    _model_folder(tmp_path / "upload", {"architecture": "AlexNet", "input_shape": [3, 32, 32]}, torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="unknown architecture 'AlexNet'"):
        fire.Fire(
            ZooCLI,
            command=["import-model", str(tmp_path / "upload"), "--output_dir", str(tmp_path / "b")],
            name="medzoo",
        )


def test_a_bundle_name_without_its_task_is_refused(tmp_path):
    config, build = CASES["vit_timm_gray_sigmoid"]
    _model_folder(tmp_path / "upload", config, build())
    with pytest.raises(ValueError, match="MONAI Label would serve this classification bundle as 'segmentation'"):
        import_model(tmp_path / "upload", tmp_path / "bundles" / "my_vit", torchscript=False)
    assert not (tmp_path / "bundles" / "my_vit").exists()
