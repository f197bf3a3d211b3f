"""Lou 2023 "Multi-scale feature fusion facial expression recognition based on attention mechanism"
(``msff_resnet50``) and its edge variants (``msff_resnet18``, ``msff_mobilenetv3``).

All three share one head, :class:`MSFFNet`: a backbone returns the maps of its last three stages
(strides 8, 16, 32), :class:`~edgefer.models.blocks.MultiScaleFusion` aligns them at stride 16
and fuses them, :class:`~edgefer.models.blocks.ImprovedHybridAttention` re-weights the fused map,
then global average pooling, dropout and a linear classifier.

Backbones are torchvision modules so ``pretrained="imagenet"`` loads real ImageNet weights:

* ``msff_resnet50``: torchvision ResNet-50 whose bottleneck 3x3 convolutions become PyConv
  (:class:`~edgefer.models.blocks.PyConv2d`). Pretrained: every ResNet-50 tensor loads except the
  replaced 3x3 convolutions; of those, the 3x3/groups-1 PyConv level inherits the first filters of
  the pretrained 3x3 conv (all of it where a stage has the single (3,) level). Fusion, attention
  and classifier start from scratch.
* ``msff_resnet18``: the same on ResNet-18 (PyConv replaces each basic block's first 3x3).
* ``msff_mobilenetv3``: MobileNetV3-Large features (fully pretrained) without PyConv — its
  depthwise 3x3/5x5 convolutions already mix kernel sizes, and grouped large kernels would be
  the slowest ops on an edge CPU.
* ``msff_mobilenetv3_lite``: the latency-shaped edge model (issue 15): a MobileNetV3-Small trunk
  without squeeze-excitation, with ReLU throughout and without the final 1x1 expansion, under the
  same fusion, attention and classifier. Each change comes from OpenVINO's per-layer profile of
  ``msff_mobilenetv3`` (``benchmarks/edge_latency.md``): squeeze-excitation was ~18 % of the
  time and ~40 of its 108 executed nodes (a global pooling per block that cannot fuse with the
  convolution before it), per-node scheduling ~20 %, and the Large trunk's wide 1x1 expansions
  most of the rest. SE's sigmoid multiplies and hard-swish are also the known INT8 risks
  (issue 16), so the lite trunk is easier to quantize as well as faster.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3
from torchvision.models.resnet import ResNet

from edgefer.errors import ModelError
from edgefer.models.blocks import ImprovedHybridAttention, MultiScaleFusion, PyConvBasicBlock, PyConvBottleneck
from edgefer.models.registration import register_model
from edgefer.models.weights import fetch_state_dict, load_matching

#: PyConv kernel sizes per ResNet stage (layer1..layer4).
#: "paper" is PyConvResNet's (Duta et al. 2020): 4 levels in stage 1, 3, 2, then 1.
#: "edge" (the default) keeps the pyramid where the maps are large and drops the 9x9/7x7 levels,
#: whose grouped convolutions are slow on CPUs (see docs/models.md for the measurement).
#: "lite" also drops stage 3's pyramid (6 blocks), for targets where "edge" is still too slow;
#: "none" is plain 3x3 convolutions (the ablation of PyConv).
PYCONV_PRESETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "paper": ((3, 5, 7, 9), (3, 5, 7), (3, 5), (3,)),
    "edge": ((3, 5), (3, 5), (3, 5), (3,)),
    "lite": ((3, 5), (3, 5), (3,), (3,)),
    "none": ((3,), (3,), (3,), (3,)),
}


def _pyconv_stages(pyconv: str | Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    if isinstance(pyconv, str):
        if pyconv not in PYCONV_PRESETS:
            raise ModelError(f"pyconv preset must be one of {sorted(PYCONV_PRESETS)}, got {pyconv!r}")
        return PYCONV_PRESETS[pyconv]
    stages = tuple(tuple(int(k) for k in s) for s in pyconv)
    if len(stages) != 4:
        raise ModelError(f"pyconv needs kernel sizes for 4 stages, got {len(stages)}")
    return stages


class ResNetTrunk(nn.Module):
    """Stem and the four stages of a torchvision ResNet; returns the outputs of layer2..layer4
    (strides 8, 16, 32). Attribute names are torchvision's."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c2, c3, c4]


class MobileNetV3Trunk(nn.Module):
    """torchvision MobileNetV3 ``features`` cut at strides 8, 16 and 32 (returns those three maps)."""

    def __init__(self, features: nn.Sequential, cuts: tuple[int, int]) -> None:
        super().__init__()
        a, b = cuts
        self.stage8 = features[:a]
        self.stage16 = features[a:b]
        self.stage32 = features[b:]

    def forward(self, x: Tensor) -> list[Tensor]:
        c2 = self.stage8(x)
        c3 = self.stage16(c2)
        c4 = self.stage32(c3)
        return [c2, c3, c4]


class MSFFNet(nn.Module):
    """Backbone -> multi-scale fusion (stride 16) -> improved hybrid attention -> GAP -> dropout -> FC."""

    def __init__(
        self,
        trunk: nn.Module,
        in_channels: Sequence[int],
        mid_channels: int,
        fused_channels: int,
        num_classes: int,
        dropout: float,
        reduction: int = 16,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.fusion = MultiScaleFusion(in_channels, mid_channels, fused_channels, target=1)
        self.attention = ImprovedHybridAttention(fused_channels, reduction)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(fused_channels, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """The attended fused map (N, fused_channels, ceil(S/16), ceil(S/16))."""
        return self.attention(self.fusion(self.trunk(x)))

    def forward(self, x: Tensor) -> Tensor:
        f = F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)
        return self.classifier(self.dropout(f))


def _pyconv_resnet(arch: str, weights_enum, pretrained: str | None, pyconv) -> ResNet:
    net: ResNet = getattr(tvm, arch)(weights=None)
    if pretrained == "imagenet":
        net.load_state_dict(fetch_state_dict(weights_enum.IMAGENET1K_V1))
    stages = _pyconv_stages(pyconv)
    for layer, kernels in zip((net.layer1, net.layer2, net.layer3, net.layer4), stages, strict=True):
        for block in layer:
            if isinstance(block, tvm.resnet.Bottleneck):
                PyConvBottleneck.convert(block, kernels)
            else:
                PyConvBasicBlock.convert(block, kernels)
    return net


@register_model(
    "msff_resnet50",
    description="Lou 2023: PyConv ResNet-50 + multi-scale fusion of stages 2-4 + improved hybrid attention",
    family="paper",
    paper_accuracy={"RAF-DB": 83.67},
)
def msff_resnet50(
    num_classes: int = 7, pretrained: str | None = None, dropout: float = 0.0, pyconv: str = "edge"
) -> nn.Module:
    net = _pyconv_resnet("resnet50", tvm.ResNet50_Weights, pretrained, pyconv)
    return MSFFNet(ResNetTrunk(net), (512, 1024, 2048), 256, 1024, num_classes, dropout)


@register_model(
    "msff_resnet18",
    description="edge MSFF: PyConv ResNet-18 + multi-scale fusion + improved hybrid attention",
    family="edge",
)
def msff_resnet18(
    num_classes: int = 7, pretrained: str | None = None, dropout: float = 0.0, pyconv: str = "edge"
) -> nn.Module:
    net = _pyconv_resnet("resnet18", tvm.ResNet18_Weights, pretrained, pyconv)
    return MSFFNet(ResNetTrunk(net), (128, 256, 512), 128, 512, num_classes, dropout)


@register_model(
    "msff_mobilenetv3",
    description="edge MSFF: MobileNetV3-Large + multi-scale fusion + improved hybrid attention (no PyConv)",
    family="edge",
)
def msff_mobilenetv3(num_classes: int = 7, pretrained: str | None = None, dropout: float = 0.0) -> nn.Module:
    net = tvm.mobilenet_v3_large(weights=None)
    if pretrained == "imagenet":
        net.load_state_dict(fetch_state_dict(tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1))
    # torchvision builds MobileNetV3 with BatchNorm momentum 0.01 (TensorFlow's 0.99 decay). That
    # suits fine-tuning ImageNet weights for many epochs; trained from scratch for a few epochs the
    # running statistics lag the fast-changing weights so far that eval-mode accuracy sits at the
    # class prior while train accuracy climbs (measured: 41 % eval vs 75 % after recalibrating the
    # statistics). PyTorch's default 0.1 tracks them; it does not change the weights or the graph.
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    # features[:7] -> 40 ch at stride 8, [7:13] -> 112 ch at stride 16, [13:] -> 960 ch at stride 32
    trunk = MobileNetV3Trunk(net.features, cuts=(7, 13))
    return MSFFNet(trunk, (40, 112, 960), 96, 512, num_classes, dropout)


#: MobileNetV3-Small's bottlenecks (Howard et al. 2019, table 2) in torchvision's order of fields:
#: input, kernel, expanded, output channels, whether the original has squeeze-excitation, stride.
#: Built with ReLU everywhere; strides 8 / 16 / 32 end after the 3rd / 8th / 11th block.
_MBV3_SMALL: tuple[tuple[int, int, int, int, bool, int], ...] = (
    (16, 3, 16, 16, True, 2),
    (16, 3, 72, 24, False, 2),
    (24, 3, 88, 24, False, 1),
    (24, 5, 96, 40, True, 2),
    (40, 5, 240, 40, True, 1),
    (40, 5, 240, 40, True, 1),
    (40, 5, 120, 48, True, 1),
    (48, 5, 144, 48, True, 1),
    (48, 5, 288, 96, True, 2),
    (96, 5, 576, 96, True, 1),
    (96, 5, 576, 96, True, 1),
)


def drop_squeeze_excitation(module: nn.Module) -> int:
    """Replace every torchvision ``SqueezeExcitation`` under ``module`` by ``nn.Identity`` (no op in
    the exported graph); returns how many were replaced."""
    from torchvision.ops.misc import SqueezeExcitation

    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SqueezeExcitation):
                setattr(parent, name, nn.Identity())
                n += 1
    return n


@register_model(
    "msff_mobilenetv3_lite",
    description=(
        "latency-shaped edge MSFF: MobileNetV3-Small trunk without squeeze-excitation, ReLU, "
        "+ multi-scale fusion + improved hybrid attention"
    ),
    family="edge",
)
def msff_mobilenetv3_lite(num_classes: int = 7, pretrained: str | None = None, dropout: float = 0.0) -> nn.Module:
    """See the module docstring. The trunk is built with squeeze-excitation where MobileNetV3-Small
    has it and then each SE is replaced by an identity, so that the block indices (and with them
    the state-dict keys) stay torchvision's: ``pretrained="imagenet"`` loads torchvision's
    MobileNetV3-Small weights into every convolution and BatchNorm. Those weights were trained with
    SE and hard-swish, so they are a starting point for fine-tuning, not a working ImageNet network."""
    settings = [InvertedResidualConfig(i, k, e, o, se, "RE", s, 1, 1.0) for i, k, e, o, se, s in _MBV3_SMALL]
    net = MobileNetV3(settings, last_channel=1024)
    net.features[0][2] = nn.ReLU(inplace=True)  # torchvision's stem is always hard-swish
    if pretrained == "imagenet":
        load_matching(net, fetch_state_dict(tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1))
    drop_squeeze_excitation(net)
    features = net.features[:-1]  # drop the final 96 -> 576 1x1: the fusion projects stride 32 itself
    for module in features.modules():  # as msff_mobilenetv3: PyTorch's BN momentum (see there)
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    trunk = MobileNetV3Trunk(features, cuts=(4, 9))
    return MSFFNet(trunk, (24, 48, 96), 96, 512, num_classes, dropout)
