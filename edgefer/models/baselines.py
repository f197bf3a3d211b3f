"""Plain torchvision ResNet baselines, so the benchmark shows what each paper idea costs and buys."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from edgefer.models.registration import register_model


def _resnet(arch: str, weights_enum, num_classes: int, pretrained: str | None, dropout: float) -> nn.Module:
    weights = weights_enum.IMAGENET1K_V1 if pretrained == "imagenet" else None
    net = getattr(tvm, arch)(weights=weights)
    net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, num_classes))
    return net


@register_model("resnet18", description="torchvision ResNet-18 baseline", family="baseline")
def resnet18(num_classes: int = 7, pretrained: str | None = None, dropout: float = 0.0) -> nn.Module:
    return _resnet("resnet18", tvm.ResNet18_Weights, num_classes, pretrained, dropout)


@register_model("resnet50", description="torchvision ResNet-50 baseline", family="baseline")
def resnet50(num_classes: int = 7, pretrained: str | None = None, dropout: float = 0.0) -> nn.Module:
    return _resnet("resnet50", tvm.ResNet50_Weights, num_classes, pretrained, dropout)
