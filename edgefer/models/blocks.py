"""Reusable building blocks of the FER models: attention, pyramid convolution, multi-scale fusion, mask.

Every block is made of ops that export to ONNX (opset 17) as standard nodes and that NNCF,
OpenVINO and TensorRT quantize: Conv, BatchNorm (folded), ReLU, Sigmoid, Mul, Add, Concat,
GlobalAveragePool/GlobalMaxPool, ReduceMean/ReduceMax over channels and Resize. ``forward`` has
no data-dependent Python control flow (loops run over a fixed list of modules), so a trace at one
input size is the graph at every input size, and the batch axis stays symbolic.

Blocks and their sources:

* :class:`ChannelAttention`, :class:`SpatialAttention`, :class:`CBAM` — Woo et al., "CBAM:
  Convolutional Block Attention Module", ECCV 2018.
* :class:`ImprovedHybridAttention` — the "improved hybrid attention" of Lou, "Multi-scale feature
  fusion facial expression recognition based on attention mechanism", ISPP 2023 (our reading, see
  the class docstring).
* :class:`PyConv2d`, :class:`PyConvBottleneck`, :class:`PyConvBasicBlock` — Duta et al., "Pyramidal
  Convolution: Rethinking Convolutional Neural Networks for Visual Recognition", 2020.
* :class:`Res2NetBottleneck` — Gao et al., "Res2Net: A New Multi-scale Backbone Architecture",
  TPAMI 2019 (our "improved residual network" for Ma & Huang 2021).
* :class:`MultiScaleFusion` — the multi-scale feature fusion (MSFF) of Lou 2023.
* :class:`MaskBlock` — the mask block of Ma & Huang, "Facial expression recognition based on deep
  learning and attention mechanism", ICAIS 2021.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from edgefer.errors import ModelError

__all__ = [
    "CBAM",
    "ChannelAttention",
    "ConvBNReLU",
    "ImprovedHybridAttention",
    "MaskBlock",
    "MultiScaleFusion",
    "PyConv2d",
    "PyConvBasicBlock",
    "PyConvBottleneck",
    "Res2NetBottleneck",
    "SpatialAttention",
    "pyconv_groups",
]


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU, "same" padding; the unit the fusion heads are built from."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


def _hidden(channels: int, reduction: int) -> int:
    if reduction < 1:
        raise ModelError(f"reduction must be >= 1, got {reduction}")
    return max(channels // reduction, 8)


# --------------------------------------------------------------------------------------------------
# Attention (CBAM and the improved hybrid attention)
# --------------------------------------------------------------------------------------------------


class ChannelAttention(nn.Module):
    """CBAM channel attention (Woo et al. 2018): ``x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``.

    The shared MLP is two 1x1 convolutions (C -> C/r -> C, ReLU between), the same arithmetic as
    the paper's fully connected layers but without a Flatten/Reshape in the ONNX graph. The hidden
    width is at least 8 so that very narrow inputs keep a useful bottleneck (the paper is silent).
    :meth:`weights` returns the (N, C, 1, 1) channel weights in [0, 1].
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=True),
        )

    def weights(self, x: Tensor) -> Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + mx)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class SpatialAttention(nn.Module):
    """CBAM spatial attention (Woo et al. 2018): ``x * sigmoid(conv7x7([mean_c(x), max_c(x)]))``.

    Channel-wise mean and max (ReduceMean/ReduceMax in ONNX) give a 2-channel map; a k x k
    convolution (k=7 as in the paper) with BatchNorm turns it into one logit per position.
    :meth:`weights` returns the (N, 1, H, W) map in [0, 1].
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ModelError(f"spatial attention kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def weights(self, x: Tensor) -> Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.bn(self.conv(desc)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel attention, then spatial
    attention on the channel-refined map (the paper's sequential, channel-first order).

    Difference from the paper: the paper inserts CBAM inside every residual block; our models
    place one CBAM at the end of each stage (4 per network instead of 16), which keeps the idea and
    most of its effect at a quarter of the extra latency on edge CPUs.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))


class ImprovedHybridAttention(nn.Module):
    """The improved hybrid (channel + spatial) attention of Lou 2023, as we implement it.

    Computes ``y = x + x * Mc(x) * Ms(x)`` where ``Mc`` is CBAM's channel attention map
    (N, C, 1, 1) and ``Ms`` CBAM's spatial attention map (N, 1, H, W), both in [0, 1].

    The paper says only that the hybrid attention is "improved" and learns channel and spatial
    weights. We make two changes to CBAM, each for a stated reason:

    1. **Parallel branches on the same input** (as in BAM, Park et al. 2018) instead of CBAM's
       channel-then-spatial chain: the spatial map is computed from the features themselves, not
       from features already re-weighted by a still-untrained channel branch, and the two maps
       combine by one broadcast multiply (no sequential dependency, cheaper on edge targets).
    2. **An identity (residual) path** ``x + x*A`` as in the Residual Attention Network (Wang et
       al. 2017): a plain sigmoid gate can only attenuate, and stacked gates shrink features and
       gradients; with the identity path the attention can emphasise regions (gain 1..2) but never
       erase the fused features, which matters when it sits right before the classifier.

    Output shape equals input shape. ONNX: GlobalAveragePool, GlobalMaxPool, ReduceMean,
    ReduceMax, Conv, Sigmoid, Mul, Add.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def attention(self, x: Tensor) -> Tensor:
        """The combined (N, C, H, W) attention map ``Mc * Ms`` in [0, 1]."""
        return self.channel.weights(x) * self.spatial.weights(x)

    def forward(self, x: Tensor) -> Tensor:
        return x + x * self.attention(x)


# --------------------------------------------------------------------------------------------------
# Pyramidal convolution
# --------------------------------------------------------------------------------------------------

#: Groups that PyConv (Duta et al. 2020) pairs with each kernel size: bigger kernel, more groups.
_PYCONV_GROUPS = {3: 1, 5: 4, 7: 8, 9: 16}


def pyconv_groups(kernels: Sequence[int]) -> tuple[int, ...]:
    """The paper's group count for each kernel size (3->1, 5->4, 7->8, 9->16)."""
    try:
        return tuple(_PYCONV_GROUPS[k] for k in kernels)
    except KeyError as exc:
        raise ModelError(f"PyConv kernel sizes must be among {sorted(_PYCONV_GROUPS)}, got {list(kernels)}") from exc


def _pyconv_splits(out_ch: int, levels: int) -> list[int]:
    # The paper's split: 4 levels -> 1/4 each, 3 levels -> 1/4, 1/4, 1/2, 2 levels -> 1/2 each.
    if levels == 3:
        return [out_ch // 4, out_ch // 4, out_ch - 2 * (out_ch // 4)]
    base = out_ch // levels
    return [base] * (levels - 1) + [out_ch - base * (levels - 1)]


class PyConv2d(nn.Module):
    """Pyramidal convolution (Duta et al. 2020): parallel convolutions with growing kernels and
    growing group counts on the same input, outputs concatenated along channels.

    With ``kernels=(3, 5, 7, 9)`` and ``groups=(1, 4, 8, 16)`` each level produces a quarter of
    the output channels; larger kernels see more context, and more groups keep their cost close to
    the 3x3 level's. Padding is ``k // 2`` so a stride-1 PyConv keeps H x W and a stride-2 one
    gives ceil(H/2) x ceil(W/2), exactly like the 3x3 convolution it replaces.

    :meth:`inherit_from` copies a pretrained 3x3 convolution into the 3x3 / groups-1 level (its
    first ``out/levels`` filters), so ImageNet weights are not thrown away when PyConv replaces a
    torchvision block's 3x3 convolution; with a single (3,) level the copy is exact.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernels: Sequence[int] = (3, 5, 7, 9),
        groups: Sequence[int] | None = None,
        stride: int = 1,
    ) -> None:
        super().__init__()
        kernels = tuple(kernels)
        groups = tuple(groups) if groups is not None else pyconv_groups(kernels)
        if not kernels or len(groups) != len(kernels):
            raise ModelError(f"PyConv needs one group count per kernel, got kernels={kernels} groups={groups}")
        splits = _pyconv_splits(out_ch, len(kernels))
        for k, g, o in zip(kernels, groups, splits, strict=True):
            if k % 2 != 1 or in_ch % g or o % g or o < 1:
                raise ModelError(
                    f"PyConv level k={k}, groups={g} does not fit in={in_ch}, out={o}: kernel must be odd and "
                    "both channel counts divisible by the groups"
                )
        self.kernels = kernels
        self.groups = groups
        self.levels = nn.ModuleList(
            nn.Conv2d(in_ch, o, k, stride=stride, padding=k // 2, groups=g, bias=False)
            for k, g, o in zip(kernels, groups, splits, strict=True)
        )
        for conv in self.levels:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    @torch.no_grad()
    def inherit_from(self, conv: nn.Conv2d) -> bool:
        """Copy ``conv``'s filters into the matching 3x3 / groups-1 level; False if none matches."""
        for level in self.levels:
            w = level.weight
            if (
                level.kernel_size == (3, 3)
                and level.groups == 1
                and conv.kernel_size == (3, 3)
                and conv.groups == 1
                and conv.in_channels == level.in_channels
                and conv.out_channels >= level.out_channels
            ):
                w.copy_(conv.weight[: level.out_channels])
                return True
        return False

    def forward(self, x: Tensor) -> Tensor:
        if len(self.levels) == 1:
            return self.levels[0](x)
        return torch.cat([level(x) for level in self.levels], dim=1)


def _replace_conv(old: nn.Conv2d, kernels: Sequence[int]) -> PyConv2d:
    new = PyConv2d(old.in_channels, old.out_channels, kernels, stride=old.stride[0])
    new.inherit_from(old)
    return new


class _PyConvBlock(nn.Module):
    """What the PyConv ResNet blocks share: build torchvision's block, then swap one of its 3x3
    convolutions (named by ``_pyconv_attr``) for a :class:`PyConv2d`.

    The swap re-assigns an existing attribute, so the state-dict keys, their order and the parameter
    initialisation order are those of the subclass's torchvision block; only that convolution changes.
    Subclasses list this class first and a torchvision block second (the cooperative ``super()``
    chain reaches the torchvision ``__init__``).
    """

    _pyconv_attr = ""  # set by each subclass

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        kernels: Sequence[int] = (3, 5, 7, 9),
    ) -> None:
        super().__init__(inplanes, planes, stride=stride, downsample=downsample)  # type: ignore[call-arg]
        self._swap_in_pyconv(self, kernels)

    @classmethod
    def _swap_in_pyconv(cls, block: nn.Module, kernels: Sequence[int]) -> None:
        setattr(block, cls._pyconv_attr, _replace_conv(getattr(block, cls._pyconv_attr), kernels))

    @classmethod
    def convert(cls, block: nn.Module, kernels: Sequence[int]) -> nn.Module:
        """Turn an existing (possibly pretrained) torchvision block into a PyConv one in place."""
        cls._swap_in_pyconv(block, kernels)
        return block


class PyConvBottleneck(_PyConvBlock, Bottleneck):
    """torchvision's ResNet bottleneck (1x1 -> 3x3 -> 1x1, expansion 4, stride on the 3x3) with the
    3x3 convolution replaced by a :class:`PyConv2d` (the PyConvResNet block of Duta et al. 2020).

    The attribute names are torchvision's (conv1/bn1/conv2/bn2/conv3/bn3/downsample), so an ImageNet
    ResNet-50 state dict loads into everything except ``conv2`` (use :meth:`convert` or
    :meth:`PyConv2d.inherit_from` to reuse part of it).
    """

    _pyconv_attr = "conv2"


class PyConvBasicBlock(_PyConvBlock, BasicBlock):
    """torchvision's ResNet basic block with its first (possibly strided) 3x3 convolution replaced by
    a :class:`PyConv2d`; the second 3x3 stays a plain convolution.

    Duta et al. also offer a basic block with PyConv in both positions; we convert only the first
    for edge latency (it is the one that sets the receptive field at a stride), and the second keeps
    its ImageNet weights intact.
    """

    _pyconv_attr = "conv1"


# --------------------------------------------------------------------------------------------------
# Res2Net bottleneck (multi-scale residual block)
# --------------------------------------------------------------------------------------------------


class Res2NetBottleneck(nn.Module):
    """Res2Net bottleneck (Gao et al. 2019): the 3x3 convolution of a ResNet bottleneck replaced by
    ``scale`` channel splits with hierarchical residual-like connections, so one block mixes
    receptive fields of 3, 5, 7, ... pixels (multi-scale features at a fine granularity).

    Signature and attribute names follow torchvision's Bottleneck so that
    ``torchvision.models.resnet.ResNet(Res2NetBottleneck, [3, 4, 6, 3], width_per_group=26)`` builds
    Res2Net-50 (26w x 4s); ``width_per_group`` is Res2Net's ``baseWidth``. With
    ``width_per_group=16`` the 1x1 convolutions have ResNet-50's shapes. The first block of a stage
    (where ``downsample`` is set) uses the paper's "stage" form: every split gets its own 3x3
    (strided) convolution without the hierarchical sum, and the last split is average-pooled.
    """

    expansion = 4
    scale = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 26,
        dilation: int = 1,
        norm_layer: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or dilation != 1:
            raise ModelError("Res2NetBottleneck supports groups=1 and dilation=1 only")
        norm = norm_layer or nn.BatchNorm2d
        width = planes * base_width // 64
        if width < 1:
            raise ModelError(f"Res2Net width is 0 for planes={planes}, base_width={base_width}")
        s = self.scale
        self.width = width
        self.is_stage = downsample is not None or stride != 1
        self.conv1 = nn.Conv2d(inplanes, width * s, 1, bias=False)
        self.bn1 = norm(width * s)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False) for _ in range(s - 1)
        )
        self.bns = nn.ModuleList(norm(width) for _ in range(s - 1))
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if self.is_stage else nn.Identity()
        self.conv3 = nn.Conv2d(width * s, planes * self.expansion, 1, bias=False)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        splits = torch.split(out, self.width, dim=1)
        outs: list[Tensor] = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            sp = splits[i] if (i == 0 or self.is_stage) else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        outs.append(self.pool(splits[-1]))
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        return self.relu(out + identity)


# --------------------------------------------------------------------------------------------------
# Multi-scale feature fusion and the mask block
# --------------------------------------------------------------------------------------------------


class MultiScaleFusion(nn.Module):
    """Multi-scale feature fusion (MSFF, Lou 2023): feature maps of consecutive stages (strides
    s, 2s, 4s, ...) are brought to the resolution of the ``target`` map and a common channel count
    ``mid_channels``, concatenated, and fused by a 1x1 convolution to ``out_channels``.

    * maps finer than the target: stride-2 3x3 Conv-BN-ReLU, once per factor of 2. Its output is
      ceil(H/2), exactly what the backbone's own stride-2 3x3 convolutions produce, so sizes agree
      at every input size (64, 100, 112, 224, ...) without any resize;
    * the target map: 1x1 Conv-BN-ReLU;
    * coarser maps: 1x1 Conv-BN-ReLU at their own (cheap) resolution, then nearest-neighbour
      ``F.interpolate(size=target.shape[-2:])`` (an ONNX Resize whose size comes from the target's
      Shape, so it is right for any input size and batch).

    The paper does not say how the maps are aligned; we fuse at the middle stage's resolution
    (stride 16): finer than the last stage's (4x4 at 112 px is too coarse for a spatial attention
    map) and much cheaper than the first stage's. Concatenation + 1x1 (rather than a sum) lets the
    network weigh the scales per channel.
    """

    def __init__(self, in_channels: Sequence[int], mid_channels: int, out_channels: int, target: int = 1) -> None:
        super().__init__()
        in_channels = list(in_channels)
        if not 0 <= target < len(in_channels):
            raise ModelError(f"fusion target index {target} out of range for {len(in_channels)} inputs")
        self.target = target
        branches: list[nn.Module] = []
        for i, c in enumerate(in_channels):
            if i < target:
                layers = [
                    ConvBNReLU(c if j == 0 else mid_channels, mid_channels, 3, stride=2) for j in range(target - i)
                ]
                branches.append(nn.Sequential(*layers))
            else:
                branches.append(ConvBNReLU(c, mid_channels, 1))
        self.branches = nn.ModuleList(branches)
        self.fuse = ConvBNReLU(mid_channels * len(in_channels), out_channels, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        aligned = [branch(f) for branch, f in zip(self.branches, feats, strict=True)]
        ref = aligned[self.target]
        size = ref.shape[-2:]
        out = [F.interpolate(a, size=size, mode="nearest") if i > self.target else a for i, a in enumerate(aligned)]
        return self.fuse(torch.cat(out, dim=1))


class MaskBlock(nn.Module):
    """Mask block (Ma & Huang 2021): predicts a soft spatial mask ``M`` in [0, 1] that emphasises
    expression regions (eyes, brows, mouth) and multiplies it into the features:
    ``y = x * (1 + M)``.

    The paper gives no layer-level design; ours is a small encoder-decoder like the soft-mask branch
    of the Residual Attention Network (Wang et al. 2017): 3x3 Conv-BN-ReLU, a stride-2 3x3
    Conv-BN-ReLU (doubles the receptive field so the mask sees facial parts, not texture), a 1x1
    conv to one logit map, bilinear upsampling back to the input size and a sigmoid. One mask
    channel is shared by all feature channels (a spatial mask, cheap to quantize and easy to
    visualise with :meth:`mask`). The identity term keeps features outside the mask instead of
    zeroing them, so a freshly initialised mask does not cut the signal (the paper's plain product
    is ``residual=False``).
    """

    def __init__(self, channels: int, mid_channels: int | None = None, residual: bool = True) -> None:
        super().__init__()
        mid = mid_channels or max(channels // 4, 16)
        self.encoder = nn.Sequential(ConvBNReLU(channels, mid, 3), ConvBNReLU(mid, mid, 3, stride=2))
        self.logits = nn.Conv2d(mid, 1, 1, bias=True)
        self.residual = residual

    def mask(self, x: Tensor) -> Tensor:
        """The (N, 1, H, W) soft mask in [0, 1] at the input's resolution."""
        m = self.logits(self.encoder(x))
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(m)

    def forward(self, x: Tensor) -> Tensor:
        m = self.mask(x)
        return x + x * m if self.residual else x * m
