"""Cardiac layout: phantom generator, readers, validator and patient-wise splits."""

import gzip
import json
import os

import nibabel as nib
import numpy as np
import pytest

from medzoo.cmr.datasets import prepare_cmr, slice_index_of, validate_cmr
from medzoo.cmr.io import read_cine_frames, read_lge, read_mask_slice
from medzoo.cmr.synthetic import generate_cmr_sample
from medzoo.cmr.transforms import LoadMaskSliced
from medzoo.io_checks import InputFileError, read_nifti, read_nifti_header, save_nifti


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return generate_cmr_sample(tmp_path_factory.mktemp("cmr"), num_cases=5, slices_per_case=2, frames=6, image_size=48)


def _load(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_phantom_layout_shapes_and_masks(sample):
    cine = _load(sample / "images/cmr/case_000/slice_01.nii.gz")
    lge = _load(sample / "images/lge/case_000/slice_01.nii.gz")
    assert cine.shape == (6, 48, 48) and lge.shape == (48, 48)
    assert cine.dtype == lge.dtype == np.int16 and 0 < cine.max() < 2000  # integer magnitudes, as scanners store them
    masks = {
        name: _load(sample / f"labels/{name}/case_000.nii.gz")
        for name in ("cmr/cmr_Myo_mask", "cmr/cmr_MI_labels", "lge/lge_Myo_labels", "lge/lge_MI_labels")
    }
    for name, mask in masks.items():
        assert mask.shape == (2, 48, 48) and set(np.unique(mask)) == {0, 1}, name
    assert (masks["cmr/cmr_MI_labels"] <= masks["cmr/cmr_Myo_mask"]).all()  # scar lies in the myocardium
    assert (masks["lge/lge_MI_labels"] <= masks["lge/lge_Myo_labels"]).all()
    # LGE is misaligned against the cine: the two myocardium masks differ
    assert (masks["cmr/cmr_Myo_mask"] != masks["lge/lge_Myo_labels"]).any()


def test_phantom_contracts_and_scar_is_bright_on_lge(sample):
    cine = _load(sample / "images/cmr/case_001/slice_00.nii.gz")
    blood = cine[0] > 0.75 * cine[0].max()  # bright blood pool at end-diastole
    assert (cine[3] > 0.75 * cine[0].max()).sum() < 0.8 * blood.sum()  # smaller cavity at end-systole
    lge = _load(sample / "images/lge/case_001/slice_00.nii.gz")
    scar = _load(sample / "labels/lge/lge_MI_labels/case_001.nii.gz")[0].astype(bool)
    healthy = _load(sample / "labels/lge/lge_Myo_labels/case_001.nii.gz")[0].astype(bool) & ~scar
    assert lge[scar].mean() > 3 * lge[healthy].mean()


def test_generator_is_deterministic(tmp_path):
    a = generate_cmr_sample(tmp_path / "a", num_cases=1, slices_per_case=1, frames=2, image_size=32, seed=3)
    b = generate_cmr_sample(tmp_path / "b", num_cases=1, slices_per_case=1, frames=2, image_size=32, seed=3)
    for rel in ("images/cmr/case_000/slice_00.nii.gz", "labels/lge/lge_MI_labels/case_000.nii.gz"):
        np.testing.assert_array_equal(_load(a / rel), _load(b / rel))


def test_prepare_splits_by_patient(sample, tmp_path):
    datalist = prepare_cmr(sample, tmp_path / "datalist.json", require=["cine_myo", "lge", "lge_myo", "cine_mi"])
    assert json.loads((tmp_path / "datalist.json").read_text()) == datalist
    cases = {key: {e["case"] for e in datalist[key]} for key in ("training", "validation", "test")}
    assert all(cases.values())
    assert not (cases["training"] & cases["validation"]) and not (cases["training"] & cases["test"])
    assert not (cases["validation"] & cases["test"])
    assert sum(len(v) for v in datalist.values()) == 10  # every slice once
    entry = datalist["training"][0]
    assert {"cine", "lge", "cine_myo", "lge_myo", "lge_mi", "cine_mi", "slice_index", "case"} <= set(entry)
    assert entry["lge"].endswith(f"slice_{entry['slice_index']:02d}.nii.gz")
    assert prepare_cmr(sample, seed=0) == datalist and prepare_cmr(sample, seed=1) != datalist


def _copy(sample, tmp_path):
    import shutil

    return shutil.copytree(sample, tmp_path / "copy")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "labels/cmr/cmr_Myo_mask/case_002.nii.gz").unlink(), "case_002: missing .*cmr_Myo_mask"),
        (
            lambda d: save_nifti(
                np.full((2, 48, 48), 2, np.uint8), np.eye(4), d / "labels/cmr/cmr_Myo_mask/case_001.nii.gz"
            ),
            "case_001.nii.gz: mask values must be 0 or 1",
        ),
        (
            lambda d: save_nifti(
                np.zeros((1, 48, 48), np.uint8), np.eye(4), d / "labels/cmr/cmr_Myo_mask/case_003.nii.gz"
            ),
            "case_003.nii.gz: has 1 slices but slice index 1 is used",
        ),
        (
            lambda d: save_nifti(
                np.zeros((2, 40, 48), np.uint8), np.eye(4), d / "labels/cmr/cmr_Myo_mask/case_000.nii.gz"
            ),
            r"case_000.nii.gz: in-plane shape \(40, 48\) differs",
        ),
        (
            lambda d: save_nifti(np.zeros((48, 48), np.float32), np.eye(4), d / "images/cmr/case_004/slice_00.nii.gz"),
            "slice_00.nii.gz: expected a cine slice",
        ),
        (
            lambda d: (d / "images/lge/case_001/slice_01.nii.gz").unlink(),
            r"case_001: no LGE slice for cine slice\(s\) \[1\]",
        ),
        (
            lambda d: (d / "images/cmr/case_000/slice_01.nii.gz").write_bytes(b"not a nifti"),
            "slice_01.nii.gz: not a readable",
        ),
    ],
)
def test_validator_names_the_file_and_problem(sample, tmp_path, damage, message):
    data = _copy(sample, tmp_path)
    damage(data)
    with pytest.raises(ValueError, match=message):
        validate_cmr(data, require=("cine_myo", "lge", "lge_myo"))


def test_validator_rejects_empty_or_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cine folder"):
        validate_cmr(tmp_path)
    (tmp_path / "images/cmr").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no case folders"):
        validate_cmr(tmp_path)


def test_slice_index_from_file_name():
    assert (
        slice_index_of("a/slice_03.nii.gz") == 3
        and slice_index_of("7.nii") == 7
        and slice_index_of("sa_2_10.nii.gz") == 10
    )
    with pytest.raises(ValueError, match="no slice number"):
        slice_index_of("cine.nii.gz")


def test_readers(sample, tmp_path):
    frames = read_cine_frames(sample / "images/cmr/case_000/slice_00.nii.gz")
    assert frames.shape == (2, 48, 48) and frames.min() == 0 and frames.max() == 1
    cine = _load(sample / "images/cmr/case_000/slice_00.nii.gz")
    np.testing.assert_allclose(np.corrcoef(frames[1].ravel(), cine[3].ravel())[0, 1], 1, atol=1e-5)  # ES = T // 2
    assert read_lge(sample / "images/lge/case_000/slice_00.nii.gz").shape == (48, 48)
    assert read_mask_slice(sample / "labels/cmr/cmr_Myo_mask/case_000.nii.gz", 1).shape == (48, 48)
    with pytest.raises(ValueError, match="end-systole frame 6 out of range"):
        read_cine_frames(sample / "images/cmr/case_000/slice_00.nii.gz", es_frame=6)
    with pytest.raises(ValueError, match="slice index 2 out of range"):
        read_mask_slice(sample / "labels/cmr/cmr_Myo_mask/case_000.nii.gz", 2)
    bad = np.zeros((4, 8, 8), np.float32)
    bad[1, 2, 2] = np.nan
    save_nifti(bad, np.eye(4), tmp_path / "nan.nii.gz")
    with pytest.raises(InputFileError, match="nan.nii.gz: image contains 1 NaN"):
        read_cine_frames(tmp_path / "nan.nii.gz")
    with pytest.raises(InputFileError, match="missing.nii.gz: file not found"):
        read_lge(tmp_path / "missing.nii.gz")


def test_save_nifti_is_gzipped_and_keeps_header(tmp_path):
    affine = np.diag([8.0, 1.5, 1.5, 1.0])
    header = nib.Nifti1Image(np.zeros((3, 4, 4), np.float32), affine).header
    header["descrip"] = b"reference"
    path = save_nifti(np.ones((1, 4, 4), np.uint8), affine, tmp_path / "x.nii.gz", header=header)
    assert gzip.decompress(path.read_bytes())[:4] != b""  # a gzip stream
    image = nib.load(str(path))
    np.testing.assert_array_equal(image.affine, affine)
    assert image.header.get_zooms() == (8.0, 1.5, 1.5) and image.get_data_dtype() == np.uint8
    assert image.header["descrip"].tobytes().startswith(b"reference") and image.shape == (1, 4, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["x.nii.gz"]  # no temporary left behind


def test_read_nifti_reads_every_single_file_nifti_and_names_a_bad_one(tmp_path):
    array = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    for name, image_class in (("a.nii.gz", nib.Nifti1Image), ("b.nii", nib.Nifti1Image), ("c.nii.gz", nib.Nifti2Image)):
        nib.save(image_class(array, np.diag([2.0, 1.0, 1.0, 1.0])), tmp_path / name)
        read, affine = read_nifti(tmp_path / name, ndim=3)
        np.testing.assert_array_equal(read, array)
        header = read_nifti_header(tmp_path / name)  # the header alone, as the writers read it
        assert isinstance(header, image_class.header_class) and header.get_data_shape() == (3, 5, 7)
        assert header.get_zooms() == (2.0, 1.0, 1.0)
        np.testing.assert_array_equal(header.get_best_affine(), affine)
    raw = (tmp_path / "a.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.nii").write_bytes(b"not an image" * 40)
    with pytest.raises(InputFileError, match="cut.nii.gz: image data cannot be read, the file is truncated"):
        read_nifti(tmp_path / "cut.nii.gz", ndim=3)
    with pytest.raises(InputFileError, match="text.nii: not a readable NIfTI file"):
        read_nifti(tmp_path / "text.nii", ndim=3)
    with pytest.raises(ValueError, match="text.nii: no single-file NIfTI-1 or NIfTI-2 header"):
        read_nifti_header(tmp_path / "text.nii")


def test_mask_loader_reads_a_case_once_and_again_when_it_changes(tmp_path, monkeypatch):
    from medzoo.cmr import transforms

    reads, read_mask = [], transforms.read_mask
    monkeypatch.setattr(transforms, "read_mask", lambda path: reads.append(path) or read_mask(path))
    path = tmp_path / "case_000.nii.gz"
    save_nifti(np.stack([np.zeros((6, 6)), np.ones((6, 6))]).astype(np.uint8), np.eye(4), path)
    load = LoadMaskSliced(["myo"], ["mask"], spatial_size=(8, 8))
    first = load({"myo": str(path), "slice_index": 1})["mask"]
    assert first.shape == (1, 8, 8) and first.sum() == 36  # zero-padded to 8x8
    first.zero_()  # a consumer changing its tensor in place does not change the cached mask
    assert load({"myo": str(path), "slice_index": 1})["mask"].sum() == 36 and len(reads) == 1
    save_nifti(np.ones((2, 6, 6), np.uint8), np.eye(4), path)
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the file system's resolution
    assert load({"myo": str(path), "slice_index": 0})["mask"].sum() == 36 and len(reads) == 2
    with pytest.raises(InputFileError, match="missing.nii.gz: file not found"):
        load({"myo": str(tmp_path / "missing.nii.gz"), "slice_index": 0})
