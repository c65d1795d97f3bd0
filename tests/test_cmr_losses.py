"""The photometric + smoothness loss against a direct computation of its formula; the registration loss."""

import pytest
import torch
import torch.nn.functional as F

from medzoo.cmr.losses import MultiModalRegistrationLoss
from medzoo.losses import PhotometricSmoothnessLoss


def _warp_by_hand(image, ddf):
    """m(p + u(p)) with bilinear interpolation and border padding, written out with grid_sample."""
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float), torch.arange(w, dtype=torch.float), indexing="ij")
    y, x = ys + ddf[:, 0], xs + ddf[:, 1]
    grid = torch.stack([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _diffusion_by_hand(ddf):
    """mean over batch, components and interior pixels of (du/dy)^2 + (du/dx)^2 by central differences."""
    dy = (ddf[:, :, 2:, 1:-1] - ddf[:, :, :-2, 1:-1]) / 2
    dx = (ddf[:, :, 1:-1, 2:] - ddf[:, :, 1:-1, :-2]) / 2
    return (dy**2 + dx**2).mean()


@pytest.fixture
def images():
    torch.manual_seed(0)
    fixed, moving = torch.rand(2, 1, 16, 20), torch.rand(2, 1, 16, 20)
    ddf = 2 * torch.randn(2, 2, 16, 20)
    return ddf, fixed, moving


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0), (0.7, 0.3)])
def test_l1_diffusion_matches_the_formula(images, weights):
    ddf, fixed, moving = images
    loss = PhotometricSmoothnessLoss("l1", "diffusion", photometric_weight=weights[0], smoothness_weight=weights[1])
    expected = weights[0] * (_warp_by_hand(moving, ddf) - fixed).abs().mean() + weights[1] * _diffusion_by_hand(ddf)
    torch.testing.assert_close(loss(ddf, fixed=fixed, moving=moving), expected, rtol=1e-4, atol=1e-5)


def test_bending_energy_is_zero_for_an_affine_field_and_positive_otherwise(images):
    _, fixed, _ = images
    loss = PhotometricSmoothnessLoss(smoothness="bending", photometric_weight=0.0, smoothness_weight=1.0)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    affine = torch.stack([0.1 * ys + 0.2 * xs + 1, -0.05 * xs])[None].expand(2, -1, -1, -1)
    assert loss(affine, fixed, fixed).item() == pytest.approx(0.0, abs=1e-8)
    assert loss(affine + 0.5 * torch.sin(xs), fixed, fixed).item() > 1e-3


def test_a_known_shift_is_rewarded():
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    image = torch.sin(xs / 2 + ys / 3)[None, None]
    moving = torch.roll(image, shifts=2, dims=3)  # moving(p) = image(p - 2 in x): moving(p + 2) = image(p)
    true = torch.zeros(1, 2, 16, 20)
    true[:, 1] = 2.0
    for kind in ("l1", "lncc"):
        loss = PhotometricSmoothnessLoss(kind, smoothness_weight=0.0)
        inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
        with_truth = loss.photometric_error(true, image, moving) if kind == "l1" else loss(true, image, moving)
        identity = loss(torch.zeros_like(true), image, moving)
        assert with_truth < identity, kind
        if kind == "l1":
            assert (loss.warp(moving, true) - image)[inner].abs().max() < 1e-5


def test_zero_for_identical_images_and_zero_field():
    x = torch.rand(1, 1, 8, 8)
    assert PhotometricSmoothnessLoss()(torch.zeros(1, 2, 8, 8), x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_rejects_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="photometric must be"):
        PhotometricSmoothnessLoss(photometric="l2")
    with pytest.raises(ValueError, match="smoothness must be"):
        PhotometricSmoothnessLoss(smoothness="tv")
    with pytest.raises(ValueError, match="weights must be >= 0"):
        PhotometricSmoothnessLoss(smoothness_weight=-1)
    with pytest.raises(ValueError, match="must share batch"):
        PhotometricSmoothnessLoss()(torch.zeros(1, 2, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def test_registration_loss_prefers_the_true_alignment():
    torch.manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ring = (((ys - 16) ** 2 + (xs - 16) ** 2).sqrt() - 8).abs() < 2.5
    fixed_mask = ring.float()[None, None]
    fixed = 0.3 + 0.5 * fixed_mask  # cine-like contrast
    moving_mask = torch.roll(fixed_mask, shifts=3, dims=3)
    moving = 0.9 - 0.7 * moving_mask  # inverted contrast, shifted by 3 pixels in x
    true = torch.zeros(1, 2, 32, 32)
    true[:, 1] = 3.0  # moving(p + 3) = fixed(p)
    loss = MultiModalRegistrationLoss(smoothness_weight=1.0)
    aligned = loss(true, fixed, moving, fixed_mask, moving_mask)
    identity = loss(torch.zeros_like(true), fixed, moving, fixed_mask, moving_mask)
    assert aligned < identity - 0.3
    for weights in ({"mask_weight": 0.0}, {"image_weight": 0.0}):  # each term on its own prefers the truth
        single = MultiModalRegistrationLoss(smoothness_weight=0.0, **weights)
        assert single(true, fixed, moving, fixed_mask, moving_mask) < single(
            0 * true, fixed, moving, fixed_mask, moving_mask
        )
