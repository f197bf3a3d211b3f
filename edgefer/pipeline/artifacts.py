"""Checkpoint -> every artifact: FP32 ONNX (+ the FP32 reference), OpenVINO IRs, INT8 models.

One place for the sequence the pipeline, the benchmark scripts (``benchmarks/run_results.py``,
``benchmarks/runtime_bench.py``) and the test helpers all need: :func:`build_artifacts` runs it
end to end with the library calls the CLI makes (:func:`edgefer.export.onnx.export_onnx`,
:func:`edgefer.export.openvino.export_openvino`, :func:`edgefer.quantize.quantize`), so an
artifact built here is the artifact ``edgefer export`` / ``edgefer quantize`` would build. The
pipeline runs the same calls one stage at a time (through :func:`edgefer.deploy.export` and
:func:`edgefer.quantize.quantize` with the options each stage prints as its command line).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError
from edgefer.quantize.options import QuantizeOptions


@dataclass
class Artifacts:
    """What :func:`build_artifacts` wrote: ``openvino`` maps precision -> ``.xml``, ``int8`` maps
    target -> the :class:`edgefer.quantize.QuantizeResult` (its ``artifact`` and report)."""

    checkpoint: Path
    onnx: Path
    reference: Path | None = None
    openvino: dict[str, Path] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> list[Path]:
        """Every model artifact, checkpoint first (the order a benchmark lists them in)."""
        return [
            self.checkpoint,
            self.onnx,
            *self.openvino.values(),
            *(Path(r.artifact) for r in self.int8.values()),
        ]


def export_fp32(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    img_size: int | None = None,
    max_batch: int | None = None,
    check_parity: bool = True,
    reference_data: Any = None,
    reference_out: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[Any, Path | None]:
    """Export the FP32 ONNX and, given ``reference_data``, its FP32 reference predictions on the
    test split (``reference_out``, default ``out_dir/reference.npz``). Returns ``(ExportResult,
    reference path or None)``."""
    from edgefer.export.onnx import export_onnx

    res = export_onnx(checkpoint, out_dir, img_size=img_size, max_batch=max_batch, check_parity=check_parity, name=name)
    ref_path: Path | None = None
    if reference_data is not None:
        from edgefer.export.reference import make_reference

        ref_path = Path(reference_out) if reference_out is not None else Path(out_dir) / "reference.npz"
        make_reference(res.artifact, reference_data, split="test", out=ref_path, progress=progress)
    return res, ref_path


def export_ir(
    onnx: str | os.PathLike,
    out_dir: str | os.PathLike,
    precision: str,
    *,
    name: str | None = None,
    smoke_test: bool = True,
) -> Path:
    """The OpenVINO IR (``fp32`` or ``fp16``) of the FP32 ONNX; returns the ``.xml``."""
    from edgefer.export.openvino import export_openvino

    xml, _ = export_openvino(onnx, out_dir, precision=precision, name=name, smoke_test=smoke_test)
    return Path(xml)


def build_artifacts(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    data: Any = None,
    *,
    name: str | None = None,
    img_size: int | None = None,
    max_batch: int | None = None,
    reference: bool = False,
    openvino: Sequence[str] = ("fp32", "fp16"),
    int8: Sequence[str] = (),
    int8_options: QuantizeOptions | None = None,
    checks: bool = True,
    progress: bool = False,
) -> Artifacts:
    """Checkpoint -> FP32 ONNX (+ ``reference.npz`` when ``reference``) -> the OpenVINO IRs of
    ``openvino`` precisions -> INT8 for each of the ``int8`` targets (in ``out_dir/int8_<target>``).

    ``data`` (a dataset path or an open dataset) is needed for the reference and for INT8; the
    INT8 models start from the exported ONNX, quantized as ``int8_options`` say (method,
    calibration size, ...; their ``target`` and ``out_dir`` are set per target here).
    ``checks=False`` skips the ONNX parity check and the IR smoke inference (test fixtures that
    build many throw-away models).
    """
    if (reference or int8) and data is None:
        raise EdgeferError("the FP32 reference and INT8 quantization need a dataset: pass data")
    base = int8_options if int8_options is not None else QuantizeOptions(progress=progress)
    out = Path(out_dir)
    res, ref = export_fp32(
        checkpoint,
        out,
        name=name,
        img_size=img_size,
        max_batch=max_batch,
        check_parity=checks,
        reference_data=data if reference else None,
        progress=progress,
    )
    onnx = Path(res.artifact)
    arts = Artifacts(Path(checkpoint), onnx, ref, parity=dict(res.parity or {}))
    for precision in openvino:
        arts.openvino[precision] = export_ir(onnx, out, precision, name=name, smoke_test=checks)
    from edgefer.quantize import quantize

    for target in int8:
        opts = dataclasses.replace(base, target=target, out_dir=out / f"int8_{target}")
        arts.int8[target] = quantize(None, data, opts, onnx_path=onnx)
    return arts
