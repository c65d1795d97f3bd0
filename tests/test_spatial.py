"""Geometry on plain arrays (``medzoo.spatial``) and the 3D loader built on it give MONAI's transforms' results."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, LoadImaged, Orientationd, ResizeWithPadOrCrop, ResizeWithPadOrCropd, Spacingd

from medzoo.io_checks import InputFileError
from medzoo.spatial import center_fit, center_restore, resample_to_spacing
from medzoo.volume.transforms import LoadVolumed

PIXDIM, SIZE = (2.0, 2.0, 2.5), (24, 20, 16)


@pytest.mark.parametrize("source", [(44, 44), (45, 51), (48, 48), (52, 47), (53, 40)])
@pytest.mark.parametrize("mode", ["edge", "constant"])
def test_center_fit_and_restore_match_monai_resize_with_pad_or_crop(source, mode):
    image = np.random.default_rng(1).random((2, *source)).astype(np.float32)
    for target in ((48, 48), (47, 49)):
        monai_fit = ResizeWithPadOrCrop(target, mode=mode)
        fitted = monai_fit(torch.from_numpy(image))
        np.testing.assert_array_equal(center_fit(image, target, mode), fitted.numpy())
        np.testing.assert_array_equal(center_restore(fitted.numpy(), source), monai_fit.inverse(fitted).numpy())


def _affine(rng: np.random.Generator, permute: bool, oblique: bool) -> np.ndarray:
    """A voxel-to-world matrix with random spacing (1-3.5 mm, finer and coarser than PIXDIM), flips, optionally
    permuted axes and a rotation of up to ~17 degrees."""
    axes = np.eye(3)[rng.permutation(3) if permute else [0, 1, 2]] * rng.choice([-1.0, 1.0], 3)
    rotation = np.eye(3)
    if oblique:
        from scipy.spatial.transform import Rotation

        rotation = Rotation.from_euler("xyz", rng.uniform(-0.3, 0.3, 3)).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = rotation @ axes @ np.diag(rng.uniform(1.0, 3.5, 3))
    affine[:3, 3] = rng.uniform(-60, 60, 3)
    return affine


@pytest.mark.parametrize("permute, oblique", [(False, False), (True, False), (False, True), (True, True)])
def test_load_volume_gives_monai_orientation_spacing_and_fit(tmp_path, permute, oblique):
    rng = np.random.default_rng(7 + 2 * permute + oblique)
    monai_pipeline = Compose(
        [
            LoadImaged("image", ensure_channel_first=True),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=PIXDIM, mode="bilinear"),
            ResizeWithPadOrCropd("image", SIZE),
        ]
    )
    ours = LoadVolumed("image", pixdim=PIXDIM, spatial_size=SIZE, axcodes="RAS")
    for case in range(3):
        volume = rng.normal(0, 300, tuple(rng.integers(9, 30, 3))).round().astype(np.int16)
        path = tmp_path / f"case{case}.nii.gz"
        nib.save(nib.Nifti1Image(volume, _affine(rng, permute, oblique)), path)
        expected = monai_pipeline({"image": str(path)})["image"].as_tensor()
        loaded = ours({"image": str(path)})["image"]
        assert type(loaded) is torch.Tensor and loaded.dtype == torch.float32 and loaded.shape == (1, *SIZE)
        np.testing.assert_allclose(loaded.numpy(), expected.numpy(), atol=1e-3, rtol=0)


def test_resampling_to_the_volume_own_spacing_changes_nothing():
    volume = torch.randn(7, 8, 9)
    affine = np.diag([2.0, -1.5, 3.0, 1.0])
    resampled, new_affine = resample_to_spacing(volume, affine, (2.0, 1.5, 3.0))
    assert torch.equal(resampled, volume)
    np.testing.assert_allclose(new_affine, affine)


def test_resampling_needs_three_positive_spacings():
    for pixdim in ((1.0, 1.0), (1.0, 0.0, 1.0)):
        with pytest.raises(ValueError, match="pixdim must be three spacings > 0"):
            resample_to_spacing(torch.zeros(4, 4, 4), np.eye(4), pixdim)


def test_load_volume_names_the_file_and_the_problem(tmp_path):
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), flat)
    with pytest.raises(InputFileError, match=f"^{flat}: expected 3 axes"):
        LoadVolumed("image", pixdim=PIXDIM, spatial_size=SIZE)({"image": str(flat)})
    with pytest.raises(InputFileError, match="missing.nii.gz: file not found"):
        LoadVolumed("image", pixdim=PIXDIM, spatial_size=SIZE)({"image": str(tmp_path / "missing.nii.gz")})
