"""Ma & Huang 2021 "Facial expression recognition based on deep learning and attention mechanism"
(``mask_cbam_resnet``) and its ResNet-18 edge variant (``mask_cbam_resnet18``).

:class:`MaskCBAMNet` runs a ResNet-style stem and four stages; after the stages listed in
``mask_stages`` a :class:`~edgefer.models.blocks.MaskBlock` re-weights the map with a predicted
soft spatial mask, and after every stage a :class:`~edgefer.models.blocks.CBAM` refines it; then
global average pooling, dropout and a linear classifier.

The paper's "improved residual network used to obtain multi-scale feature information" is, in
our implementation, Res2Net-50 (26w x 4s, Gao et al. 2019), the standard residual network
improved for multi-scale features inside each block (:class:`~edgefer.models.blocks.Res2NetBottleneck`).
Pretrained weights: torchvision ships no Res2Net, so ``pretrained="imagenet"`` loads the ImageNet
ResNet-50 tensors whose shapes match (stem, projection shortcuts, the last BatchNorm of each
block); ``base_width=16`` gives bottlenecks whose 1x1 convolutions also match ResNet-50 (a lighter,
~16M-parameter network that reuses far more of the ImageNet weights).

``mask_cbam_resnet18`` keeps the mask blocks and CBAM on a plain, fully pretrained ResNet-18 and
drops the Res2Net split (its sequential small convolutions cost edge latency).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models.resnet import ResNet

from edgefer.errors import ModelError
from edgefer.models.blocks import CBAM, MaskBlock, Res2NetBottleneck
from edgefer.models.registration import register_model
from edgefer.models.weights import fetch_state_dict, load_matching


class MaskCBAMNet(nn.Module):
    """ResNet stem + 4 stages, each followed by an optional :class:`MaskBlock` and a :class:`CBAM`."""

    def __init__(
        self,
        net: ResNet,
        stage_channels: Sequence[int],
        num_classes: int,
        dropout: float,
        mask_stages: Sequence[int] = (1, 2),
        reduction: int = 16,
    ) -> None:
        super().__init__()
        if any(s not in (1, 2, 3, 4) for s in mask_stages):
            raise ModelError(f"mask_stages must be among 1..4, got {list(mask_stages)}")
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.masks = nn.ModuleList(
            MaskBlock(c) if i + 1 in mask_stages else nn.Identity() for i, c in enumerate(stage_channels)
        )
        self.cbams = nn.ModuleList(CBAM(c, reduction) for c in stage_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(stage_channels[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer, mask, cbam in zip(
            (self.layer1, self.layer2, self.layer3, self.layer4), self.masks, self.cbams, strict=True
        ):
            x = cbam(mask(layer(x)))
        return x

    def forward(self, x: Tensor) -> Tensor:
        f = F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)
        return self.fc(self.dropout(f))


@register_model(
    "mask_cbam_resnet",
    description="Ma & Huang 2021: mask blocks + Res2Net-50 multi-scale residual blocks + CBAM per stage",
    family="paper",
    paper_accuracy={"RAF-DB": 85.43, "FER2013": 72.84},
)
def mask_cbam_resnet(
    num_classes: int = 7,
    pretrained: str | None = None,
    dropout: float = 0.0,
    base_width: int = 26,
    mask_stages: Sequence[int] = (1, 2),
) -> nn.Module:
    net = ResNet(Res2NetBottleneck, [3, 4, 6, 3], width_per_group=base_width)
    if pretrained == "imagenet":
        load_matching(net, fetch_state_dict(tvm.ResNet50_Weights.IMAGENET1K_V1))
    return MaskCBAMNet(net, (256, 512, 1024, 2048), num_classes, dropout, mask_stages)


@register_model(
    "mask_cbam_resnet18",
    description="edge Ma & Huang: ResNet-18 + mask blocks + CBAM per stage",
    family="edge",
)
def mask_cbam_resnet18(
    num_classes: int = 7, pretrained: str | None = None, dropout: float = 0.0, mask_stages: Sequence[int] = (1, 2)
) -> nn.Module:
    net = tvm.resnet18(weights=None)
    if pretrained == "imagenet":
        net.load_state_dict(fetch_state_dict(tvm.ResNet18_Weights.IMAGENET1K_V1))
    return MaskCBAMNet(net, (64, 128, 256, 512), num_classes, dropout, mask_stages)
