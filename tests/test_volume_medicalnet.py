"""MedicalNet import: checkpoints made here in exactly MedicalNet's layout give the source network's features."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from medzoo.volume.medicalnet import (
    load_medicalnet_encoder,
    medicalnet_to_monai,
    read_medicalnet_checkpoint,
)
from medzoo.volume.networks import MedicalNetResNet
from medzoo.zoo import Bundle

BLOCKS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}


# A reference network with MedicalNet's encoder layout, written here from its description (Chen et al. 2019):
# stem 7x7x7 stride 2, max pool, layer1-4 with strides 1, 2, 1, 1 and dilations 1, 1, 2, 4, shortcut "A" (zero-pad)
# or "B" (1x1 conv + BN), and the segmentation head conv_seg. It stands in for the published checkpoints.
class _Shortcut(nn.Module):
    def __init__(self, kind: str, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.kind, self.out_channels, self.stride = kind, out_channels, stride
        if kind == "B":
            self.conv = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm3d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "B":
            return self.conv(x)
        x = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        return torch.cat([x, x.new_zeros(x.shape[0], self.out_channels - x.shape[1], *x.shape[2:])], dim=1)


class _Block(nn.Module):
    def __init__(
        self, bottleneck: bool, inplanes: int, planes: int, stride: int, dilation: int, shortcut: _Shortcut | None
    ) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        out = planes * (4 if bottleneck else 1)
        d = dilation
        if bottleneck:
            self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
            self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=d, dilation=d, bias=False)
            self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
            self.bn3 = nn.BatchNorm3d(out)
        else:
            self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=d, dilation=d, bias=False)
            self.conv2 = nn.Conv3d(planes, planes, 3, padding=d, dilation=d, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm3d(planes), nn.BatchNorm3d(planes)
        # MedicalNet stores the type "B" shortcut as ``downsample.0`` (conv) and ``downsample.1`` (BN)
        self.downsample = shortcut.conv if shortcut is not None and shortcut.kind == "B" else None
        self.shortcut_a = shortcut if shortcut is not None and shortcut.kind == "A" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(F.relu(out)))
        residual = (
            self.downsample(x)
            if self.downsample is not None
            else self.shortcut_a(x)
            if self.shortcut_a is not None
            else x
        )
        return F.relu(out + residual)


class _MedicalNetReference(nn.Module):
    def __init__(self, depth: int, shortcut: str, num_seg_classes: int = 2) -> None:
        super().__init__()
        bottleneck = depth >= 50
        expansion = 4 if bottleneck else 1
        self.conv1 = nn.Conv3d(1, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        inplanes = 64
        for index, (planes, blocks, stride, dilation) in enumerate(
            zip((64, 128, 256, 512), BLOCKS[depth], (1, 2, 1, 1), (1, 1, 2, 4))
        ):
            layer = []
            for b in range(blocks):
                needs = b == 0 and (stride != 1 or inplanes != planes * expansion)
                sc = _Shortcut(shortcut, inplanes, planes * expansion, stride) if needs else None
                layer.append(_Block(bottleneck, inplanes, planes, stride if b == 0 else 1, dilation, sc))
                inplanes = planes * expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
        self.conv_seg = nn.Sequential(
            nn.ConvTranspose3d(512 * expansion, 32, 2, stride=2),
            nn.BatchNorm3d(32),
            nn.ReLU(inplace=True),
            nn.Conv3d(32, 32, 3, padding=1, bias=False),
            nn.BatchNorm3d(32),
            nn.ReLU(inplace=True),
            nn.Conv3d(32, num_seg_classes, 1, bias=False),
        )

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool3d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _medicalnet_checkpoint(
    tmp_path: Path, depth: int, shortcut: str, with_seg_head: bool = True
) -> tuple[Path, _MedicalNetReference]:
    """A source network with random weights and BN statistics, saved as MedicalNet does: {"state_dict": module.*}."""
    torch.manual_seed(depth)
    source = _MedicalNetReference(depth, shortcut).eval()
    for module in source.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    state = {f"module.{k}": v for k, v in source.state_dict().items() if with_seg_head or not k.startswith("conv_seg.")}
    path = tmp_path / f"resnet_{depth}.pth"
    torch.save({"state_dict": state}, path)
    return path, source


@pytest.mark.parametrize(("depth", "shortcut"), [(10, "B"), (18, "A"), (50, "B")])
def test_converted_network_computes_medicalnet_features(tmp_path, depth, shortcut):
    path, source = _medicalnet_checkpoint(tmp_path, depth, shortcut)
    assert any(k.startswith("module.conv_seg.") for k in read_medicalnet_checkpoint(path))
    network = load_medicalnet_encoder(MedicalNetResNet(depth, num_classes=3, shortcut_type=shortcut), path).eval()
    x = torch.randn(2, 1, 24, 20, 16)
    with torch.no_grad():
        expected, got = source.encoder(x), network.features(x)
        logits = network(x)
    assert got.shape == expected.shape == (2, 512 * (4 if depth == 50 else 1), 3, 3, 2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert logits.shape == (2, 3)


def test_bundle_config_fine_tunes_from_a_medicalnet_checkpoint(tmp_path):
    path, source = _medicalnet_checkpoint(tmp_path, 18, "A", with_seg_head=False)
    parser = Bundle("ct_resnet3d_classification").parser(
        "train.json", medicalnet_checkpoint=str(path), resnet_depth=18, shortcut_type="A", device="$torch.device('cpu')"
    )
    network = parser.get_parsed_content("network").eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(network.features(x), source.encoder(x), atol=1e-5, rtol=1e-4)


def test_wrong_shortcut_type_is_an_error_with_a_hint(tmp_path):
    path, _ = _medicalnet_checkpoint(tmp_path, 10, "B")
    with pytest.raises(
        ValueError, match=r"unexpected.*module\.layer2\.0\.downsample\.0\.weight(.|\n)*shortcut_type 'A'"
    ):
        load_medicalnet_encoder(MedicalNetResNet(10, shortcut_type="A"), path)


def test_wrong_depth_lists_missing_keys(tmp_path):
    path, _ = _medicalnet_checkpoint(tmp_path, 10, "B")
    with pytest.raises(ValueError, match=r"missing \(\d+\): layer1\.1\.conv1\.weight"):
        load_medicalnet_encoder(MedicalNetResNet(18, shortcut_type="B"), path)


def test_wrong_shape_and_missing_tensor_are_named(tmp_path):
    path, _source = _medicalnet_checkpoint(tmp_path, 10, "B")
    state = read_medicalnet_checkpoint(path)
    del state["module.layer3.0.bn2.running_var"]
    state["module.conv1.weight"] = torch.zeros(64, 2, 7, 7, 7)
    with pytest.raises(ValueError) as info:
        medicalnet_to_monai(state, MedicalNetResNet(10, shortcut_type="B"), source="ckpt")
    assert "module.conv1.weight (64, 2, 7, 7, 7) != (64, 1, 7, 7, 7)" in str(info.value)
    assert "layer3.0.bn2.running_var" in str(info.value)


def test_unsafe_checkpoint_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "model": nn.Linear(2, 2)}, path)
    with pytest.raises(ValueError, match="not a safe checkpoint"):
        read_medicalnet_checkpoint(path)


def test_no_checkpoint_leaves_the_network_unchanged():
    network = MedicalNetResNet(10)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert load_medicalnet_encoder(network, None) is network
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
