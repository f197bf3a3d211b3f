"""Contracts of the reusable blocks in edgefer.models.blocks (tiny tensors, CPU, milliseconds)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edgefer.errors import ModelError
from edgefer.models.blocks import (
    CBAM,
    ChannelAttention,
    ImprovedHybridAttention,
    MaskBlock,
    MultiScaleFusion,
    PyConv2d,
    PyConvBasicBlock,
    PyConvBottleneck,
    Res2NetBottleneck,
    SpatialAttention,
    pyconv_groups,
)

SHAPES = [(1, 32, 7, 7), (3, 64, 13, 11), (2, 16, 28, 28)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", [ChannelAttention, SpatialAttention, CBAM, ImprovedHybridAttention])
def test_attention_keeps_shape(cls, shape):
    block = cls(shape[1]) if cls is not SpatialAttention else cls()
    x = torch.randn(shape)
    y = block.eval()(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert not torch.equal(y, x)  # it does re-weight


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_maps_in_unit_interval(shape):
    x = torch.randn(shape) * 10
    ca, sa, ha = ChannelAttention(shape[1]).eval(), SpatialAttention().eval(), ImprovedHybridAttention(shape[1]).eval()
    with torch.no_grad():
        wc, ws, wh = ca.weights(x), sa.weights(x), ha.attention(x)
    assert wc.shape == (shape[0], shape[1], 1, 1)
    assert ws.shape == (shape[0], 1, *shape[2:])
    assert wh.shape == x.shape
    for w in (wc, ws, wh):
        assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0


def test_channel_and_spatial_attention_multiply_their_maps():
    x = torch.randn(2, 32, 9, 9)
    ca, sa = ChannelAttention(32).eval(), SpatialAttention().eval()
    torch.testing.assert_close(ca(x), x * ca.weights(x))
    torch.testing.assert_close(sa(x), x * sa.weights(x))


def test_cbam_is_channel_then_spatial():
    x = torch.randn(2, 32, 9, 9)
    cbam = CBAM(32).eval()
    refined = x * cbam.channel.weights(x)
    torch.testing.assert_close(cbam(x), refined * cbam.spatial.weights(refined))


def test_improved_hybrid_is_parallel_with_identity_path():
    x = torch.randn(2, 32, 9, 9)
    ha = ImprovedHybridAttention(32).eval()
    with torch.no_grad():
        y = ha(x)
        expected = x + x * ha.channel.weights(x) * ha.spatial.weights(x)
    torch.testing.assert_close(y, expected)
    # The identity path: the attention can emphasise (gain in [1, 2]) but never erase a feature.
    ratio = (y / x)[x.abs() > 1e-3]
    assert float(ratio.min()) >= 1.0 - 1e-5 and float(ratio.max()) <= 2.0 + 1e-5


def test_spatial_attention_rejects_even_kernel():
    with pytest.raises(ModelError, match="odd"):
        SpatialAttention(kernel_size=4)


@pytest.mark.parametrize("kernels", [(3, 5, 7, 9), (3, 5, 7), (3, 5), (3,)])
@pytest.mark.parametrize("size", [7, 13, 28])
def test_pyconv_keeps_size_at_stride1_and_halves_at_stride2(kernels, size):
    conv = PyConv2d(64, 64, kernels).eval()
    x = torch.randn(2, 64, size, size)
    assert conv(x).shape == (2, 64, size, size)
    strided = PyConv2d(64, 128, kernels, stride=2).eval()
    half = math.ceil(size / 2)
    assert strided(x).shape == (2, 128, half, half)
    # Same output size as the torchvision 3x3 / stride-2 convolution it replaces.
    ref = nn.Conv2d(64, 128, 3, stride=2, padding=1)(x)
    assert strided(x).shape == ref.shape


def test_pyconv_levels_follow_the_paper():
    conv = PyConv2d(64, 64, (3, 5, 7, 9))
    assert [lv.kernel_size[0] for lv in conv.levels] == [3, 5, 7, 9]
    assert [lv.groups for lv in conv.levels] == [1, 4, 8, 16]
    assert [lv.out_channels for lv in conv.levels] == [16, 16, 16, 16]
    conv3 = PyConv2d(128, 128, (3, 5, 7))
    assert [lv.out_channels for lv in conv3.levels] == [32, 32, 64]
    assert pyconv_groups((3, 5)) == (1, 4)


def test_pyconv_rejects_bad_configs():
    with pytest.raises(ModelError, match="kernel sizes"):
        pyconv_groups((3, 11))
    with pytest.raises(ModelError, match="divisible"):
        PyConv2d(30, 30, (3, 5, 7, 9))  # 30 input channels cannot be split into 16 groups
    with pytest.raises(ModelError, match="one group count"):
        PyConv2d(64, 64, (3, 5), groups=(1,))


def test_pyconv_inherits_a_pretrained_3x3():
    src = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    single = PyConv2d(64, 64, (3,))
    assert single.inherit_from(src)
    x = torch.randn(1, 64, 8, 8)
    torch.testing.assert_close(single(x), src(x))
    pyramid = PyConv2d(64, 64, (3, 5))
    assert pyramid.inherit_from(src)
    torch.testing.assert_close(pyramid.levels[0].weight, src.weight[:32])
    assert not PyConv2d(64, 64, (3, 5)).inherit_from(nn.Conv2d(64, 64, 5, padding=2))


def test_pyconv_resnet_blocks():
    down = nn.Sequential(nn.Conv2d(64, 256, 1, stride=2, bias=False), nn.BatchNorm2d(256))
    block = PyConvBottleneck(64, 64, stride=2, downsample=down, kernels=(3, 5, 7, 9)).eval()
    assert isinstance(block.conv2, PyConv2d)
    assert block(torch.randn(2, 64, 15, 15)).shape == (2, 256, 8, 8)
    basic = PyConvBasicBlock(64, 64, kernels=(3, 5)).eval()
    assert isinstance(basic.conv1, PyConv2d) and isinstance(basic.conv2, nn.Conv2d)
    assert basic(torch.randn(2, 64, 9, 9)).shape == (2, 64, 9, 9)


@pytest.mark.parametrize("stride", [1, 2])
def test_res2net_bottleneck_shapes(stride):
    down = nn.Sequential(nn.Conv2d(64, 256, 1, stride=stride, bias=False), nn.BatchNorm2d(256))
    stage = Res2NetBottleneck(64, 64, stride=stride, downsample=down).eval()
    x = torch.randn(2, 64, 13, 13)
    out = stage(x)
    side = math.ceil(13 / stride)
    assert out.shape == (2, 256, side, side)
    normal = Res2NetBottleneck(256, 64).eval()
    assert normal(out).shape == out.shape
    assert normal.width == 64 * 26 // 64 and len(normal.convs) == 3


@pytest.mark.parametrize("img", [64, 100, 112, 224])
def test_multiscale_fusion_aligns_to_the_middle_stage(img):
    # Map sizes of a ResNet's stages 2-4 at this input size (stride-2 3x3 convs -> ceil(H/2)).
    s8 = math.ceil(math.ceil(math.ceil(img / 2) / 2) / 2)
    s16, s32 = math.ceil(s8 / 2), math.ceil(s8 / 4)
    fusion = MultiScaleFusion((32, 64, 128), 16, 48).eval()
    feats = [torch.randn(3, 32, s8, s8), torch.randn(3, 64, s16, s16), torch.randn(3, 128, s32, s32)]
    assert fusion(feats).shape == (3, 48, s16, s16)


def test_multiscale_fusion_other_targets():
    feats = [torch.randn(1, 8, 16, 16), torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)]
    assert MultiScaleFusion((8, 8, 8), 4, 12, target=0).eval()(feats).shape == (1, 12, 16, 16)
    assert MultiScaleFusion((8, 8, 8), 4, 12, target=2).eval()(feats).shape == (1, 12, 4, 4)
    with pytest.raises(ModelError, match="out of range"):
        MultiScaleFusion((8, 8), 4, 12, target=2)


@pytest.mark.parametrize("shape", [(2, 64, 28, 28), (1, 32, 13, 13), (3, 16, 7, 9)])
def test_mask_block_mask_in_unit_interval_and_applied(shape):
    block = MaskBlock(shape[1]).eval()
    x = torch.randn(shape) * 5
    m = block.mask(x).detach()
    assert m.shape == (shape[0], 1, *shape[2:])
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    torch.testing.assert_close(block(x), x + x * m)
    plain = MaskBlock(shape[1], residual=False).eval()
    torch.testing.assert_close(plain(x), x * plain.mask(x))


def test_mask_is_spatially_varying_and_trainable():
    block = MaskBlock(16)
    x = torch.randn(4, 16, 20, 20)
    block(x).square().mean().backward()
    assert block.logits.weight.grad is not None and block.logits.weight.grad.abs().sum() > 0
    m = block.eval().mask(x).detach()
    assert float(m.std()) > 0  # a map, not a constant
