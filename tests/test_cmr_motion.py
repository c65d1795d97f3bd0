"""Displacement-field quantities, the frozen motion network, the engines' metrics and loss adapter."""

import pytest
import torch
from torch import nn

from medzoo.cmr.engines import FoldingFraction, MaskOverlap, PhotometricReduction, StackedTargetLoss
from medzoo.cmr.motion import MotionFeatures, folding_fraction, jacobian_determinant, load_frozen, strain_magnitude
from medzoo.cmr.transforms import WarpByDDFd


def _grid(h=12, w=10):
    return torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")


def test_jacobian_and_folding():
    _, xs = _grid()
    zero = torch.zeros(1, 2, 12, 10)
    torch.testing.assert_close(jacobian_determinant(zero), torch.ones(1, 12, 10))
    assert folding_fraction(zero).tolist() == [0.0]
    mirror = torch.stack([torch.zeros_like(xs), -2 * xs])[None]  # p + u = (y, -x): orientation flips everywhere
    torch.testing.assert_close(jacobian_determinant(mirror), -torch.ones(1, 12, 10))
    half = mirror.clone()
    half[..., :5] = 0  # only the right half folds (the column at the seam has a mixed difference)
    assert folding_fraction(half).item() == pytest.approx(0.5, abs=0.11)


def test_strain_magnitude_of_a_linear_field():
    ys, xs = _grid()
    ddf = torch.stack([0.3 * ys - 0.1 * xs, 0.2 * xs + 0.4 * ys])[None]
    expected = (0.3**2 + 0.1**2 + 0.2**2 + 0.4**2) ** 0.5
    torch.testing.assert_close(strain_magnitude(ddf), torch.full((1, 1, 12, 10), expected))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        strain_magnitude(torch.zeros(1, 3, 4, 4))


class _FixedField(nn.Module):
    """A stand-in motion network returning a known displacement (B, 2, H, W), with one parameter and a BatchNorm."""

    def __init__(self, field: torch.Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.norm = nn.BatchNorm2d(2)
        self.register_buffer("field", field)

    def forward(self, x):
        return self.scale * self.field.expand(x.shape[0], -1, -1, -1)


def test_motion_features_channel_order_and_frozen_eval_mode():
    ys, xs = _grid()
    field = torch.stack([0.5 * ys, -0.25 * xs])[None]  # channel 0 along y, channel 1 along x
    features = MotionFeatures(_FixedField(field)).train()
    assert not features.motion_network.training  # stays in eval mode under .train()
    frames = torch.rand(3, 2, 12, 10)
    out = features(frames)
    assert out.shape == (3, 4, 12, 10)
    torch.testing.assert_close(out[:, 0], frames[:, 0])  # ED
    torch.testing.assert_close(out[:, 1], field[:, 1].expand(3, -1, -1))  # flow x
    torch.testing.assert_close(out[:, 2], field[:, 0].expand(3, -1, -1))  # flow y
    torch.testing.assert_close(out[:, 3], torch.full((3, 12, 10), (0.5**2 + 0.25**2) ** 0.5))
    with pytest.raises(ValueError, match=r"\[ED, ES\]"):
        features(torch.rand(1, 3, 12, 10))


def test_load_frozen_is_strict_and_freezes(tmp_path):
    net = _FixedField(torch.zeros(1, 2, 4, 4))
    torch.save(
        {"scale": torch.tensor(2.0), **{k: v for k, v in net.state_dict().items() if k != "scale"}}, tmp_path / "ok.pt"
    )
    loaded = load_frozen(_FixedField(torch.zeros(1, 2, 4, 4)), tmp_path / "ok.pt")
    assert loaded.scale.item() == 2.0 and not loaded.scale.requires_grad and not loaded.training
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match=r"wrong.pt do not fit the _FixedField network"):
        load_frozen(_FixedField(torch.zeros(1, 2, 4, 4)), tmp_path / "wrong.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_frozen(net, tmp_path / "missing.pt")


def _shifted_pair(shift=2):
    ys, xs = _grid(16, 16)
    fixed = torch.sin(xs / 2 + ys / 3)[None, None]
    moving = torch.roll(fixed, shifts=shift, dims=3)  # moving(p + shift) = fixed(p)
    ddf = torch.zeros(1, 2, 16, 16)
    ddf[:, 1] = shift
    return fixed, moving, ddf


def test_photometric_reduction_metric():
    fixed, moving, ddf = _shifted_pair()
    metric = PhotometricReduction()
    metric(y_pred=torch.zeros_like(ddf), y=torch.cat([moving, fixed], 1))
    assert metric.aggregate() == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    metric(y_pred=ddf, y=torch.cat([moving, fixed], 1))
    assert metric.aggregate() > 0.85  # only the two border columns stay wrong


def test_mask_overlap_before_and_after_and_folding_metric():
    ys, xs = _grid(16, 16)
    fixed = ((ys - 8).abs() < 4) & ((xs - 7).abs() < 4)
    fixed = fixed.float()[None, None]
    moving = torch.roll(fixed, shifts=2, dims=3)
    ddf = torch.zeros(1, 2, 16, 16)
    ddf[:, 1] = 2
    target = torch.cat([fixed, moving, fixed, moving], 1)
    before, after = MaskOverlap(after_registration=False), MaskOverlap(after_registration=True)
    before(y_pred=ddf, y=target)
    after(y_pred=ddf, y=target)
    assert before.aggregate() == pytest.approx(2 * 35 / 98) and after.aggregate() == pytest.approx(1.0)
    folding = FoldingFraction()
    folding(y_pred=ddf, y=target)
    assert folding.aggregate() == 0.0


def test_stacked_target_loss_passes_named_channels():
    seen = {}

    class Probe(nn.Module):
        def forward(self, ddf, **images):
            seen.update(images)
            return ddf.sum()

    target = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4)
    StackedTargetLoss(Probe(), ["a", "b", "c"])(torch.zeros(2, 2, 4, 4), target)
    assert list(seen) == ["a", "b", "c"] and torch.equal(seen["b"], target[:, 1:2])
    with pytest.raises(ValueError, match="3 channels, expected 2"):
        StackedTargetLoss(Probe(), ["a", "b"])(torch.zeros(2, 2, 4, 4), target)


def test_warp_by_ddf_transform():
    fixed, moving, ddf = _shifted_pair()
    out = WarpByDDFd(keys=["moving"], output_keys=["registered"], ddf_key="ddf")({"moving": moving[0], "ddf": ddf[0]})
    assert out["registered"].shape == (1, 16, 16)
    torch.testing.assert_close(out["registered"][:, :, :-2], fixed[0][:, :, :-2])


def test_metrics_json_writes_valid_json(tmp_path):
    import json
    from types import SimpleNamespace

    from medzoo.cmr.engines import MetricsJSON

    engine = SimpleNamespace(
        state=SimpleNamespace(metrics={"dice": 0.5, "hd95": float("inf"), "name": "x"}),
        data_loader=SimpleNamespace(dataset=[1, 2, 3]),
    )
    MetricsJSON(tmp_path / "m.json")(engine)
    text = (tmp_path / "m.json").read_text()
    assert "Infinity" not in text and json.loads(text) == {"dice": 0.5, "hd95": None, "num_samples": 3}
