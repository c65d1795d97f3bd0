"""The shared layer's small parts: loss, metric, atomic files, weights loading, image reading, bundle lookup, inferers."""

import math
import os
import stat
import threading

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from PIL import Image

from medzoo.cxr.transforms import ChestXRayIntensity, ImageReadError, read_xray
from medzoo.errors import UserError
from medzoo.fileio import atomic_path, atomic_write_text
from medzoo.inferers import ConcurrentRuns, PlainTensorInferer
from medzoo.losses import MultiLabelLoss
from medzoo.metrics import MultiLabelAUROC
from medzoo.paths import bundle_root
from medzoo.weights import load_state_dict, load_weights, sha256sum


def _direct_loss(logits, target, pos_weight, gamma, ignore=-1.0):
    """The loss formula, term by term over the known entries."""
    terms = []
    for row_logits, row_target in zip(logits.tolist(), target.tolist()):
        for x, y, w in zip(row_logits, row_target, pos_weight):
            if y == ignore:
                continue
            p = 1 / (1 + math.exp(-x))
            terms.append(-(w * y * (1 - p) ** gamma * math.log(p) + (1 - y) * p**gamma * math.log(1 - p)))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_multilabel_loss_matches_formula(gamma):
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    target = torch.tensor([[1.0, 0, -1], [0, 1, 1], [-1, -1, 0], [1, 1, 0]])
    pos_weight = [2.0, 0.5, 1.0]
    got = MultiLabelLoss(pos_weight=pos_weight, gamma=gamma)(logits, target).item()
    assert got == pytest.approx(_direct_loss(logits, target, pos_weight, gamma), rel=1e-5)


def test_multilabel_loss_plain_equals_torch_bce():
    logits, target = torch.randn(5, 14), torch.randint(0, 2, (5, 14)).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert MultiLabelLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_multilabel_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        MultiLabelLoss(gamma=-1)
    with pytest.raises(ValueError, match="same shape"):
        MultiLabelLoss()(torch.zeros(2, 3), torch.zeros(2, 4))


def test_auroc_ignores_unknown_targets_and_undefined_classes():
    metric = MultiLabelAUROC(labels=["a", "b", "c"])
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.7, 0.3, 0.5], [0.6, 0.9, 0.5]])
    # the -1 entry would make class "a" imperfect if it were counted (score 0.6 labelled 0 > 0.2 labelled 0... and < 0.7)
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 1], [1, 0, 1], [-1, 0, 1]])
    metric(scores, targets)
    mean = metric.aggregate().item()
    assert metric.per_class["a"] == pytest.approx(1.0)
    assert metric.per_class["b"] == pytest.approx(2 / 3)  # positive 0.8 beats 0.1 and 0.3 but not 0.9
    assert math.isnan(metric.per_class["c"])  # only positives: undefined, left out of the mean
    assert mean == pytest.approx((1.0 + 2 / 3) / 2)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["out.csv"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_get_the_permissions_of_a_new_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "out.csv", "a\n")
        atomic_write_text(tmp_path / "out.csv", "b\n")  # replacing a file as well
        (tmp_path / "plain.csv").write_text("c\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o666 & ~umask


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_weights_refuses_pickle_payload(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(1), "extra": _Payload(str(marker))}, bad)
    with pytest.raises(ValueError, match="not a safe checkpoint"):
        load_weights(bad)
    assert not marker.exists()
    torch.load(bad, weights_only=False)  # control: an unrestricted load does run the payload
    assert marker.exists()


def test_load_weights_checks_sha256_and_nesting(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert load_state_dict(path, key="state_dict", sha256=sha256sum(path))["w"].sum() == 2
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_weights(path, sha256="0" * 64)
    with pytest.raises(UserError, match="no entry 'network'"):
        load_state_dict(path, key="network")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")


def _save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_read_xray_converts_formats(tmp_path):
    gray = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    assert np.array_equal(read_xray(_save(tmp_path / "g.png", gray)), gray.astype(np.float32))
    rgb = np.stack([gray] * 3, -1)
    assert np.allclose(read_xray(_save(tmp_path / "rgb.png", rgb)), gray, atol=0.01)
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 7, np.uint8)], -1)
    assert np.allclose(read_xray(_save(tmp_path / "rgba.png", rgba)), gray, atol=0.01)
    sixteen = gray.astype(np.uint16) * 257  # 8-bit value v stored as v * 257 in 16 bits
    Image.fromarray(sixteen).save(tmp_path / "16.png")
    assert np.allclose(read_xray(tmp_path / "16.png"), gray, atol=1e-3)
    _save(tmp_path / "g.jpg", gray)
    assert read_xray(tmp_path / "g.jpg").shape == (64, 64)


def test_read_xray_dicom(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = 32, 48
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = (np.arange(32 * 48).reshape(32, 48) % 4096).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    out = read_xray(tmp_path / "x.dcm")
    assert out.shape == (32, 48) and out.min() == 0 and out.max() == pytest.approx(255)
    del ds.PixelData
    ds.save_as(tmp_path / "empty.dcm", enforce_file_format=True)
    with pytest.raises(ImageReadError, match="empty.dcm: DICOM file has no pixel data"):
        read_xray(tmp_path / "empty.dcm")


@pytest.mark.parametrize(
    "content, message",
    [(None, "file not found"), (b"", "file is empty"), (b"just text, no image", "not a readable image")],
)
def test_read_xray_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=f"bad.png: {message}"):
        read_xray(path)


def test_read_xray_truncated_png(tmp_path):
    path = _save(tmp_path / "t.png", (np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="t.png: file is truncated inside a .IDAT. chunk"):
        read_xray(path)


def test_intensity_presets():
    img = torch.full((1, 4, 4), 255.0)
    assert ChestXRayIntensity("zoo")(img).max() == 1.0
    assert ChestXRayIntensity("xrv")(img).max() == 1024.0
    chexnet = ChestXRayIntensity("chexnet")(img)
    assert chexnet.shape == (3, 4, 4)
    assert chexnet[2, 0, 0].item() == pytest.approx((1 - 0.406) / 0.225)
    with pytest.raises(ValueError, match="unknown input preset"):
        ChestXRayIntensity("imagenet")


def test_intensity_of_an_integer_image_is_float_with_its_metadata():
    image = MetaTensor(torch.full((1, 4, 4), 255, dtype=torch.uint8), meta={"filename_or_obj": "a.png"})
    out = ChestXRayIntensity("chexnet")(image)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.png"
    assert out.dtype == torch.float32 and out.shape == (3, 4, 4)
    assert out[0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)
    assert image.dtype == torch.uint8 and image.max() == 255  # the input is left as it was


def test_bundle_root_from_repo_root_and_bundle_folder(monkeypatch, cxr_bundle):
    monkeypatch.chdir(cxr_bundle.root.parent.parent)
    assert os.path.samefile(bundle_root(cxr_bundle.name), cxr_bundle.root)
    monkeypatch.chdir(cxr_bundle.root)
    assert bundle_root(cxr_bundle.name) == "."
    with pytest.raises(FileNotFoundError, match="bundle 'nope' not found"):
        bundle_root("nope")


def test_positive_class_weights(tmp_path):
    import json

    from medzoo.data import positive_class_weights

    datalist = tmp_path / "list.json"
    rows = [[1, 0, -1], [0, 0, 1], [0, 0, 0], [0, -1, 0]]
    datalist.write_text(json.dumps({"training": [{"image": f"{i}.png", "label": r} for i, r in enumerate(rows)]}))
    assert positive_class_weights(datalist, max_weight=50.0) == [3.0, 50.0, 2.0]  # 3:1, no positives, 2:1 (-1 ignored)


class _RecordingConv(torch.nn.Conv2d):
    """A convolution that records the type of every input it is called on."""

    def __init__(self) -> None:
        super().__init__(1, 3, 3, padding=1)
        self.seen: list[type] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(type(x))
        return super().forward(x)


def test_plain_tensor_inferer_hides_metadata_from_the_network_only():
    inner = SimpleInferer()
    torch.manual_seed(0)
    network = _RecordingConv().eval()
    batch = MetaTensor(torch.rand(2, 1, 40, 40), meta={"filename_or_obj": ["a.png", "b.png"]})
    batch.is_batch = True
    with torch.no_grad():
        expected, output = inner(batch, network), PlainTensorInferer(inner)(batch, network)
    assert network.seen == [MetaTensor, torch.Tensor]  # the bare inferer passes the MetaTensor on, ours a plain tensor
    assert isinstance(output, MetaTensor) and output.is_batch
    assert output.meta["filename_or_obj"] == ["a.png", "b.png"]
    torch.testing.assert_close(output.as_tensor(), expected.as_tensor())


def test_plain_tensor_inferer_runs_in_inference_mode_only_without_gradients():
    network = torch.nn.Conv2d(1, 2, 3)
    batch = MetaTensor(torch.rand(2, 1, 8, 8))
    with torch.no_grad():
        assert PlainTensorInferer(SimpleInferer())(batch, network).is_inference()
    output = PlainTensorInferer(SimpleInferer())(batch, network)
    assert not output.is_inference() and output.requires_grad  # training can still backpropagate through it


def test_plain_tensor_inferer_passes_other_inputs_and_outputs_through():
    x = torch.rand(1, 1, 16, 16)
    assert type(PlainTensorInferer(SimpleInferer())(x, lambda t: t + 1)) is torch.Tensor
    pair = PlainTensorInferer(SimpleInferer())(MetaTensor(x), lambda t: (t, 2 * t))
    assert isinstance(pair, tuple) and type(pair[0]) is torch.Tensor


class _ThreadRecorder(torch.nn.Module):
    """A 1x1 convolution that records, per call, its thread's name, PyTorch's thread count and the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 1)
        self.calls: list[tuple[str, int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((threading.current_thread().name, torch.get_num_threads(), len(x)))
        return self.conv(x).mean((2, 3))


class _Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def test_concurrent_runs_split_the_batch_over_single_threaded_runs_and_restore_the_threads():
    network = _ThreadRecorder()
    threads = torch.get_num_threads()
    x = torch.rand(5, 1, 8, 8)
    with torch.inference_mode():
        output = ConcurrentRuns(network, runs=2)(x)
    assert output.is_inference()
    torch.testing.assert_close(output, network.conv(x).mean((2, 3)).detach())
    assert sorted(size for _, _, size in network.calls) == [2, 3]  # two chunks, in two threads of one thread each
    assert all(name.startswith("torch-run") and count == 1 for name, count, _ in network.calls)
    assert torch.get_num_threads() == threads  # the caller's thread count is back
    network.calls.clear()
    ConcurrentRuns(network, runs=2)(x[:1])  # a batch of one, and runs=1, call the network directly
    ConcurrentRuns(network, runs=1)(x)
    assert [(name, size) for name, _, size in network.calls] == [
        (threading.current_thread().name, 1),
        (threading.current_thread().name, 5),
    ]


def test_concurrent_runs_keep_the_callers_gradient_mode_and_refuse_bad_settings():
    network = _ThreadRecorder()
    output = ConcurrentRuns(network, runs=2)(torch.rand(4, 1, 8, 8))
    output.sum().backward()  # each run recorded its graph, although grad mode is per thread
    assert network.conv.weight.grad is not None and network.conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert not ConcurrentRuns(network, runs=2)(torch.rand(4, 1, 8, 8)).requires_grad
    with pytest.raises(ValueError, match="runs must be 0"):
        ConcurrentRuns(network, runs=-1)
    with pytest.raises(TypeError, match="returns one tensor, got tuple"):
        ConcurrentRuns(_Pair(), runs=2)(torch.rand(4, 1, 8, 8))


def test_every_data_file_of_the_shared_layer_is_package_data():
    """A wheel carries the shared layer's non-Python files (the metadata schema, the bundle properties) only if
    pyproject.toml's package-data lists them."""
    import fnmatch
    import tomllib

    from medzoo.paths import REPO_ROOT

    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["medzoo"]
    shared = REPO_ROOT / "shared" / "medzoo"
    data = [
        p.relative_to(shared).as_posix()
        for p in shared.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert "properties/monailabel.json" in data
    assert [f for f in data if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)] == []


def test_required_ids_are_checked_as_monai_properties_without_building_anything(tmp_path, cxr_bundle):
    """Missing ids are reported in the properties file's order, nested ids included; a property counts as present
    when its id is defined, even if its content could not be built."""
    import json
    import shutil

    from medzoo.bundle_properties import HARDENING_PROPERTIES, MONAILABEL_PROPERTIES, missing_property_ids
    from medzoo.zoo import Bundle

    copy = tmp_path / cxr_bundle.name
    shutil.copytree(cxr_bundle.root / "configs", copy / "configs")
    inference = json.loads((copy / "configs" / "inference.json").read_text())
    inference["network_def"] = {"_target_": "no_such_package.Network"}
    del inference["inferer"], inference["device"]
    (copy / "configs" / "inference.json").write_text(json.dumps(inference))
    train = json.loads((copy / "configs" / "train.json").read_text())
    del train["train"]["trainer"]["max_epochs"], train["seed"]
    (copy / "configs" / "train.json").write_text(json.dumps(train))
    bundle = Bundle(copy)
    assert missing_property_ids(bundle, "inference.json", MONAILABEL_PROPERTIES, "infer") == ["device", "inferer"]
    assert missing_property_ids(bundle, "train.json", MONAILABEL_PROPERTIES, "train") == ["train#trainer#max_epochs"]
    assert missing_property_ids(bundle, "train.json", HARDENING_PROPERTIES, "train") == ["seed"]
    with pytest.raises(ValueError, match="hardening.json has no 'infer' properties"):
        missing_property_ids(bundle, "inference.json", HARDENING_PROPERTIES, "infer")
