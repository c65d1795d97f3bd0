"""3D volumes: synthetic phantoms, the MSD preparer, label checks, caching datasets and intensity normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medzoo.volume.datasets import (
    check_labels,
    intensity_transform,
    labels_from_metadata,
    make_dataset,
    msd_labels,
    prepare_msd,
)
from medzoo.volume.phantoms import (
    CT_HU,
    ORGAN_LABELS,
    draw_phantom,
    generate_lesion_classification_sample,
    generate_msd_segmentation_sample,
)
from medzoo.zoo import Bundle

FOV = (96.0, 96.0, 96.0)


def _world_centroid(phantom, value: int) -> np.ndarray:
    voxels = np.argwhere(phantom.label == value).mean(0)
    return phantom.affine[:3, :3] @ voxels + phantom.affine[:3, 3]


def test_ct_phantom_has_every_organ_at_its_hounsfield_units():
    phantom = draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(0), modality="CT")
    assert phantom.image.shape == phantom.label.shape == (32, 32, 32)
    assert sorted(np.unique(phantom.label)) == sorted(ORGAN_LABELS)
    for value, organ in ORGAN_LABELS.items():
        if value:
            assert abs(float(np.median(phantom.image[phantom.label == value])) - CT_HU[organ]) < 25, organ
    assert phantom.image.min() == CT_HU["air"]  # corners are air
    assert phantom.image.std() > 100  # noise, texture and tissue contrast


def test_mri_phantom_has_zero_background_and_random_scale():
    a = draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(1), modality="MRI")
    b = draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(2), modality="MRI")
    assert a.image[0, 0, 0] == 0 and (a.image == 0).mean() > 0.1
    assert a.image.min() >= 0
    ratio = np.median(a.image[a.label == 1]) / np.median(b.image[b.label == 1])
    assert not 0.9 < ratio < 1.1  # a global scale a z-score has to remove


def test_flipped_storage_keeps_the_anatomy_in_world_coordinates():
    plain = draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(5))
    flipped = draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(5), flip_xy=True)
    np.testing.assert_array_equal(flipped.label, plain.label[::-1, ::-1])
    assert flipped.affine[0, 0] < 0 and flipped.affine[1, 1] < 0
    for value in (1, 2, 3):
        np.testing.assert_allclose(_world_centroid(flipped, value), _world_centroid(plain, value), atol=1e-6)


def test_lesion_changes_only_the_image_inside_the_liver():
    plain = draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(3))
    cyst = draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(3), lesion="cyst")
    changed = np.abs(cyst.image - plain.image) > 40
    assert changed.sum() > 20 and (plain.label[changed] == 1).all()
    with pytest.raises(ValueError, match="lesion must be"):
        draw_phantom(FOV, (3.0, 3.0, 3.0), np.random.default_rng(3), lesion="tumour")


def test_msd_sample_layout_and_preparer(tmp_path):
    root = tmp_path / "task"
    generate_msd_segmentation_sample(
        root, num_training=10, num_test=2, image_size=(24, 24, 24), spacing=(4, 4, 4), seed=1
    )
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["labels"] == {"0": "background", "1": "liver", "2": "spleen", "3": "kidney"}
    assert len(dataset["training"]) == dataset["numTraining"] == 10 and len(dataset["test"]) == 2
    shapes = {nib.load(root / e["image"]).shape for e in dataset["training"]}
    assert len(shapes) > 1  # per-case spacing varies, so do the shapes
    first = dataset["training"][0]
    image, label = nib.load(root / first["image"]), nib.load(root / first["label"])
    np.testing.assert_allclose(image.affine, label.affine)
    assert image.shape == label.shape
    assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8  # as scanners store them

    datalist = prepare_msd(root, tmp_path / "datalist.json", val_fraction=0.2, test_fraction=0.2, seed=0)
    assert json.loads((tmp_path / "datalist.json").read_text()) == datalist
    assert datalist["labels"] == msd_labels(root) == ["background", "liver", "spleen", "kidney"]
    assert [len(datalist[k]) for k in ("training", "validation", "test")] == [6, 2, 2]
    images = [e["image"] for k in ("training", "validation", "test") for e in datalist[k]]
    assert len(set(images)) == 10 and all((root / p).is_file() for p in images)
    assert check_labels(tmp_path / "datalist.json", datalist["labels"]) == datalist["labels"]


def test_preparer_names_a_missing_file_and_bad_labels(tmp_path):
    root = tmp_path / "task"
    generate_msd_segmentation_sample(root, num_training=4, num_test=0, image_size=(16, 16, 16), spacing=(6, 6, 6))
    (root / "labelsTr" / "case_002.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"case_002\.nii\.gz"):
        prepare_msd(root)
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["training"] = dataset["training"][:2]
    dataset["labels"] = {"0": "background", "2": "spleen"}
    (root / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(ValueError, match=r"label values must be 0\.\.1"):
        prepare_msd(root)
    dataset["labels"] = {"0": "background", "1": "liver"}
    (root / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(ValueError, match="too few"):
        prepare_msd(root)
    with pytest.raises(FileNotFoundError, match="no dataset.json"):
        prepare_msd(tmp_path)


def test_bundle_refuses_a_data_set_with_other_labels(tmp_path):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"labels": ["background", "tumour"]}))
    labels = labels_from_metadata(Bundle("msd_unet3d_segmentation").metadata)
    assert labels == ["background", "liver", "spleen", "kidney"]
    with pytest.raises(ValueError, match="channel_def"):
        check_labels(datalist, labels)


@pytest.mark.parametrize(
    ("num_classes", "names"), [(3, ["no_lesion", "cyst", "hyperdense_lesion"]), (2, ["no_lesion", "lesion"])]
)
def test_classification_sample_is_balanced(tmp_path, num_classes, names):
    generate_lesion_classification_sample(
        tmp_path,
        num_training=6 * num_classes,
        num_test=1,
        image_size=(16, 16, 16),
        spacing=(6, 6, 6),
        num_classes=num_classes,
    )
    datalist = prepare_msd(tmp_path, val_fraction=0.2, test_fraction=0.0)
    assert datalist["labels"] == names and datalist["test"] == []
    labels = [e["label"] for k in ("training", "validation") for e in datalist[k]]
    assert np.bincount(labels).tolist() == [6] * num_classes
    assert nib.load(tmp_path / datalist["training"][0]["image"]).get_data_dtype() == np.int16


def test_binary_override_gives_a_two_class_network():
    parser = Bundle("ct_resnet3d_classification").parser("inference.json", "binary.json")
    assert parser.get_parsed_content("labels") == ["no_lesion", "lesion"]
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        assert network(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 2)


def test_ct_window_and_mri_nonzero_zscore():
    ct = intensity_transform("CT", "image", (-100, 300))(
        {"image": torch.tensor([[-1000.0, -100.0, 100.0, 300.0, 2000.0]])}
    )
    torch.testing.assert_close(ct["image"], torch.tensor([[0.0, 0.0, 0.5, 1.0, 1.0]]))
    values = torch.tensor([[0.0, 0.0, 100.0, 200.0, 300.0, 400.0]])
    mri = intensity_transform("MRI", "image")({"image": values.clone()})["image"]
    assert (mri[values == 0] == 0).all()
    torch.testing.assert_close(mri[values > 0].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(mri[values > 0].std(unbiased=False), torch.tensor(1.0), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="modality"):
        intensity_transform("PET")
    with pytest.raises(ValueError, match="low < high"):
        intensity_transform("CT", "image", (250, -175))


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_make_dataset_caches_as_configured(tmp_path, cache):
    data = [{"image": np.full((1, 2, 2, 2), i, np.float32)} for i in range(3)]
    dataset = make_dataset(data, lambda item: {"image": torch.as_tensor(item["image"]) * 2}, cache, tmp_path / "cache")
    assert [float(dataset[i]["image"].max()) for i in range(3)] == [0.0, 2.0, 4.0]
    assert (cache == "disk") == any(Path(tmp_path / "cache").glob("*.pt"))


def test_make_dataset_rejects_unknown_cache():
    with pytest.raises(ValueError, match="cache must be"):
        make_dataset([], lambda x: x, "ram")


def test_spacingd_keeps_the_image_path_that_monai_label_adds(tmp_path):
    """MONAI's Spacingd fails on a NIfTI input that carries an ``image_path`` string (MONAI Label adds one to every
    request); the zoo's resamples exactly like MONAI's and hands the path back."""
    import monai.transforms as mt

    from medzoo.volume.transforms import Spacingd

    path = tmp_path / "case.nii.gz"
    volume = np.random.default_rng(0).random((20, 16, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 3.0, 1.0])), path)
    loaded = mt.LoadImaged("image", ensure_channel_first=True)({"image": str(path)})
    with pytest.raises(AttributeError, match="'str' object has no attribute 'update'"):
        mt.Spacingd("image", pixdim=(1.5, 1.5, 2.0))({**loaded, "image_path": str(path)})
    expected = mt.Spacingd("image", pixdim=(1.5, 1.5, 2.0))(dict(loaded))["image"]
    resampled = Spacingd("image", pixdim=(1.5, 1.5, 2.0))({**loaded, "image_path": str(path)})
    assert resampled["image_path"] == str(path)
    assert resampled["image"].shape == expected.shape and torch.equal(resampled["image"], expected)
    assert torch.allclose(resampled["image"].affine, expected.affine)
