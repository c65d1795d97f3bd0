"""Tests of medzoo.cxr.convert and ``medzoo convert`` on checkpoints built here in the exact public layouts of CheXNet
and torchxrayvision.

The source models get random weights with non-trivial batch-norm affine parameters and running statistics, so a
key mapped to the wrong place changes the predictions, and a classifier scaled so that logits vary by a few units
between images (realistic, not saturated), so a preprocessing difference shows in the probabilities. The end-to-end
tests compare a converted bundle's predictions.csv with each source's own pipeline run on the same PNG files.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from monai.networks.nets import DenseNet121
from PIL import Image
from torch import nn
from torchvision import transforms

import medzoo
from medzoo.cxr.convert import (
    ConversionError,
    chexnet_to_monai,
    load_chexnet_checkpoint,
    load_xrv_checkpoint,
    xrv_op_threshs,
    xrv_to_monai,
)
from medzoo.cxr.labels import CHEXNET_LABELS, XRV_LABELS
from medzoo.cxr.transforms import INPUT_PRESETS, ChestXRayIntensity
from medzoo.errors import USER_ERROR_STATUS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOLERANCE = 1e-5
PARITY = 1e-3  # largest accepted probability difference end to end, from files
LOGIT_STD = 3.0  # spread of the source models' logits between images


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


def _structured(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A radiograph-like float image in [0, 1]: a few Gaussian blobs of random size and place, a gradient, fine noise."""
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    image = 0.25 + 0.3 * rows
    for _ in range(6):
        centre, radius = (
            rng.random(2) * (height / max(height, width), width / max(height, width)),
            0.03 + 0.2 * rng.random(),
        )
        image += rng.uniform(-0.4, 0.4) * np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * radius**2))
    return np.clip(image + 0.03 * rng.standard_normal((height, width)), 0.0, 1.0)


def _structured_images(seed: int, n: int, size: int = 224) -> np.ndarray:
    """[N, size, size] uint8 images of :func:`_structured`, drawn at 512 x 512 and shrunk as the files of the end-to-end
    tests are by the sources' pipelines, so that the models are calibrated on what they will see."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            np.asarray(
                Image.fromarray((_structured(rng, 512, 512) * 255).round().astype(np.uint8)).resize(
                    (size, size), Image.BILINEAR
                )
            )
            for _ in range(n)
        ]
    )


def _chexnet_input(images: np.ndarray) -> torch.Tensor:
    """CheXNet's own preprocessing: RGB PIL image, ToTensor, ImageNet Normalize. Returns float [N, 3, H, W]."""
    preprocess = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return torch.stack([preprocess(Image.fromarray(img).convert("RGB")) for img in images])


def _xrv_input(xrv, images: np.ndarray) -> torch.Tensor:
    """torchxrayvision's own preprocessing, ``xrv.datasets.normalize(img, 255)``. Returns float [N, 1, H, W]."""
    return torch.from_numpy(np.stack([xrv.datasets.normalize(img, 255) for img in images]))[:, None]


def _randomise(model: nn.Module, calibration_input: torch.Tensor, scaling_input: torch.Tensor) -> None:
    """Give every BatchNorm random affine parameters and running statistics of ``calibration_input``, and set the
    final linear layer so that on other images, ``scaling_input``, each logit's spread between images averages
    :data:`LOGIT_STD` around a mean drawn from [-1, 1] per label."""
    generator = torch.Generator().manual_seed(0)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.empty_like(module.weight).uniform_(0.5, 1.5, generator=generator))
                module.bias.copy_(torch.empty_like(module.bias).uniform_(-0.2, 0.2, generator=generator))
                module.momentum = None  # cumulative average: running stats become the batch statistics
        model.train()
        model(calibration_input)
        model.eval()
        features = []
        hook = linear.register_forward_hook(lambda module, args, output: features.append(args[0]))
        model(scaling_input)
        hook.remove()
        logits = features[0] @ linear.weight.T
        scale = LOGIT_STD / logits.std(0).mean()
        linear.weight.mul_(scale)
        target = torch.empty_like(linear.bias).uniform_(-1.0, 1.0, generator=generator)
        linear.bias.copy_(target - logits.mean(0) * scale)


def _assert_informative(probabilities: torch.Tensor) -> None:
    """The source predictions must vary and not saturate, or the comparison proves nothing."""
    assert probabilities.std() > 0.02
    assert ((probabilities > 0.02) & (probabilities < 0.98)).float().mean() > 0.6, probabilities


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
    _randomise(
        model, _chexnet_input(_structured_images(seed=100, n=16)), _chexnet_input(_structured_images(seed=102, n=8))
    )
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
    _randomise(
        model, _xrv_input(xrv, _structured_images(seed=101, n=16)), _xrv_input(xrv, _structured_images(seed=103, n=8))
    )
    path = tmp_path_factory.mktemp("xrv") / "xrv_densenet121.pt"
    torch.save(model.state_dict(), path)
    return xrv, model, path


#: Operating points of the calibrated xrv model: NaN for a label it has none for, as in torchxrayvision's tables
#: (``Hernia`` is one of the bundle's 14 labels, ``Fracture`` is not).
_NO_OPERATING_POINT = ("Hernia", "Fracture")


@pytest.fixture(scope="module")
def xrv_calibrated(xrv_source, tmp_path_factory):
    """The xrv model with ``op_threshs`` set as ``xrv.models.DenseNet(weights=...)`` sets it, and its state dict file
    (holding ``op_threshs``, as a pretrained model's ``state_dict()`` does)."""
    xrv, plain, _ = xrv_source
    model = xrv.models.DenseNet(weights=None)
    model.load_state_dict(plain.state_dict())
    thresholds = torch.empty(18).uniform_(0.15, 0.85, generator=torch.Generator().manual_seed(2))
    for label in _NO_OPERATING_POINT:
        thresholds[model.targets.index(label)] = float("nan")
    model.op_threshs = thresholds
    model.eval()
    state_dict = model.state_dict()
    assert torch.equal(state_dict["op_threshs"].isnan(), thresholds.isnan())
    path = tmp_path_factory.mktemp("xrv_calibrated") / "xrv_densenet121_all.pt"
    torch.save(state_dict, path)
    return model, path


def test_chexnet_predictions_match(chexnet):
    model, _, path = chexnet
    x = _chexnet_input(_structured_images(seed=1, n=3))
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
            r"missing keys \(MONAI names\) \(1\): features\.denseblock2\.denselayer3\.layers\.conv2\.weight \(",
        ),
        (
            {_CLASSIFIER: torch.zeros(15, 1024)},
            rf"wrong shapes \(1\): {re.escape(_CLASSIFIER)}: \(15, 1024\), expected \(14, 1024\) \(",
        ),
        ({_EXTRA: torch.ones(8)}, rf"unexpected keys \(1\): {re.escape(_EXTRA)} \("),
    ],
    ids=["missing", "wrong-shape", "unexpected"],
)
def test_bad_key_is_named(chexnet, tmp_path, change, expected):
    _, state_dict, _ = chexnet
    path = tmp_path / "bad.pth.tar"
    _save_modified(path, state_dict, **change)
    with pytest.raises(ConversionError, match=expected) as raised:
        load_chexnet_checkpoint(path)
    assert "\n" not in str(raised.value)


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
    with pytest.raises(ConversionError, match="not a safe checkpoint"):
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
    x = _xrv_input(xrv, _structured_images(seed=3, n=3))
    rows = [model.targets.index(label) for label in CHEXNET_LABELS]
    net = DenseNet121(spatial_dims=2, in_channels=INPUT_PRESETS["xrv"]["in_channels"], out_channels=14)
    state_dict, op_threshs = load_xrv_checkpoint(path)
    assert op_threshs is None
    net.load_state_dict(state_dict)
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
    (direct, _), (from_nested, _) = load_xrv_checkpoint(path), load_xrv_checkpoint(nested)
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


def test_xrv_op_threshs_are_read_per_label(xrv_source, xrv_calibrated):
    _, plain, _ = xrv_source
    model, _ = xrv_calibrated
    state_dict = model.state_dict()
    converted, unconverted = xrv_to_monai(state_dict), xrv_to_monai(plain.state_dict())
    assert all(torch.equal(converted[k], unconverted[k]) for k in unconverted)  # op_threshs is no network weight
    thresholds = xrv_op_threshs(state_dict)
    for label, value in zip(CHEXNET_LABELS, thresholds):
        expected = model.op_threshs[model.targets.index(label)]
        assert value is None if label in _NO_OPERATING_POINT else value == pytest.approx(float(expected))
    assert xrv_op_threshs(plain.state_dict()) is None
    with pytest.raises(ConversionError, match="op_threshs has shape \\(5,\\)"):
        xrv_op_threshs({**state_dict, "op_threshs": torch.rand(5)})


def test_op_norm_is_torchxrayvisions(xrv_source):
    from medzoo.cxr.source_preprocess import OperatingPointNormd

    xrv, _, _ = xrv_source
    probabilities = torch.rand(6, 5, generator=torch.Generator().manual_seed(3))
    thresholds = torch.tensor([0.2, 0.5, float("nan"), 0.8, 0.35])
    probabilities[0, 1] = 0.5  # exactly at an operating point
    expected = xrv.models.op_norm(probabilities, thresholds)
    ours = OperatingPointNormd("pred", [0.2, 0.5, None, 0.8, 0.35])
    actual = torch.stack([ours({"pred": row})["pred"] for row in probabilities])
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-7)


def test_xrv_pickled_model_is_refused_with_hint(xrv_source, tmp_path):
    _, model, _ = xrv_source
    path = tmp_path / "whole_model.pt"
    torch.save(model, path)
    with pytest.raises(ConversionError, match=r"not a safe checkpoint.*export its state dict") as raised:
        load_xrv_checkpoint(path)
    assert "\n" not in str(raised.value)


def test_xrv_preset_reproduces_xrv_preprocessing(xrv_source):
    xrv, _, _ = xrv_source
    images = _gray_images(seed=4, n=1)
    ours = ChestXRayIntensity("xrv")(torch.from_numpy(images[0][None].astype(np.float32)))
    np.testing.assert_allclose(ours.numpy(), _xrv_input(xrv, images)[0].numpy(), rtol=1e-6, atol=1e-3)
    assert INPUT_PRESETS["xrv"]["value_range"] == [-1024.0, 1024.0]


def test_convert_refuses_existing_output_and_leaves_nothing_on_failure(chexnet, tmp_path, cxr_bundle):
    from medzoo.cxr.bundle_convert import convert_to_bundle

    _, state_dict, _ = chexnet
    broken = tmp_path / "broken.pt"
    torch.save({"state_dict": {k: v for k, v in state_dict.items() if "norm5" not in k}}, broken)
    with pytest.raises(ConversionError, match="norm5"):
        convert_to_bundle("chexnet", broken, cxr_bundle.root, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt"]
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        convert_to_bundle("chexnet", broken, cxr_bundle.root, tmp_path / "out")


# ------------------------------------------------------------------------------------ end to end, from files


def _env() -> dict:
    """Environment of a subprocess that imports this checkout's medzoo, on one thread per process."""
    shared = str(Path(medzoo.__file__).resolve().parents[1])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([shared, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _medzoo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medzoo.cli", *map(str, args)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _write_test_pngs(folder: Path) -> list[Path]:
    """The kinds of files a user has: square and non-square (wide as in the issue, 1024x1280, and tall) 8-bit gray,
    8-bit RGB whose channels differ slightly, 16-bit gray. Returns the paths in name order."""
    from PIL import Image

    rng = np.random.default_rng(7)
    images = {
        "a_square_8bit": (_structured(rng, 512, 512) * 255).round().astype(np.uint8),
        "b_wide_8bit": (_structured(rng, 1024, 1280) * 255).round().astype(np.uint8),
        "c_tall_8bit": (_structured(rng, 700, 500) * 255).round().astype(np.uint8),
        # a gray radiograph saved as RGB, the channels differing by a few levels (tinted)
        "d_rgb_8bit": np.clip(
            _structured(rng, 480, 600)[..., None] * 255
            + rng.uniform(-6, 6, (1, 1, 3))
            + rng.normal(0, 2, (480, 600, 3)),
            0,
            255,
        )
        .round()
        .astype(np.uint8),
        "e_gray_16bit": (_structured(rng, 600, 520) * 65535).round().astype(np.uint16),
    }
    folder.mkdir(parents=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / f"{name}.png")
    return sorted(folder.glob("*.png"))


def _xrv_reference(xrv, model: nn.Module, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """torchxrayvision's README recipe on each file: (outputs of ``model`` [N, 14], logits [N, 14]) in CHEXNET_LABELS
    order. 16-bit PNGs are normalised with maxval 65535, as torchxrayvision's loaders of 16-bit PNG data sets do."""
    import skimage.io

    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])
    inputs = []
    for path in paths:
        img = skimage.io.imread(path)
        if img.ndim == 3:
            img = xrv.datasets.normalize(img, 255).mean(2)[None, ...]
        else:
            img = xrv.datasets.normalize(img, 65535 if img.dtype == np.uint16 else 255)[None, ...]
        inputs.append(torch.from_numpy(transform(img)))
    rows = [model.targets.index(label) for label in CHEXNET_LABELS]
    x = torch.stack(inputs)
    with torch.no_grad():
        return model.eval()(x)[:, rows], model.classifier(model.features2(x))[:, rows]


def _chexnet_reference(model: nn.Module, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """arnoweng/CheXNet's test pipeline with the centre crop of its TenCrop only: (probabilities, logits) [N, 14]. A
    16-bit image is first made the 8-bit image round(v / 257) (the stated rule; Pillow's convert('RGB') clips it)."""
    preprocess = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )

    def open_rgb(path: Path) -> Image.Image:
        img = Image.open(path)
        if img.mode.startswith("I;16"):
            img = Image.fromarray(np.round(np.asarray(img) / 257).astype(np.uint8))
        return img.convert("RGB")

    logits = []
    hook = model.densenet121.classifier[1].register_forward_hook(lambda module, args, output: logits.append(args[0]))
    with torch.no_grad():
        probabilities = model.eval()(torch.stack([preprocess(open_rgb(p)) for p in paths]))
    hook.remove()
    return probabilities, logits[0]


def _assert_realistic(probabilities: torch.Tensor, logits: torch.Tensor) -> None:
    """Logits of a few units that differ between the files, probabilities mostly away from 0 and 1: a preprocessing
    difference shows, and the bound is not met by saturation."""
    assert 1.0 < logits.std() < 10.0, logits
    assert logits.std(0).mean() > 0.5, logits  # the files give different predictions
    assert ((probabilities > 0.02) & (probabilities < 0.98)).float().mean() > 0.6, probabilities


def _read_predictions(path: Path) -> tuple[list[str], torch.Tensor]:
    with open(path) as f:
        table = list(csv.DictReader(f))
    return [Path(r["file"]).name for r in table], torch.tensor(
        [[float(r[label]) for label in CHEXNET_LABELS] for r in table]
    )


def _assert_parity_report(bundle_dir: Path, calibration: str) -> None:
    """The converter's own check: measured on all four file kinds, within the bound, and quoted by the card."""
    meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
    report = json.loads((bundle_dir / "docs" / "parity.json").read_text())
    assert meta["weights"]["parity"] == report and meta["weights"]["calibration"] == calibration
    assert report["status"] == "measured"
    assert set(report["max_abs_probability_difference"]) == {"square_8bit", "nonsquare_8bit", "rgb_8bit", "gray_16bit"}
    assert report["max_abs_probability_difference_all"] <= PARITY
    card = (bundle_dir / "docs" / "README.md").read_text()
    for kind, difference in report["max_abs_probability_difference"].items():
        assert f"| {kind} | `{kind}.png` | {difference:.2e} |" in card


@pytest.mark.parametrize("drop_op_threshs", [False, True], ids=["calibrated", "drop_op_threshs"])
def test_xrv_bundle_predicts_like_torchxrayvision_from_files(
    xrv_source, xrv_calibrated, tmp_path, cxr_bundle, drop_op_threshs
):
    """A state dict with op_threshs converted into a bundle, whose inference.json runs on PNG files, against
    torchxrayvision's README pipeline on the same files. Each case runs one of the two user commands in a subprocess
    (a Python start costs many seconds on a busy machine): with the calibration, the bundle runs through
    `python -m monai.bundle run`; without it, the conversion runs through `medzoo convert xrv ... --drop_op_threshs True`.
    """
    from medzoo.cxr.bundle_convert import convert_to_bundle
    from medzoo.workflows import run_configs
    from medzoo.zoo import Bundle

    xrv, _, _ = xrv_source
    calibrated, checkpoint = xrv_calibrated
    paths = _write_test_pngs(tmp_path / "images")
    calibrated_probabilities, logits = _xrv_reference(xrv, calibrated, paths)
    plain_probabilities = torch.sigmoid(logits)
    _assert_realistic(plain_probabilities, logits)
    # the calibration matters: dropping it changes what a torchxrayvision user sees
    assert (calibrated_probabilities - plain_probabilities).abs().max() > 0.1

    bundle_dir = tmp_path / "cxr14_xrv_classification"
    if drop_op_threshs:
        result = _medzoo("convert", "xrv", checkpoint, "--output_dir", bundle_dir, "--drop_op_threshs", "True")
        assert result.returncode == 0, result.stderr[-3000:]
        run_configs(
            Bundle(bundle_dir),
            ["inference.json"],
            workflow_type="infer",
            input=str(tmp_path / "images"),
            output_dir=str(tmp_path / "eval"),
            num_workers=0,
        )
    else:
        convert_to_bundle("xrv", checkpoint, cxr_bundle.root, bundle_dir)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "monai.bundle",
                "run",
                "--config_file",
                "configs/inference.json",
                "--input",
                str(tmp_path / "images"),
                "--output_dir",
                str(tmp_path / "eval"),
                "--num_workers",
                "0",
            ],
            cwd=bundle_dir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    names, actual = _read_predictions(tmp_path / "eval" / "predictions.csv")
    assert names == [p.name for p in paths]
    expected = plain_probabilities if drop_op_threshs else calibrated_probabilities
    torch.testing.assert_close(actual, expected.float(), rtol=0, atol=PARITY)

    _assert_parity_report(bundle_dir, "dropped" if drop_op_threshs else "op_norm")
    meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
    assert [t is None for t in meta["weights"]["op_threshs"]] == [
        label in _NO_OPERATING_POINT for label in CHEXNET_LABELS
    ]
    card = (bundle_dir / "docs" / "README.md").read_text()
    assert ("Dropped at conversion (`--drop_op_threshs True`)" in card) == drop_op_threshs
    assert "`xrv.datasets.XRayResizer(224)`" in card


def test_chexnet_bundle_predicts_like_chexnet_from_files(chexnet, tmp_path, cxr_bundle):
    """`medzoo convert chexnet`, then the bundle's inference.json, against CheXNet's pipeline on the same PNG files."""
    from medzoo.bundle_checks import check_metadata
    from medzoo.cxr.bundle_convert import convert_to_bundle
    from medzoo.workflows import run_configs
    from medzoo.zoo import Bundle, index_entry

    model, _, checkpoint = chexnet
    paths = _write_test_pngs(tmp_path / "images")
    expected, logits = _chexnet_reference(model, paths)
    _assert_realistic(expected, logits)

    converted = Bundle(
        convert_to_bundle("chexnet", checkpoint, cxr_bundle.root, tmp_path / "cxr14_chexnet_classification")
    )
    check_metadata(converted)
    entry = index_entry(converted)
    assert entry["weights"]["status"] == "converted" and entry["inputs"]["image"]["num_channels"] == 3
    run_configs(
        converted,
        ["inference.json"],
        workflow_type="infer",
        input=str(tmp_path / "images"),
        output_dir=str(tmp_path / "eval"),
        num_workers=0,
    )
    names, actual = _read_predictions(tmp_path / "eval" / "predictions.csv")
    assert names == [p.name for p in paths]
    torch.testing.assert_close(actual, expected.float(), rtol=0, atol=PARITY)
    _assert_parity_report(converted.root, "none")
    assert "`CenterCrop(224)`" in (converted.root / "docs" / "README.md").read_text()


def test_cli_conversion_error_is_one_line(chexnet, tmp_path):
    """A checkpoint with a missing, a mis-shaped and an extra key: exit status 2 (a user mistake), one ``error:`` line
    naming all three, no traceback, nothing written."""
    _, state_dict, _ = chexnet
    missing = "module.densenet121.features.denseblock2.denselayer3.conv.2.weight"
    bad = tmp_path / "bad.pth.tar"
    _save_modified(bad, state_dict, **{missing: None, _CLASSIFIER: torch.zeros(15, 1024), _EXTRA: torch.ones(8)})
    result = _medzoo("convert", "chexnet", bad, "--output_dir", tmp_path / "out")
    assert result.returncode == USER_ERROR_STATUS
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not a CheXNet DenseNet-121 state dict: "), result.stderr
    for part in (
        "missing keys (MONAI names) (1): features.denseblock2.denselayer3.layers.conv2.weight",
        f"wrong shapes (1): {_CLASSIFIER}: (15, 1024), expected (14, 1024)",
        f"unexpected keys (1): {_EXTRA}",
    ):
        assert part in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]
