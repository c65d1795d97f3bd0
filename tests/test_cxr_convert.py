"""Tests of medzoo.cxr.convert on checkpoints built here in the exact public layouts of CheXNet and torchxrayvision.

The source models get random weights with non-trivial batch-norm affine parameters and running statistics, so a
key mapped to the wrong place changes the predictions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from monai.networks.nets import DenseNet121
from PIL import Image
from torch import nn
from torchvision import transforms

from medzoo.cxr.convert import (
    chexnet_to_monai,
    load_chexnet_checkpoint,
    load_xrv_checkpoint,
    xrv_to_monai,
)
from medzoo.cxr.labels import CHEXNET_LABELS, XRV_LABELS
from medzoo.cxr.transforms import INPUT_PRESETS, ChestXRayIntensity

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOLERANCE = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Run this module's forwards on one intra-op thread: on a busy 2-core machine, OpenMP threads that wait for
    each other make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gray_images(seed: int, n: int = 2, size: int = 224) -> np.ndarray:
    """Random 8-bit grayscale images, uint8 [N, size, size]."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


def _chexnet_input(images: np.ndarray) -> torch.Tensor:
    """CheXNet's own preprocessing: RGB PIL image, ToTensor, ImageNet Normalize. Returns float [N, 3, H, W]."""
    preprocess = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return torch.stack([preprocess(Image.fromarray(img).convert("RGB")) for img in images])


def _xrv_input(xrv, images: np.ndarray) -> torch.Tensor:
    """torchxrayvision's own preprocessing, ``xrv.datasets.normalize(img, 255)``. Returns float [N, 1, H, W]."""
    return torch.from_numpy(np.stack([xrv.datasets.normalize(img, 255) for img in images]))[:, None]


def _randomise(model: nn.Module, calibration_input: torch.Tensor) -> None:
    """Give every BatchNorm random affine parameters and running statistics of ``calibration_input``."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.empty_like(module.weight).uniform_(0.5, 1.5, generator=generator))
                module.bias.copy_(torch.empty_like(module.bias).uniform_(-0.2, 0.2, generator=generator))
                module.momentum = None  # cumulative average: running stats become the batch statistics
            elif isinstance(module, nn.Linear):
                module.bias.copy_(torch.empty_like(module.bias).uniform_(-0.5, 0.5, generator=generator))
        model.train()
        model(calibration_input)
    model.eval()


def _assert_informative(probabilities: torch.Tensor) -> None:
    """The source predictions must vary and not saturate, or the comparison proves nothing."""
    assert probabilities.std() > 0.02
    assert 1e-3 < probabilities.min() and probabilities.max() < 1 - 1e-3


class _CheXNetModel(nn.Module):
    """arnoweng/CheXNet's model: torchvision DenseNet-121 as ``.densenet121`` with a Linear + Sigmoid head."""

    def __init__(self) -> None:
        super().__init__()
        self.densenet121 = torchvision.models.densenet121(weights=None)
        self.densenet121.classifier = nn.Sequential(nn.Linear(1024, len(CHEXNET_LABELS)), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, H, W] ImageNet-normalised RGB -> probabilities [N, 14]."""
        return self.densenet121(x)


def _public_chexnet_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The layout of CheXNet's ``model.pth.tar``: ``module.`` prefix of nn.DataParallel, old torchvision dense-layer
    names (``norm.1``, ``conv.1``, ``norm.2``, ``conv.2``), no ``num_batches_tracked`` (saved before PyTorch 0.4.1)."""
    state_dict = nn.DataParallel(model).state_dict()
    return {
        re.sub(r"(\.denselayer\d+\.)(norm|conv)([12])\.", r"\1\2.\3.", key): value
        for key, value in state_dict.items()
        if not key.endswith("num_batches_tracked")
    }


@pytest.fixture(scope="module")
def chexnet(tmp_path_factory) -> tuple[nn.Module, dict[str, torch.Tensor], Path]:
    """CheXNet source model, its public-layout state dict, and the checkpoint file holding it."""
    torch.manual_seed(0)
    model = _CheXNetModel()
    _randomise(model, _chexnet_input(_gray_images(seed=100, n=4, size=64)))
    state_dict = _public_chexnet_state_dict(model)
    assert "module.densenet121.features.denseblock1.denselayer1.norm.1.weight" in state_dict
    assert state_dict["module.densenet121.classifier.0.weight"].shape == (14, 1024)
    path = tmp_path_factory.mktemp("chexnet") / "model.pth.tar"
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    checkpoint = {"epoch": 7, "best_loss": torch.tensor(0.1534), "state_dict": state_dict}
    torch.save({**checkpoint, "optimizer": optimizer.state_dict()}, path)
    return model, state_dict, path


@pytest.fixture(scope="module")
def xrv_source(tmp_path_factory):
    """torchxrayvision module, its DenseNet(weights=None) with random weights, and the saved state dict file."""
    xrv = pytest.importorskip("torchxrayvision")
    torch.manual_seed(1)
    model = xrv.models.DenseNet(weights=None)
    _randomise(model, _xrv_input(xrv, _gray_images(seed=101, n=4, size=64)))
    path = tmp_path_factory.mktemp("xrv") / "xrv_densenet121.pt"
    torch.save(model.state_dict(), path)
    return xrv, model, path


def test_chexnet_predictions_match(chexnet):
    model, _, path = chexnet
    x = _chexnet_input(_gray_images(seed=1))
    net = DenseNet121(spatial_dims=2, in_channels=INPUT_PRESETS["chexnet"]["in_channels"], out_channels=14)
    net.load_state_dict(load_chexnet_checkpoint(path))
    net.eval()
    with torch.no_grad():
        expected = model(x)
        actual = torch.sigmoid(net(x))
    _assert_informative(expected)
    torch.testing.assert_close(actual, expected, rtol=0, atol=TOLERANCE)


def test_chexnet_accepts_unprefixed_new_names(chexnet):
    _, state_dict, _ = chexnet
    reference = chexnet_to_monai(state_dict)
    renamed = {
        re.sub(r"(norm|conv)\.([12])\.", r"\1\2.", key.removeprefix("module.densenet121.")): value
        for key, value in state_dict.items()
    }
    converted = chexnet_to_monai(renamed)
    assert list(converted) == list(reference)
    assert all(torch.equal(converted[k], reference[k]) for k in reference)


def _save_modified(path: Path, state_dict: dict[str, torch.Tensor], **changes: torch.Tensor | None) -> None:
    """Save ``{"state_dict": state_dict}`` with ``changes`` applied (``None`` removes the key)."""
    modified = dict(state_dict)
    for key, value in changes.items():
        if value is None:
            del modified[key]
        else:
            modified[key] = value
    torch.save({"epoch": 1, "state_dict": modified}, path)


_CLASSIFIER = "module.densenet121.classifier.0.weight"
_EXTRA = "module.densenet121.features.denseblock5.denselayer1.norm.1.weight"


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"module.densenet121.features.denseblock2.denselayer3.conv.2.weight": None},
            r"missing keys \(MONAI names\) \(1\):\s+features\.denseblock2\.denselayer3\.layers\.conv2\.weight\Z",
        ),
        ({_CLASSIFIER: torch.zeros(15, 1024)}, rf"wrong shapes \(1\):\s+{re.escape(_CLASSIFIER)}: \(15, 1024\), expected \(14, 1024\)\Z"),
        ({_EXTRA: torch.ones(8)}, rf"unexpected keys \(1\):\s+{re.escape(_EXTRA)}\Z"),
    ],
    ids=["missing", "wrong-shape", "unexpected"],
)
def test_bad_key_is_named(chexnet, tmp_path, change, expected):
    _, state_dict, _ = chexnet
    path = tmp_path / "bad.pth.tar"
    _save_modified(path, state_dict, **change)
    with pytest.raises(ValueError, match=expected):
        load_chexnet_checkpoint(path)


_UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Payload:
    """An object whose unpickling would run ``_record_unpickling``."""

    def __reduce__(self):
        return _record_unpickling, ("code ran",)


def test_pickled_object_is_refused(chexnet, tmp_path):
    _, state_dict, _ = chexnet
    path = tmp_path / "unsafe.pth.tar"
    torch.save({"state_dict": state_dict, "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="not a safe checkpoint"):
        load_chexnet_checkpoint(path)
    assert _UNPICKLED == []


def test_chexnet_preset_reproduces_chexnet_preprocessing():
    images = _gray_images(seed=2, n=1)
    ours = ChestXRayIntensity("chexnet")(torch.from_numpy(images[0][None].astype(np.float32)))
    np.testing.assert_allclose(ours.numpy(), _chexnet_input(images)[0].numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(INPUT_PRESETS["chexnet"]["value_range"], [-0.485 / 0.229, 0.594 / 0.225])
    assert json.loads(json.dumps(INPUT_PRESETS)) == INPUT_PRESETS


def test_xrv_source_behaviour(xrv_source):
    """What xrv.models.DenseNet(weights=None) really is: 18 raw logits in XRV_LABELS order, no op_threshs."""
    _, model, _ = xrv_source
    assert tuple(model.targets) == XRV_LABELS
    assert model.classifier.out_features == 18
    assert not model.apply_sigmoid and model.op_threshs is None
    assert "op_threshs" not in model.state_dict()
    assert model.features.conv0.weight.shape == (64, 1, 7, 7)


def test_xrv_predictions_match(xrv_source):
    xrv, model, path = xrv_source
    x = _xrv_input(xrv, _gray_images(seed=3))
    rows = [model.targets.index(label) for label in CHEXNET_LABELS]
    net = DenseNet121(spatial_dims=2, in_channels=INPUT_PRESETS["xrv"]["in_channels"], out_channels=14)
    net.load_state_dict(load_xrv_checkpoint(path))
    net.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(x))[:, rows]
        actual = torch.sigmoid(net(x))
    _assert_informative(expected)
    torch.testing.assert_close(actual, expected, rtol=0, atol=TOLERANCE)


def test_xrv_nested_state_dict(xrv_source, tmp_path):
    _, model, path = xrv_source
    nested = tmp_path / "nested.pt"
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, nested)
    direct, from_nested = load_xrv_checkpoint(path), load_xrv_checkpoint(nested)
    assert all(torch.equal(direct[k], from_nested[k]) for k in direct)


def test_xrv_labels_selected_by_name(xrv_source):
    _, model, _ = xrv_source
    state_dict = model.state_dict()
    converted = xrv_to_monai(state_dict, labels=("Hernia", "Effusion"))
    assert torch.equal(converted["class_layers.out.weight"], state_dict["classifier.weight"][[13, 7]])
    assert torch.equal(converted["class_layers.out.bias"], state_dict["classifier.bias"][[13, 7]])
    untrained = [label if label != "Infiltration" else "" for label in XRV_LABELS]  # as xrv's CheXpert weights
    with pytest.raises(ValueError, match="do not predict \\['Infiltration'\\]"):
        xrv_to_monai(state_dict, source_labels=untrained)


def test_xrv_op_threshs_need_consent(xrv_source):
    _, model, _ = xrv_source
    state_dict = {**model.state_dict(), "op_threshs": torch.rand(18)}
    with pytest.raises(ValueError, match="op_threshs"):
        xrv_to_monai(state_dict)
    dropped, plain = xrv_to_monai(state_dict, drop_op_threshs=True), xrv_to_monai(model.state_dict())
    assert all(torch.equal(dropped[k], plain[k]) for k in plain)


def test_xrv_pickled_model_is_refused_with_hint(xrv_source, tmp_path):
    _, model, _ = xrv_source
    path = tmp_path / "whole_model.pt"
    torch.save(model, path)
    with pytest.raises(ValueError, match=r"not a safe checkpoint(.|\n)*export its state dict"):
        load_xrv_checkpoint(path)


def test_xrv_preset_reproduces_xrv_preprocessing(xrv_source):
    xrv, _, _ = xrv_source
    images = _gray_images(seed=4, n=1)
    ours = ChestXRayIntensity("xrv")(torch.from_numpy(images[0][None].astype(np.float32)))
    np.testing.assert_allclose(ours.numpy(), _xrv_input(xrv, images)[0].numpy(), rtol=1e-6, atol=1e-3)
    assert INPUT_PRESETS["xrv"]["value_range"] == [-1024.0, 1024.0]

def _write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"img_{i}.png" for i in range(len(images))]
    for path, img in zip(paths, images):
        Image.fromarray(img).save(path)
    return paths


@pytest.mark.parametrize("source", ["chexnet", "xrv"])
def test_converted_bundle_predicts_like_the_source(source, chexnet, request, tmp_path, cxr_bundle):
    """Convert into a bundle, run its inference.json on PNG files, and compare the CSV with the source model."""
    import csv

    from medzoo.cxr.bundle_convert import convert_to_bundle
    from medzoo.verify import check_metadata
    from medzoo.workflows import run_configs
    from medzoo.zoo import Bundle, index_entry

    images = _gray_images(seed=11, n=3)
    _write_pngs(tmp_path / "images", images)
    if source == "chexnet":
        model, _, checkpoint = chexnet
        expected_input, rows = _chexnet_input(images), list(range(14))
    else:
        xrv, model, checkpoint = request.getfixturevalue("xrv_source")
        expected_input, rows = _xrv_input(xrv, images), [model.targets.index(label) for label in CHEXNET_LABELS]
    with torch.no_grad():
        expected = model.eval()(expected_input)
        expected = (expected if source == "chexnet" else torch.sigmoid(expected))[:, rows]

    converted = Bundle(convert_to_bundle(source, checkpoint, cxr_bundle.root, tmp_path / f"cxr14_{source}"))
    check_metadata(converted)
    entry = index_entry(converted)
    assert entry["weights"]["status"] == "converted" and entry["inputs"]["image"]["num_channels"] == INPUT_PRESETS[source]["in_channels"]
    run_configs(converted, ["inference.json"], workflow_type="infer", input=str(tmp_path / "images"),
                output_dir=str(tmp_path / "eval"), num_workers=0)
    with open(tmp_path / "eval" / "predictions.csv") as f:
        table = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in table] == ["img_0.png", "img_1.png", "img_2.png"]
    actual = torch.tensor([[float(r[label]) for label in CHEXNET_LABELS] for r in table])
    torch.testing.assert_close(actual, expected.float(), rtol=0, atol=2e-5)


def test_convert_refuses_existing_output_and_leaves_nothing_on_failure(chexnet, tmp_path, cxr_bundle):
    from medzoo.cxr.bundle_convert import convert_to_bundle

    _, state_dict, _ = chexnet
    broken = tmp_path / "broken.pt"
    torch.save({"state_dict": {k: v for k, v in state_dict.items() if "norm5" not in k}}, broken)
    with pytest.raises(ValueError, match="norm5"):
        convert_to_bundle("chexnet", broken, cxr_bundle.root, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt"]
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        convert_to_bundle("chexnet", broken, cxr_bundle.root, tmp_path / "out")
