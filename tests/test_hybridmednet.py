"""HybridMedNet: every backbone x attention, the Vision Mamba backbone and its selective scan, gradients,
hierarchical head and loss, local pretrained weights, MAC counting, and the bundles matching their generator."""

import json

import pytest
import timm
import torch

from medzoo.losses import MultiLabelLoss
from medzoo.networks.complexity import count_macs, count_parameters
from medzoo.networks.hybridmednet import (
    ATTENTIONS,
    BACKBONES,
    CXR14_COARSE_GROUPS,
    VARIANTS,
    VIM_BACKBONES,
    HybridMedNet,
    HybridMedNetInferer,
    HybridMedNetLoss,
    coarse_group_indices,
    create_backbone,
    create_hybridmednet,
)
from medzoo.networks.vim import BidirectionalMamba, SelectiveSSM, VisionMambaBackbone, selective_scan
from medzoo.paths import BUNDLES_DIR
from medzoo.variants import hybridmednet as generator
from medzoo.variants import stale_files
from medzoo.variants.__main__ import main as write_variants_main
from medzoo.zoo import Bundle

SIZE = (64, 64)


@pytest.mark.parametrize("backbone", [*BACKBONES, *VIM_BACKBONES])
def test_every_backbone_with_every_attention_gives_14_logits(backbone):
    """One backbone build per name (the slow part), shared by the four attention choices (and both necks for ResNet)."""
    torch.manual_seed(0)
    features = create_backbone(backbone, in_channels=1, img_size=SIZE)
    x = torch.rand(2, 1, *SIZE)
    necks = ("project", "fpn") if backbone == "resnet50" else ("project",)
    for neck in necks:
        for attention in ATTENTIONS:
            net = HybridMedNet(features, attention=attention, neck=neck, width=64).eval()
            with torch.no_grad():
                out = net(x)
            assert out.shape == (2, 14), (backbone, neck, attention)
            assert torch.isfinite(out).all()
            assert not torch.allclose(out[0], out[1]), "different images must give different logits"


def test_named_variants_and_their_parts():
    net = create_hybridmednet("classic", width=64)
    assert type(net.neck).__name__ == "FPNNeck"
    assert all(type(b).__name__ == "CBAM" for b in net.attention.blocks)
    assert type(create_hybridmednet("fast", width=64).attention.blocks[0]).__name__ == "Identity"
    assert set(VARIANTS) >= {"general", "fast", "high_accuracy", "low_resource", "classic"}
    assert create_hybridmednet("convnext_tiny", attention="mhsa", width=64)(torch.rand(2, 1, *SIZE)).shape == (2, 14)


def test_selective_scan_is_the_state_space_recurrence_written_out():
    """y_t = sum_{s<=t} (prod_{k=s+1..t} exp(delta_k A)) delta_s B_s x_s . C_t + D x_t, summed term by term."""
    torch.manual_seed(0)
    batch, length, width, state = 2, 7, 3, 4
    x, delta = torch.randn(batch, length, width), torch.rand(batch, length, width) + 0.1
    A, D = -torch.rand(width, state) - 0.5, torch.randn(width)
    B, C = torch.randn(batch, length, state), torch.randn(batch, length, state)
    expected = torch.zeros(batch, length, width)
    for t in range(length):
        for s in range(t + 1):
            decay = torch.exp(delta[:, s + 1 : t + 1, :, None] * A).prod(dim=1)  # [batch, width, state]
            drive = delta[:, s, :, None] * B[:, s, None, :] * x[:, s, :, None]
            expected[:, t] += (decay * drive * C[:, t, None, :]).sum(-1)
        expected[:, t] += D * x[:, t]
    assert torch.allclose(selective_scan(x, delta, A, B, C, D), expected, atol=1e-5)


def test_vision_mamba_reads_both_directions_and_one_direction_is_causal():
    torch.manual_seed(0)
    tokens = torch.randn(1, 9, 8)
    later = tokens.clone()
    later[:, -1] += 1.0  # change only the last token
    with torch.no_grad():
        causal = SelectiveSSM(8)
        assert torch.equal(causal(tokens)[:, :-1], causal(later)[:, :-1])
        mixer = BidirectionalMamba(8)
        assert not torch.allclose(mixer(tokens)[:, 0], mixer(later)[:, 0])  # the backward scan carries it to token 0


def test_vision_mamba_backbone_gives_4_scales_scripts_and_trains():
    torch.manual_seed(0)
    backbone = create_backbone("vim_tiny", img_size=(64, 96))
    assert backbone.feature_info.channels() == [48, 96, 192, 192]
    x = torch.rand(2, 1, 64, 96)
    features = backbone.eval()(x)
    assert [tuple(f.shape) for f in features] == [
        (2, c, 64 // s, 96 // s) for c, s in zip([48, 96, 192, 192], [4, 8, 16, 32])
    ]
    scripted = torch.jit.script(backbone)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(scripted(x), features))
    net = HybridMedNet(backbone, attention="cross_scale", width=32).train()
    net(x).sum().backward()  # training recomputes each block in the backward pass
    silent = [n for n, p in net.backbone.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"no gradient: {silent}"


def test_vision_mamba_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="pretrained checkpoints are not supported for Vision Mamba"):
        create_hybridmednet("vim_small", img_size=(64, 64), pretrained=str(tmp_path / "vim.pt"))
    with pytest.raises(ValueError, match="fixed input size: give img_size"):
        create_hybridmednet("vim_tiny")
    with pytest.raises(ValueError, match="multiples of 32"):
        VisionMambaBackbone((48, 64), dim=16, depth=4)
    with pytest.raises(ValueError, match=r"built for \(64, 64\) inputs, got \[96, 96\]"):
        VisionMambaBackbone((64, 64), dim=16, depth=4)(torch.rand(1, 1, 96, 96))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"backbone": "resnet18"}, ValueError, "unknown backbone 'resnet18'"),
        ({"backbone": "resnet50", "attention": "se"}, ValueError, "unknown attention 'se'"),
        ({"backbone": "resnet50", "neck": "bifpn"}, ValueError, "unknown neck 'bifpn'"),
        ({"backbone": "swin_tiny"}, ValueError, "fixed input size: give img_size"),
    ],
)
def test_bad_options_fail_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        HybridMedNet(**kwargs)


@pytest.mark.parametrize("attention", ["cbam", "mhsa", "cross_scale"])
def test_gradients_reach_every_attention_module(attention):
    torch.manual_seed(0)
    net = HybridMedNet("efficientnetv2_s", attention=attention, width=64, num_heads=4)
    loss = MultiLabelLoss()(net(torch.rand(4, 1, *SIZE)), torch.randint(0, 2, (4, 14)).float())
    loss.backward()
    params = dict(net.attention.named_parameters())
    assert params
    detached = [n for n, p in params.items() if p.grad is None]
    assert not detached, f"{attention}: not in the graph: {detached}"
    # every attention module (each per-scale block, or each scale's query of cross-scale attention) learns
    modules = net.attention.blocks if attention != "cross_scale" else net.attention.scales
    for i, module in enumerate(modules):
        assert sum(p.grad.abs().sum() for p in module.parameters()) > 0, f"{attention}: scale {i} gets no gradient"
    assert net.fusion.scale_logits.grad.abs().sum() > 0


def test_fusion_weights_are_a_softmax_over_scales():
    net = HybridMedNet("efficientnetv2_s", width=16).eval()
    feats = [torch.zeros(1, 16, s, s) for s in (8, 4, 2, 1)]
    feats[2] = torch.ones(1, 16, 2, 2)
    for proj in net.fusion.projections:
        torch.nn.init.eye_(proj.weight.view(16, 16))
        torch.nn.init.zeros_(proj.bias)
    with torch.no_grad():
        net.fusion.scale_logits.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
        fused = net.fusion(feats)
    expected = torch.softmax(torch.tensor([0.0, 0.0, 1.0, 0.0]), 0)[2]
    assert fused.shape == (1, 16, 8, 8)
    assert torch.allclose(fused, torch.full_like(fused, expected.item()), atol=1e-6)


def test_hierarchical_head_fine_logits_read_the_coarse_logits():
    torch.manual_seed(0)
    net = HybridMedNet("efficientnetv2_s", width=32, hierarchical=True).eval()
    x = torch.rand(2, 1, *SIZE)
    with torch.no_grad():
        both = net(x, True)
        fine = net(x)
        assert both.shape == (2, 3 + 14) and torch.equal(both[:, 3:], fine)
        net.head.coarse[-1].bias.add_(5.0)  # change only the coarse logits
        assert not torch.allclose(net(x), fine)
    with pytest.raises(ValueError, match="hierarchical"):
        HybridMedNet("efficientnetv2_s", width=32)(x, True)


def test_inferer_asks_for_coarse_logits_only_when_told():
    net = HybridMedNet("efficientnetv2_s", width=32, hierarchical=True).eval()
    x = torch.rand(1, 1, *SIZE)
    with torch.no_grad():
        assert HybridMedNetInferer(return_coarse=True)(x, net).shape == (1, 17)
        assert HybridMedNetInferer()(x, net).shape == (1, 14)


def test_coarse_groups_cover_every_label_once():
    groups = coarse_group_indices()
    assert len(groups) == 3 and sorted(i for g in groups for i in g) == list(range(14))
    with pytest.raises(ValueError, match="exactly one"):
        coarse_group_indices({"a": ("Atelectasis",)})
    with pytest.raises(ValueError, match="not in the label list"):
        coarse_group_indices({**CXR14_COARSE_GROUPS, "x": ("Covid",)})


def test_hierarchical_loss_terms_by_hand():
    groups = [[0, 1], [2], [3]]
    target = torch.tensor([[1.0, 0.0, 0.0, -1.0], [0.0, -1.0, 1.0, 0.0]])
    loss = HybridMedNetLoss(coarse_groups=groups, fine_weight=0.7, coarse_weight=0.3, consistency_weight=2.0)
    # coarse: group 0 positive if any positive; all-known negatives -> 0; unknown without positive -> unknown
    assert loss.coarse_targets(target).tolist() == [[1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]
    torch.manual_seed(0)
    pred = torch.randn(2, 3 + 4)
    coarse, fine = pred[:, :3], pred[:, 3:]
    bce = MultiLabelLoss()
    p = torch.sigmoid(fine)
    group_max = torch.stack([p[:, [0, 1]].amax(1), p[:, 2], p[:, 3]], 1)
    expected = (
        0.7 * bce(fine, target)
        + 0.3 * bce(coarse, loss.coarse_targets(target))
        + 2.0 * (torch.sigmoid(coarse) - group_max).pow(2).mean()
    )
    assert torch.allclose(loss(pred, target), expected)
    with pytest.raises(ValueError, match="coarse logits first"):
        loss(fine, target)


def test_flat_loss_is_the_weighted_multilabel_loss_with_pos_weight():
    torch.manual_seed(0)
    pred, target = torch.randn(4, 14), torch.randint(0, 2, (4, 14)).float()
    weights = torch.linspace(1, 5, 14).tolist()
    assert torch.allclose(
        HybridMedNetLoss(pos_weight=weights, fine_weight=2.0)(pred, target),
        2.0 * MultiLabelLoss(pos_weight=weights)(pred, target),
    )
    assert not torch.allclose(HybridMedNetLoss(pos_weight=weights)(pred, target), HybridMedNetLoss()(pred, target))


def _full_checkpoint(path, in_chans=3, seed=1):
    torch.manual_seed(seed)
    state = timm.create_model("efficientnetv2_s", pretrained=False, in_chans=in_chans).state_dict()
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_pretrained_local_timm_checkpoint_fills_the_backbone(tmp_path, suffix):
    path = tmp_path / f"effv2s{suffix}"
    state = _full_checkpoint(path)
    net = HybridMedNet("efficientnetv2_s", width=32, pretrained=str(path))
    loaded = net.backbone.model.state_dict()
    assert torch.equal(loaded["blocks.2.0.conv_exp.weight"], state["blocks.2.0.conv_exp.weight"])
    assert torch.equal(loaded["bn1.running_var"], state["bn1.running_var"])
    # ImageNet stems take 3 channels: summed into the 1-channel stem
    assert torch.allclose(loaded["conv_stem.weight"], timm.models.adapt_input_conv(1, state["conv_stem.weight"]))
    assert not torch.equal(
        loaded["conv_stem.weight"],
        HybridMedNet("efficientnetv2_s", width=32).backbone.model.state_dict()["conv_stem.weight"],
    )


def test_pretrained_refuses_hub_weights_and_wrong_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="hub weights cannot be downloaded"):
        HybridMedNet("efficientnetv2_s", pretrained=True)
    with pytest.raises(FileNotFoundError, match="hub weights cannot be downloaded"):
        HybridMedNet("efficientnetv2_s", pretrained="imagenet")
    from safetensors.torch import save_file

    state = _full_checkpoint(tmp_path / "full.safetensors")
    incomplete = {k: v for k, v in state.items() if not k.startswith("blocks.3.")}
    save_file(incomplete, str(tmp_path / "incomplete.safetensors"))
    with pytest.raises(ValueError, match="lacks .* backbone tensors.*blocks.3"):
        HybridMedNet("efficientnetv2_s", pretrained=str(tmp_path / "incomplete.safetensors"))
    save_file({**state, "decoder.weight": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="not a 'efficientnetv2_s' checkpoint.*decoder"):
        HybridMedNet("efficientnetv2_s", pretrained=str(tmp_path / "foreign.safetensors"))
    resized = dict(state, **{"blocks.0.0.conv.weight": torch.zeros(3, 3, 3, 3)})
    save_file(resized, str(tmp_path / "resized.safetensors"))
    with pytest.raises(ValueError, match="blocks.0.0.conv.weight' has shape"):
        HybridMedNet("efficientnetv2_s", pretrained=str(tmp_path / "resized.safetensors"))


def test_count_macs_of_a_convolution_and_a_linear_layer():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    assert count_macs(conv, [1, 2, 8, 8]) == 8 * 8 * 3 * 2 * 9
    assert count_macs(torch.nn.Linear(10, 4), [5, 10]) == 5 * 10 * 4


def test_bundle_metadata_carries_counted_parameters_and_macs():
    bundle = Bundle("cxr14_hybridmednet_efficientnetv2_s_classification")
    perf = bundle.metadata["performance"]
    net = bundle.network()
    assert perf["parameters"] == count_parameters(net)
    assert perf["macs"] == count_macs(net, perf["macs_input_shape"])


def test_regenerating_the_bundles_changes_nothing(tmp_path):
    """The HybridMedNet bundles are written by ``python -m medzoo.variants`` from medzoo/variants/hybridmednet.json and
    hybridmednet_card.md: edit those, not the bundles. Regenerated into a new folder (parameters and MACs counted
    again), every file is byte-identical to the committed one."""
    assert write_variants_main(["--output_dir", str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert {p.parts[0] for p in written} == set(generator.BUNDLES) and len(generator.BUNDLES) == 5
    for relative in written:
        assert (tmp_path / relative).read_bytes() == (BUNDLES_DIR / relative).read_bytes(), (
            f"bundles/{relative} is stale: run python -m medzoo.variants"
        )
    for name, entry in generator.BUNDLES.items():
        train = json.loads((tmp_path / name / "configs" / "train.json").read_text())
        variant = VARIANTS[entry["variant"]]
        assert train["backbone"] == variant["backbone"] and train["attention"] == variant["attention"]
        inference = json.loads((tmp_path / name / "configs" / "inference.json").read_text())
        assert {k: inference[k] for k in entry["inference"]} == entry["inference"]


def test_every_bundled_variant_has_a_measured_row_in_the_comparison():
    """``docs/hybridmednet_comparison.json`` (``benchmarks/hybridmednet_compare.py``) has a row with latency and
    AUROC for the variant of every HybridMedNet bundle, and the bundle's metadata carries that row's latency."""
    rows = generator.comparison()["rows"]
    for name, entry in generator.BUNDLES.items():
        row = rows.get(entry["variant"])
        assert row is not None, f"{entry['variant']} ({name}) has no row: run benchmarks/hybridmednet_compare.py"
        assert row["latency_ms"] > 0 and 0.0 <= row["auroc"] <= 1.0, row
        assert Bundle(name).metadata["performance"]["cpu_latency_ms_batch1"] == row["latency_ms"]


def test_check_lists_a_hand_edited_bundle_file(tmp_path, monkeypatch):
    """``--check True`` fails on a bundle file edited by hand, and names it."""
    import shutil

    bundles = tmp_path / "bundles"
    weights_and_outputs = shutil.ignore_patterns("eval", "sample_data", "*.pt", "*.ts", "*.onnx", "*.safetensors")
    shutil.copytree(BUNDLES_DIR, bundles, ignore=weights_and_outputs)
    name = next(iter(generator.BUNDLES))
    perf = {
        n: json.loads((BUNDLES_DIR / n / "configs" / "metadata.json").read_text())["performance"]
        for n in generator.BUNDLES
    }
    monkeypatch.setattr(
        generator,
        "counted_performance",
        lambda variant: perf[next(n for n, e in generator.BUNDLES.items() if e["variant"] == variant)],
    )
    assert stale_files(bundles) == []
    inference = bundles / name / "configs" / "inference.json"
    inference.write_text(inference.read_text().replace('"batch_size": 2', '"batch_size": 3'))
    assert stale_files(bundles) == [inference]


def test_release_history_is_one_short_line_per_version():
    for name, entry in generator.BUNDLES.items():
        # a bundle that joined the family later keeps its own history; the others share the family's
        changelog = entry.get("changelog", generator.SPEC["changelog"])
        assert all(0 < len(text) < 100 and "\n" not in text for text in changelog.values())
        meta = json.loads((BUNDLES_DIR / name / "configs" / "metadata.json").read_text())
        assert meta["version"] == next(iter(changelog)) and list(meta["changelog"]) == list(changelog)
        assert all(0 < len(text) < 100 for text in meta["changelog"].values())
