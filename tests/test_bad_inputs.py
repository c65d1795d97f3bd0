"""Bad inputs per input kind: each case works or gives a clear error naming the file; the rest of a run goes on.

The table of these cases and their outcomes is docs/bad_inputs.md.
"""

import csv
import gzip
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_sets import smallest_of_each_configuration
from monai.data import MetaTensor
from PIL import Image

from medzoo.cxr.transforms import ImageReadError, LoadChestXRayd, read_xray
from medzoo.data import GuardedDataset
from medzoo.io_checks import InputFileError, LoadNiftid, read_nifti, save_nifti

# ------------------------------------------------------------------------------------------- 2D chest X-ray


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def _dicom(path, pixels=None, frames=1, slope=None):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = 32, 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
    if pixels is not None:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


GRAY = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)


def test_16_bit_png_is_scaled_to_8_bit_range(tmp_path):
    path = tmp_path / "sixteen.png"
    Image.fromarray(GRAY.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.allclose(read_xray(path), GRAY, atol=1e-3)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_png_with_alpha_drops_it(tmp_path, mode):
    colour = np.stack([GRAY] * (3 if mode == "RGBA" else 1) + [np.full_like(GRAY, 9)], -1)
    assert np.allclose(read_xray(_png(tmp_path / "a.png", colour, mode)), GRAY, atol=0.01)


def test_cmyk_jpeg_is_converted(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(np.stack([GRAY] * 3, -1)).convert("CMYK").save(path, quality=100)
    assert np.abs(read_xray(path) - GRAY).mean() < 3.0


def test_very_large_image_is_read_and_resized(tmp_path, cxr_bundle):
    size = 8000
    big = np.zeros((size, size), np.uint8)
    big[:, size // 2 :] = 255  # left half black, right half white
    path = _png(tmp_path / "big.png", big)
    preprocessing = cxr_bundle.parser("inference.json", "quick.json").get_parsed_content("preprocessing")
    image = preprocessing({"image": str(path)})["image"]
    assert tuple(image.shape) == (1, 64, 64)
    assert torch.allclose(image[0, :, :32], torch.tensor(0.0)) and torch.allclose(image[0, :, 32:], torch.tensor(1.0))


def _box_weights(size_in: int, size_out: int) -> np.ndarray:
    """(out, in) averaging weights: each output pixel is the mean of the input pixels whose centres fall inside it."""
    scale = size_in / size_out
    owner = np.minimum(np.ceil((np.arange(size_in) + 0.5) / scale).astype(int) - 1, size_out - 1)
    weights = (owner[None, :] == np.arange(size_out)[:, None]).astype(np.float64)
    return weights / weights.sum(1, keepdims=True)


@pytest.mark.parametrize("size", [(16, 24), (28, 42), (30, 7)])
def test_reading_with_spatial_size_box_averages(tmp_path, size):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 96), dtype=np.uint8)
    path = _png(tmp_path / "a.png", pixels)
    expected = _box_weights(64, size[0]) @ pixels @ _box_weights(96, size[1]).T
    assert np.allclose(read_xray(path, size), expected, atol=1e-3)
    sixteen = _png(tmp_path / "sixteen.png", pixels.astype(np.uint16) * 257)  # 16-bit: same 8-bit range
    assert np.allclose(read_xray(sixteen, size), expected, atol=1e-3)
    item = LoadChestXRayd("image", spatial_size=size)({"image": str(path)})["image"]
    assert isinstance(item, MetaTensor) and tuple(item.shape) == (1, *size)
    assert item.meta["filename_or_obj"] == str(path) and item.dtype == torch.float32


def test_spatial_size_must_be_two_positive_sizes():
    for bad in [(16,), (0, 16), (16, 16, 16)]:
        with pytest.raises(ValueError, match="spatial_size must be two positive sizes"):
            LoadChestXRayd("image", spatial_size=bad)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _png(tmp_path / "bomb.png", np.zeros((200, 200), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # 200x200 is over twice the limit
    with pytest.raises(ImageReadError, match="bomb.png: image too large to decode safely"):
        read_xray(path)


def test_dicom_cases(tmp_path):
    pytest.importorskip("pydicom")
    pixels = np.arange(32 * 32).reshape(32, 32)
    assert read_xray(_dicom(tmp_path / "ok.dcm", pixels)).max() == pytest.approx(255.0)
    with pytest.raises(ImageReadError, match="nopixels.dcm: DICOM file has no pixel data"):
        read_xray(_dicom(tmp_path / "nopixels.dcm"))
    with pytest.raises(ImageReadError, match=r"frames.dcm: multi-frame DICOM \(3 frames\)"):
        read_xray(_dicom(tmp_path / "frames.dcm", np.concatenate([pixels] * 3), frames=3))
    with pytest.raises(ImageReadError, match="nan.dcm: image contains NaN or infinite values"):
        read_xray(_dicom(tmp_path / "nan.dcm", pixels, slope="NaN"))
    text = tmp_path / "text.dcm"
    text.write_text("not a dicom file at all")
    with pytest.raises(ImageReadError, match="text.dcm: not a readable DICOM file"):
        read_xray(text)


def test_a_run_over_mixed_2d_inputs_keeps_the_good_ones(tmp_path):
    good = {
        "gray.png": _png(tmp_path / "gray.png", GRAY),
        "rgba.png": _png(
            tmp_path / "rgba.png", np.concatenate([np.stack([GRAY] * 3, -1), np.full((64, 64, 1), 5, np.uint8)], -1)
        ),
        "ok.dcm": _dicom(tmp_path / "ok.dcm", np.arange(32 * 32).reshape(32, 32)),
    }
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(GRAY.astype(np.uint16) * 257).save(sixteen)
    good["sixteen.png"] = sixteen
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("a text file with an image extension")
    truncated = _png(tmp_path / "truncated.png", np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:200])
    _dicom(tmp_path / "nopixels.dcm")
    bad = {
        "missing.png": "file not found",
        "empty.png": "file is empty",
        "text.png": "not a readable image",
        "truncated.png": "",
        "nopixels.dcm": "DICOM file has no pixel data",
    }
    from monai.transforms import Compose, Resized

    transform = Compose([LoadChestXRayd(keys="image"), Resized(keys="image", spatial_size=(32, 32), mode="area")])
    data = [{"image": str(tmp_path / name)} for name in sorted([*good, *bad])]
    dataset = GuardedDataset(data, transform, placeholder={"image": torch.zeros(1, 32, 32)})
    items = {item["source"].rsplit("/", 1)[-1]: item for item in (dataset[i] for i in range(len(dataset)))}
    for name in good:
        assert (
            items[name]["error"] == "" and items[name]["image"].shape == (1, 32, 32) and items[name]["image"].max() > 0
        )
    for name, message in bad.items():
        assert items[name]["error"].startswith(str(tmp_path / name) + ":") and message in items[name]["error"]


# --------------------------------------------------------------------------------------------------- NIfTI


def _nifti(path, array, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine), str(path))
    return path


CINE = np.random.default_rng(0).random((12, 16, 16)).astype(np.float32)  # (T, H, W)


def test_cine_and_volume_load_channel_first(tmp_path):
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    out = LoadNiftid(keys="image", ndim=3)({"image": str(_nifti(tmp_path / "cine.nii.gz", CINE, affine))})["image"]
    assert tuple(out.shape) == (1, 12, 16, 16) and torch.allclose(out[0], torch.from_numpy(CINE))
    assert np.allclose(out.meta["original_affine"], affine) and out.meta["filename_or_obj"].endswith("cine.nii.gz")
    two = np.stack([CINE, -CINE], -1)  # (H, W, D, 2): channels after the spatial axes
    out = LoadNiftid(keys="image", ndim=3, channels=2)({"image": str(_nifti(tmp_path / "two.nii", two))})["image"]
    assert tuple(out.shape) == (2, 12, 16, 16) and torch.allclose(out[1], -torch.from_numpy(CINE))


def _truncated(path, fraction=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])
    return path


def _zeroed(path, start: int | None = None):
    """Zero a third of a file from byte ``start`` (default: its middle third), keeping its length. Of a gzipped NIfTI,
    the middle third leaves a decodable deflate stream whose checksum fails; from byte 10 (right after the gzip
    header) the deflate stream itself is invalid."""
    raw = bytearray(path.read_bytes())
    third = len(raw) // 3
    start = third if start is None else start
    raw[start : start + third] = bytes(third)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    "name, make, kwargs, message",
    [
        ("missing.nii.gz", None, {}, "file not found"),
        ("empty.nii.gz", lambda p: p.write_bytes(b""), {}, r"file is empty \(0 bytes\)"),
        ("text.nii.gz", lambda p: p.write_text("not an image"), {}, "not a readable NIfTI file"),
        ("text.nii", lambda p: p.write_text("not an image either"), {}, "not a readable NIfTI file"),
        (
            "cut.nii.gz",
            lambda p: _truncated(_nifti(p, CINE)),
            {},
            "image data cannot be read, the file is truncated or corrupt",
        ),
        (
            "bad_crc.nii.gz",
            lambda p: _zeroed(_nifti(p, CINE)),
            {},
            "image data cannot be read, the file is truncated or corrupt",
        ),
        (
            "bad_deflate.nii.gz",
            lambda p: _zeroed(_nifti(p, CINE), start=10),
            {},
            "image data cannot be read, the file is truncated or corrupt",
        ),
        (
            "cut.nii",
            lambda p: _truncated(_nifti(p, CINE), 0.6),
            {},
            "image data cannot be read, the file is truncated or corrupt",
        ),
        (
            "header_only.nii",
            lambda p: _truncated(_nifti(p, CINE), 352 / (352 + CINE.nbytes)),
            {},
            "image data cannot be read, the file is truncated or corrupt",
        ),
        (
            "nan.nii.gz",
            lambda p: _nifti(p, np.where(CINE > 0.9, np.nan, CINE)),
            {},
            "image contains [0-9]+ NaN or infinite",
        ),
        (
            "inf.nii.gz",
            lambda p: _nifti(p, np.where(CINE > 0.9, np.inf, CINE)),
            {},
            "image contains [0-9]+ NaN or infinite",
        ),
        ("slice.nii.gz", lambda p: _nifti(p, CINE[0]), {}, r"expected 3 axes, got shape \(16, 16\)"),
        (
            "fourd.nii.gz",
            lambda p: _nifti(p, CINE[..., None].repeat(2, -1)),
            {},
            r"expected 3 axes, got shape \(12, 16, 16, 2\)",
        ),
        (
            "rgb.nii.gz",
            lambda p: _nifti(p, CINE[..., None].repeat(3, -1)),
            {"channels": 2},
            r"expected 2 channel\(s\) on the last axis",
        ),
        ("nochannels.nii.gz", lambda p: _nifti(p, CINE), {"channels": 2}, "expected 2 channels on an extra last axis"),
    ],
)
def test_nifti_errors_name_the_file_and_problem(tmp_path, name, make, kwargs, message):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(InputFileError, match=rf"^{tmp_path / name}: ({message})"):
        read_nifti(path, ndim=3, **kwargs)


def test_nonfinite_values_can_be_allowed_explicitly(tmp_path):
    path = _nifti(tmp_path / "map.nii.gz", np.where(CINE > 0.9, np.nan, CINE))
    assert np.isnan(read_nifti(path, ndim=3, allow_nonfinite=True)[0]).any()


def test_a_run_over_mixed_nifti_inputs_keeps_the_good_ones(tmp_path):
    good = [_nifti(tmp_path / f"case{i}.nii.gz", CINE * i) for i in (1, 2)]
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    _nifti(tmp_path / "slice.nii.gz", CINE[0])
    _truncated(_nifti(tmp_path / "cut.nii.gz", CINE))
    data = [{"image": str(p)} for p in sorted(tmp_path.iterdir())]
    dataset = GuardedDataset(data, LoadNiftid(keys="image", ndim=3), placeholder={"image": torch.zeros(1, 12, 16, 16)})
    items = {item["source"].rsplit("/", 1)[-1]: item for item in (dataset[i] for i in range(len(dataset)))}
    assert [n for n, item in items.items() if not item["error"]] == [p.name for p in good]
    assert torch.allclose(items["case2.nii.gz"]["image"][0], torch.from_numpy(CINE * 2))
    for name in ("empty.nii.gz", "slice.nii.gz", "cut.nii.gz"):
        assert items[name]["error"].startswith(str(tmp_path / name) + ":")


def test_save_nifti_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out" / "seg.nii.gz"
    save_nifti(CINE, np.diag([2.0, 2.0, 2.0, 1.0]), target)
    data, affine = read_nifti(target, ndim=3)
    assert np.array_equal(data, CINE) and affine[0, 0] == 2.0
    before = target.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed while compressing")

    monkeypatch.setattr(gzip, "compress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_nifti(CINE * 0, None, target)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["seg.nii.gz"]
    with pytest.raises(ValueError, match="a NIfTI file name ends in"):
        save_nifti(CINE, None, tmp_path / "seg.png")


def test_tiny_image_is_refused(tmp_path):
    with pytest.raises(ImageReadError, match=r"tiny.png: image of shape \(4, 4\) is too small"):
        read_xray(_png(tmp_path / "tiny.png", np.zeros((4, 4), np.uint8)))


# ------------------------------------------------------------------- every bundle's inference on a bad-input corpus


def _nifti_corpus(good: Path, folder: Path) -> dict[str, str]:
    """Bad copies of the NIfTI ``good`` in ``folder`` -> the problem each must be reported with."""
    suffix = ".nii.gz" if good.name.endswith(".nii.gz") else ".nii"
    image = nib.load(str(good))
    data = np.asarray(image.dataobj, dtype=np.float32)
    nan = data.copy()
    nan.flat[:: max(1, nan.size // 7)] = np.nan
    made = {
        "truncated": (lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "truncated or corrupt"),
        "nan": (lambda p: _nifti(p, nan, image.affine), "NaN or infinite"),
        "fived": (lambda p: _nifti(p, data[..., None, None].repeat(2, -1), image.affine), "expected"),
        "text": (lambda p: p.write_text("not an image"), "not a readable NIfTI file"),
        "empty": (lambda p: p.write_bytes(b""), r"file is empty \(0 bytes\)"),
    }
    corpus = {}
    for kind, (make, message) in made.items():
        path = folder / f"bad-{kind}{suffix}"
        make(path)
        corpus[str(path)] = message
    return corpus


def _image_corpus(good: Path, folder: Path) -> dict[str, str]:
    """Bad 2D inputs in ``folder`` (PNG cannot hold NaN nor a third axis: DICOM does) -> the problem of each."""
    pytest.importorskip("pydicom")
    pixels = np.arange(32 * 32).reshape(32, 32)
    truncated = folder / "bad-truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "bad-text.png").write_text("a text file with an image extension")
    (folder / "bad-empty.png").write_bytes(b"")
    return {
        str(truncated): "truncated|not a readable image",
        str(_dicom(folder / "bad-nan.dcm", pixels, slope="NaN")): "NaN or infinite",
        str(
            _dicom(folder / "bad-frames.dcm", np.concatenate([pixels] * 3), frames=3)
        ): r"multi-frame DICOM \(3 frames\)",
        str(folder / "bad-text.png"): "not a readable image",
        str(folder / "bad-empty.png"): r"file is empty \(0 bytes\)",
    }


def _sample_data(name: str, cache: dict, tmp_path_factory) -> Path:
    """The bundle's ``sample_data.json`` + ``quick.json`` output, shared by bundles whose two configs are the same."""
    from medzoo.workflows import run_configs
    from medzoo.zoo import Bundle

    bundle = Bundle(name)
    key = (
        bundle.config_path("sample_data.json").read_text().replace(name, "")
        + bundle.config_path("quick.json").read_text()
    )
    if key not in cache:
        folder = tmp_path_factory.mktemp("sample") / "data"
        run_configs(bundle, ["sample_data.json", "quick.json"], dataset_dir=str(folder))
        cache[key] = folder
    return cache[key]


_SAMPLE_DATA: dict = {}


@pytest.mark.parametrize("name", smallest_of_each_configuration())
def test_inference_reports_each_bad_input_and_predicts_the_rest(name, tmp_path, tmp_path_factory):
    """The bundle's ``inference.json`` (+ ``quick.json``, initial weights) on one good input of its sample data and
    bad copies of it (truncated, NaN, wrong dimensionality, unreadable, empty): every bad file is a row of
    ``errors.csv`` whose message starts with its path and names the problem, the good one is predicted, and no
    output (nor temporary file) exists for a bad one.

    Bundles that differ only in their network (the HybridMedNet variants) run once, on the smallest network
    (``tests/bundle_sets.py``; ``MEDZOO_ALL_BUNDLES=1`` runs every bundle): reading inputs is the same config."""
    from medzoo.weights import save_weights
    from medzoo.workflows import run_configs
    from medzoo.zoo import Bundle

    bundle = Bundle(name)
    data = _sample_data(name, _SAMPLE_DATA, tmp_path_factory)
    parser = bundle.parser("inference.json", "quick.json", dataset_dir=str(data), ckpt_dir=str(tmp_path / "models"))
    source_key = parser["dataset"].get("source_key", "image")
    good_item = parser.get_parsed_content("dataset#data")[0]
    good = Path(good_item[source_key])
    (tmp_path / "bad").mkdir()
    is_nifti = good.name.endswith((".nii", ".nii.gz"))
    corpus = (_nifti_corpus if is_nifti else _image_corpus)(good, tmp_path / "bad")
    datalist = tmp_path / "inputs.json"
    datalist.write_text(json.dumps({"test": [good_item, *({**good_item, source_key: p} for p in corpus)]}))

    for key in [k for k in parser.config if k.endswith("network_def")]:  # with frozen sub-networks (MI: motion)
        torch.manual_seed(0)
        weights = "ckpt_path" if key == "network_def" else key.replace("network_def", "checkpoint")
        save_weights(parser.get_parsed_content(key).state_dict(), parser.get_parsed_content(weights))
    out = tmp_path / "eval"
    run_configs(
        bundle,
        ["inference.json", "quick.json"],
        workflow_type="infer",
        input=str(datalist),
        dataset_dir=str(data),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(out),
        num_workers=0,
    )

    with open(out / "errors.csv") as f:
        errors = {row["file"]: row["error"] for row in csv.DictReader(f)}
    assert sorted(errors) == sorted(corpus)
    for path, message in corpus.items():
        assert re.match(rf"{re.escape(path)}: .*({message})", errors[path]), errors[path]
    outputs = [p for p in out.rglob("*") if p.is_file() and p.name != "errors.csv"]
    assert outputs and not [p for p in outputs if "bad-" in p.name or p.name.endswith(".tmp")]
    stem = good.name.split(".")[0]
    listed = "".join(p.read_text() for p in outputs if p.suffix == ".csv")
    assert any(stem in p.name for p in outputs) or str(good) in listed
    assert "bad-" not in listed


# -------------------------------------------------------------------- user mistakes: one line, no traceback

CXR = "cxr14_densenet121_classification"


def _fresh_clone(tmp_path: Path, name: str = CXR) -> Path:
    """A checkout of bundle ``name`` as cloned: configs and docs, no sample data, no weights. Returns its root."""
    import shutil

    from medzoo.zoo import Bundle

    root = tmp_path / "clone"
    shutil.copytree(
        Bundle(name).root,
        root / "bundles" / name,
        ignore=shutil.ignore_patterns("sample_data", "eval", "*.pt", "*.safetensors", "*.onnx", "*.ts*"),
    )
    return root


def _command(cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run ``python <args>`` in ``cwd`` with this checkout's shared layer: (exit status, stdout, stderr)."""
    import os
    import subprocess
    import sys

    import medzoo

    env = {**os.environ, "PYTHONPATH": str(Path(medzoo.__file__).parents[1])}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def _assert_one_line(status: int, stdout: str, stderr: str, *expected: str) -> str:
    """The command failed with exit status 2 and ``error: ...`` holding every ``expected`` text as one line of
    stderr; besides it, stderr holds at most MONAI's warning about running configs, and no traceback anywhere."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1 and len(lines) <= 2, stderr
    assert "Traceback" not in stdout + stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def _bundle_run(*overrides: str) -> list[str]:
    return ["-m", "monai.bundle", "run", "--config_file", f"bundles/{CXR}/configs/inference.json", *overrides]


def _png_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    _png(folder / "a.png", GRAY)
    return folder


def test_fresh_clone_inference_says_to_make_sample_data_then_weights(tmp_path):
    clone = _fresh_clone(tmp_path)
    _assert_one_line(
        *_command(clone, *_bundle_run()),
        f"input not found: bundles/{CXR}/sample_data/images",
        f"medzoo sample-data bundles/{CXR}",
        f"--config_file bundles/{CXR}/configs/sample_data.json",
    )
    _png_folder(clone / "bundles" / CXR / "sample_data" / "images")
    _assert_one_line(
        *_command(clone, *_bundle_run()),
        f"no weights at bundles/{CXR}/models/model.pt",
        f"medzoo init-weights bundles/{CXR}",
    )
    assert not (clone / "bundles" / CXR / "eval").exists()


@pytest.mark.parametrize("mistake", ["missing input", "empty folder", "missing weights", "weights of another network"])
def test_inference_mistake_is_one_line(tmp_path, mistake):
    clone = _fresh_clone(tmp_path)
    images = _png_folder(tmp_path / "images")
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, other)
    (tmp_path / "empty").mkdir()
    overrides, expected = {
        "missing input": (["--input", str(tmp_path / "nowhere")], [f"input not found: {tmp_path / 'nowhere'}"]),
        "empty folder": (
            ["--input", str(tmp_path / "empty")],
            ["no input files ending in .png", str(tmp_path / "empty")],
        ),
        "missing weights": (
            ["--input", str(images), "--ckpt_path", str(tmp_path / "absent.pt")],
            [f"no weights at {tmp_path / 'absent.pt'}", "--ckpt_path"],
        ),
        "weights of another network": (
            ["--input", str(images), "--ckpt_path", str(other)],
            [f"weights in {other} do not fit the DenseNet121 network", "1 unexpected"],
        ),
    }[mistake]
    _assert_one_line(*_command(clone, *_bundle_run(*overrides, "--output_dir", str(tmp_path / "eval"))), *expected)
    assert not (tmp_path / "eval").exists()


class _Pickled:
    """An object whose unpickling calls ``os.system``: what a malicious checkpoint holds."""

    def __reduce__(self):
        import os

        return (os.system, ("echo unpickled",))


#: Weight files a user may pass that the zoo cannot use: writer, and a text the one-line error must hold.
BAD_WEIGHTS = {
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "unsafe pickle": (lambda p: torch.save({"w": _Pickled()}, p), "is not a safe checkpoint"),
    "not weights": (lambda p: p.write_text("not a checkpoint\n"), "is neither a torch checkpoint nor a safetensors"),
    "no tensors": (lambda p: torch.save({"epoch": 3}, p), "does not hold a state dict of tensors"),
    "bad safetensors": (
        lambda p: p.with_suffix(".safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{garbage"),
        "is not a readable safetensors file",
    ),
}


def _bad_weights(folder: Path, kind: str) -> Path:
    write, _ = BAD_WEIGHTS[kind]
    path = folder / ("bad.safetensors" if kind == "bad safetensors" else "bad.pt")
    write(path)
    return path


@pytest.mark.parametrize("kind", sorted(BAD_WEIGHTS))
def test_unusable_weights_are_a_user_error_naming_the_file(tmp_path, kind):
    from medzoo.errors import UserError
    from medzoo.weights import load_state_dict

    path = _bad_weights(tmp_path, kind)
    with pytest.raises(UserError) as raised:
        load_state_dict(path)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 360 + len(str(path)), message
    assert message.startswith(str(path)) and BAD_WEIGHTS[kind][1] in message, message
    assert "torch.save(model.state_dict(), path)" in message and "unpickled" not in message


@pytest.mark.parametrize("kind", ["empty", "unsafe pickle", "not weights"])
def test_unusable_weights_are_one_line_from_both_commands(tmp_path, kind):
    clone = _fresh_clone(tmp_path)
    images = _png_folder(tmp_path / "images")
    weights = _bad_weights(tmp_path, kind)
    overrides = ["--input", str(images), "--ckpt_path", str(weights), "--output_dir", str(tmp_path / "eval")]
    _assert_one_line(*_command(clone, *_bundle_run(*overrides)), str(weights), BAD_WEIGHTS[kind][1])
    assert not (tmp_path / "eval").exists()
    status, stdout, stderr = _command(clone, "-m", "medzoo.cli", "convert-weights", str(weights), "out.safetensors")
    _assert_one_line(status, stdout, stderr, str(weights), BAD_WEIGHTS[kind][1])
    assert "unpickled" not in stdout + stderr and not (clone / "out.safetensors").exists()


def test_a_bug_keeps_its_traceback(tmp_path):
    clone = _fresh_clone(tmp_path)
    images = _png_folder(tmp_path / "images")
    weights = tmp_path / "init.pt"
    from medzoo.weights import write_init_weights
    from medzoo.zoo import Bundle

    write_init_weights(Bundle(CXR), weights)
    failing = "$monai.transforms.Lambdad(keys='pred', func=lambda x: 1 / 0)"
    status, stdout, stderr = _command(
        clone,
        *_bundle_run(
            "--input", str(images), "--ckpt_path", str(weights), "--postprocessing", failing, "--num_workers", "0"
        ),
    )
    assert status not in (0, 2) and "Traceback" in stderr and "ZeroDivisionError" in stderr
    assert "error: " not in stderr


def test_medzoo_commands_report_mistakes_in_one_line(tmp_path):
    clone = _fresh_clone(tmp_path)
    _assert_one_line(
        *_command(clone, "-m", "medzoo.cli", "export", f"bundles/{CXR}"),
        f"weights file not found: {clone / 'bundles' / CXR / 'models' / 'model.pt'}",
        f"medzoo init-weights bundles/{CXR}",
    )
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, other)
    _assert_one_line(
        *_command(clone, "-m", "medzoo.cli", "export", f"bundles/{CXR}", "--weights", str(other)),
        f"weights in {other} do not fit the DenseNet121 network",
    )
    assert not list((clone / "bundles" / CXR / "models").glob("model.*"))


def test_only_user_errors_are_shortened():
    from medzoo.errors import UserValueError, exit_on_user_error, find_user_error

    with pytest.raises(KeyError), exit_on_user_error():
        raise KeyError("a bug, not a user mistake")
    with pytest.raises(SystemExit) as stopped, exit_on_user_error():
        try:
            raise UserValueError("the cause")
        except UserValueError as e:
            raise RuntimeError("Failed to evaluate ConfigExpression") from e
    assert stopped.value.code == 2
    try:
        raise KeyError("x")
    except KeyError as e:
        assert find_user_error(e) is None


# ------------------------------------------------------------------ check_hardening: inputs read the checked way


MSD = "msd_unet3d_segmentation"
#: How msd_unet3d_segmentation's inference.json read its volumes before it used the checked loader: MONAI's
#: ``LoadImaged`` into a plain ``Dataset`` (a truncated file stopped the run, a NaN volume was segmented).
UNCHECKED_READING = {
    "preprocessing#transforms#0": {"_target_": "LoadImaged", "keys": "image", "ensure_channel_first": True},
    "dataset": {
        "_target_": "Dataset",
        "data": "$medzoo.data.list_inputs(@input, ['.nii', '.nii.gz'], datalist_key='test')",
        "transform": "@preprocessing",
    },
}


@pytest.mark.parametrize("changed", [["preprocessing#transforms#0"], ["dataset"], list(UNCHECKED_READING)])
def test_hardening_check_refuses_inputs_read_another_way(tmp_path, changed):
    import shutil

    from medzoo.hardening_checks import check_hardening
    from medzoo.zoo import Bundle

    copy = tmp_path / MSD
    shutil.copytree(Bundle(MSD).root, copy, ignore=shutil.ignore_patterns("sample_data", "eval", "*.pt"))
    check_hardening(Bundle(copy))
    config = json.loads((copy / "configs" / "inference.json").read_text())
    for id_ in changed:
        *parents, last = id_.split("#")
        parent = config
        for key in parents:
            parent = parent[int(key)] if isinstance(parent, list) else parent[key]
        parent[int(last) if isinstance(parent, list) else last] = UNCHECKED_READING[id_]
    (copy / "configs" / "inference.json").write_text(json.dumps(config, indent=4))
    message = (
        "reads inputs with LoadImaged, unchecked"
        if "preprocessing#transforms#0" in changed
        else "'dataset' is Dataset, not a medzoo.data.GuardedDataset"
    )
    with pytest.raises(ValueError, match=message):
        check_hardening(Bundle(copy))


def test_pretrained_checkpoints_of_another_kind_are_user_errors(tmp_path):
    """A SimCLR or MedicalNet checkpoint argument that names a file of another kind is the user's mistake: a
    UserError naming the file (a ValueError too, for callers that catch that)."""
    from monai.networks.nets import DenseNet121

    from medzoo.errors import UserError
    from medzoo.ssl.model import load_simclr_encoder
    from medzoo.volume.medicalnet import read_medicalnet_checkpoint

    other = tmp_path / "densenet.pt"
    torch.save(DenseNet121(2, 1, 2).state_dict(), other)
    with pytest.raises(UserError, match=f"{other}: no tensors under"):
        load_simclr_encoder(DenseNet121(2, 1, 2), other)
    torch.save({"state_dict": {}}, tmp_path / "empty_state.pt")
    with pytest.raises(UserError, match="does not hold a MedicalNet state dict"):
        read_medicalnet_checkpoint(tmp_path / "empty_state.pt")
