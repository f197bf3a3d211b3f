"""Untrained OpenVINO INT8 IRs of registered models, for latency comparisons between designs.

Latency does not depend on the weights, so each model is built by ``create_model(name)`` and taken
through the same path a trained checkpoint takes (``edgefer.pipeline.artifacts.build_artifacts``:
FP32 ONNX -> OpenVINO IR -> NNCF PTQ on 100 synthetic images). Prints one ``.xml`` path per model,
ready for ``ov_side_by_side.py`` and ``ov_profile.py``:

    .venv/bin/python benchmarks/build_irs.py resnet50 msff_resnet50 msff_mobilenetv3 \\
        msff_mobilenetv3_lite --size 112 --work runs/irs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_bench import build_artifacts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--work", type=Path, default=Path("runs/irs"))
    args = ap.parse_args()
    for name in args.models:
        work = args.work / f"{name}_{args.size}"
        xml = work / "int8_openvino" / f"{name}_int8.xml"
        if not xml.is_file():
            work.mkdir(parents=True, exist_ok=True)
            xml = build_artifacts(work, name, args.size)["ov_int8"]
        print(xml)


if __name__ == "__main__":
    main()
