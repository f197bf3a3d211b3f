"""Latency of candidate edge-model designs, to choose what ``msff_mobilenetv3_lite`` became.

Each candidate is the MSFF head (:class:`edgefer.models.msff.MSFFNet`: fusion at stride 16, improved
hybrid attention, classifier) on a trunk variant, untrained (latency does not depend on the
weights). Each is exported to ONNX at 112 px, converted to an OpenVINO IR and quantized by NNCF PTQ
(50 random calibration inputs), then timed by OpenVINO's own ``benchmark_app`` (latency hint, f32
inference precision, batch 1, 300 calls) in interleaved rounds; the table gives each design's
median and its median per-round ratio to the first design named.

    .venv/bin/python benchmarks/edge_design.py --rounds 3 --work runs/edge-design

The candidates (``CANDIDATES``) take the profile of ``msff_mobilenetv3`` apart one lever at a time:
squeeze-excitation, hard-swish, the final 1x1 expansion, the head width, the MobileNetV3-Small
trunk, and, for comparison, MobileNetV2 and plain ResNet-18 trunks. See benchmarks/edge_latency.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn
from torchvision import models as tvm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ov_side_by_side import benchmark_app

from edgefer.models import create_model
from edgefer.models.msff import MobileNetV3Trunk, MSFFNet, ResNetTrunk, drop_squeeze_excitation


def _relu_everywhere(net: nn.Module) -> nn.Module:
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Hardswish):
                setattr(parent, name, nn.ReLU(inplace=True))
    return net


#: torchvision MobileNetV3 variant -> (factory, cuts at strides 8/16, index of the final 1x1
#: expansion, channels at strides 8/16/32 with that expansion, stride-32 channels without it)
_MBV3 = {
    "large": (tvm.mobilenet_v3_large, (7, 13), 16, (40, 112, 960), 160),
    "small": (tvm.mobilenet_v3_small, (4, 9), 12, (24, 48, 576), 96),
}


def _mbv3(arch: str, se: bool, relu: bool, last: bool, mid: int = 96, fused: int = 512) -> nn.Module:
    """The MSFF head on a MobileNetV3 trunk with or without SE, hard-swish and the final 1x1."""
    factory, cuts, final, channels, bare = _MBV3[arch]
    net = factory(weights=None)
    if not se:
        drop_squeeze_excitation(net)
    if relu:
        _relu_everywhere(net)
    feats = net.features if last else net.features[:final]
    in_channels = channels if last else (*channels[:2], bare)
    return MSFFNet(MobileNetV3Trunk(feats, cuts), in_channels, mid, fused, 7, 0.0)


def _mbv2() -> nn.Module:
    return MSFFNet(MobileNetV3Trunk(tvm.mobilenet_v2(weights=None).features, (7, 14)), (32, 96, 1280), 96, 512, 7, 0.0)


def _resnet18() -> nn.Module:
    return MSFFNet(ResNetTrunk(tvm.resnet18(weights=None)), (128, 256, 512), 128, 512, 7, 0.0)


CANDIDATES: dict[str, Callable[[], nn.Module]] = {
    "msff_mobilenetv3 (Large, SE, hard-swish)": lambda: create_model("msff_mobilenetv3"),
    "Large, no SE": lambda: _mbv3("large", se=False, relu=False, last=True),
    "Large, no SE, ReLU": lambda: _mbv3("large", se=False, relu=True, last=True),
    "Large, no SE, ReLU, no final 1x1": lambda: _mbv3("large", se=False, relu=True, last=False),
    "Large, no SE, head 64/256": lambda: _mbv3("large", se=False, relu=False, last=True, mid=64, fused=256),
    "Small, SE, hard-swish, final 1x1": lambda: _mbv3("small", se=True, relu=False, last=True),
    "msff_mobilenetv3_lite (Small, no SE, ReLU, no final 1x1)": lambda: create_model("msff_mobilenetv3_lite"),
    "Small lite, head 64/256": lambda: _mbv3("small", se=False, relu=True, last=False, mid=64, fused=256),
    "MobileNetV2 trunk": _mbv2,
    "ResNet-18 trunk (no PyConv)": _resnet18,
}


def build_ir(name: str, work: Path, size: int = 112) -> Path:
    """ONNX -> OpenVINO IR -> NNCF INT8 of one candidate (reused when it exists)."""
    import nncf
    import numpy as np
    import openvino as ov
    import torch

    slug = "".join(c if c.isalnum() else "_" for c in name)[:60]
    xml = work / f"{slug}_int8.xml"
    if xml.is_file():
        return xml
    model = CANDIDATES[name]().eval()
    onnx = work / f"{slug}.onnx"
    torch.onnx.export(model, torch.randn(1, 3, size, size), onnx, input_names=["input"], opset_version=17, dynamo=False)
    rng = np.random.default_rng(0)
    calib = nncf.Dataset([rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(50)])
    ov.save_model(nncf.quantize(ov.convert_model(str(onnx)), calib, subset_size=50), xml)
    return xml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--work", type=Path, default=Path("runs/edge-design"))
    ap.add_argument("--only", default=None, help="comma-separated indices into CANDIDATES (0 = the reference)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    names = list(CANDIDATES)
    if args.only:
        names = [names[int(i)] for i in args.only.split(",")]
    xmls = {n: build_ir(n, args.work) for n in names}
    ms: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:
            ms[n].append(benchmark_app(xmls[n], [1, 3, 112, 112], args.iters))
        print(f"round {r + 1}: " + ", ".join(f"{v[-1]:.3f}" for v in ms.values()), file=sys.stderr)
    ref = names[0]
    print(f"| design | benchmark_app p50 ms | / {ref.split(' ')[0]} |\n| --- | ---: | ---: |")
    for n in names:
        ratio = statistics.median(a / b for a, b in zip(ms[n], ms[ref], strict=True))
        print(f"| {n} | {statistics.median(ms[n]):.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
