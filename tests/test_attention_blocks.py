"""The 2D/3D attention blocks: shapes, gradients, TorchScript, and that they compute what their docstrings say."""

import pytest
import torch

from medzoo.networks.blocks import (
    CBAM,
    AttentionGate,
    ChannelAttention,
    CrossScaleAttention,
    MultiHeadSelfAttention,
    SpatialAttention,
)

SIZES = {2: (12, 10), 3: (6, 8, 4)}


def _single_map_blocks(dims):
    return {
        "channel": ChannelAttention(dims, 16, reduction=4),
        "spatial": SpatialAttention(dims, kernel_size=3),
        "cbam": CBAM(dims, 16, reduction=4, kernel_size=3),
        "mhsa": MultiHeadSelfAttention(dims, 16, num_heads=4, pool_ratios=(1, 2)),
    }


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["channel", "spatial", "cbam", "mhsa"])
def test_single_map_blocks_keep_shape_pass_gradients_and_script(dims, kind):
    torch.manual_seed(0)
    block = _single_map_blocks(dims)[kind]
    x = torch.randn(2, 16, *SIZES[dims], requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    torch.testing.assert_close(torch.jit.script(block)(x), y)


@pytest.mark.parametrize("dims", [2, 3])
def test_attention_gate_resizes_a_coarser_gate(dims):
    gate = AttentionGate(dims, skip_channels=8, gate_channels=16)
    skip = torch.randn(2, 8, *SIZES[dims], requires_grad=True)
    coarse = torch.randn(2, 16, *[s // 2 for s in SIZES[dims]], requires_grad=True)
    out = gate(skip, coarse)
    assert out.shape == skip.shape
    out.sum().backward()
    assert skip.grad.abs().sum() > 0 and coarse.grad.abs().sum() > 0
    # the gate only scales the skip connection, by a factor in (0, 1) per position shared across channels
    ratio = out / skip
    assert torch.all((ratio > 0) & (ratio < 1))
    torch.testing.assert_close(ratio[:, :1].expand_as(ratio), ratio)
    torch.testing.assert_close(torch.jit.script(gate)(skip, coarse), out)


@pytest.mark.parametrize("dims", [2, 3])
def test_cross_scale_attention_keeps_every_scale_and_mixes_them(dims):
    torch.manual_seed(0)
    block = CrossScaleAttention(dims, 16, num_scales=3, num_heads=2, kv_size=3)
    feats = [torch.randn(2, 16, *[max(1, s // 2**k) for s in SIZES[dims]], requires_grad=True) for k in range(3)]
    outs = block(feats)
    assert [o.shape for o in outs] == [f.shape for f in feats]
    # scale 0's output depends on scales 1 and 2 (it queries them)...
    outs[0].sum().backward()
    assert feats[1].grad.abs().sum() > 0 and feats[2].grad.abs().sum() > 0
    torch.testing.assert_close(torch.jit.script(block)(feats), outs)
    with pytest.raises(ValueError, match="expected 3 feature maps, got 2"):
        block(feats[:2])


def test_cross_scale_attention_trains_every_scale_module():
    block = CrossScaleAttention(2, 8, num_scales=4, num_heads=2)
    feats = [torch.randn(1, 8, s, s) for s in (8, 4, 2, 1)]
    sum(o.square().sum() for o in block(feats)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_channel_attention_is_the_formula():
    block = ChannelAttention(2, 4, reduction=2)
    x = torch.randn(3, 4, 5, 5)
    mlp = block.mlp
    expected = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    torch.testing.assert_close(block(x), expected)


def test_self_attention_attends_across_positions():
    """A change at one position changes the output at other positions: it is attention, not a pointwise map."""
    torch.manual_seed(0)
    block = MultiHeadSelfAttention(2, 8, num_heads=2, pool_ratios=(1,)).eval()
    x = torch.randn(1, 8, 9, 9)
    bumped = x.clone()
    bumped[..., 0, 0] += 5.0
    changed = (block(bumped) - block(x)).abs().sum(1)[0]
    assert changed[8, 8] > 1e-4  # far outside the 3x3 positional convolution around (0, 0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: CBAM(1, 8), "spatial_dims must be 2 or 3"),
        (lambda: SpatialAttention(2, kernel_size=4), "kernel_size must be odd"),
        (lambda: MultiHeadSelfAttention(2, 10, num_heads=4), "divisible by num_heads"),
        (lambda: MultiHeadSelfAttention(2, 8, pool_ratios=()), "pool_ratios"),
        (lambda: CrossScaleAttention(2, 8, num_scales=1), "at least 2 scales"),
    ],
)
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
