"""FP32 ONNX -> OpenVINO IR (``.xml`` + ``.bin``), FP32 or FP16, with metadata in ``rt_info``.

``ov.convert_model`` reads the ONNX; ``ov.save_model(compress_to_fp16=...)`` writes the IR. FP16
here means FP16 *weights* (OpenVINO decompresses them and the CPU plugin computes in FP32 or
BF16/FP16 where the hardware has it), which is what OpenVINO calls an FP16 IR. The edgefer
metadata goes into ``rt_info["framework"]`` (the same flat ``to_props()`` map as the ONNX, so
:func:`edgefer.metadata.read_metadata` reads it back), and the saved IR is read again and run
once on the CPU as a smoke test, compared with the ONNX on ONNX Runtime. INT8 IRs come from the
quantization stage (:func:`edgefer.quantize.quantize`), called by :func:`edgefer.deploy.export`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgefer.errors import ExportError, require
from edgefer.export.onnx import _tmp_dir, ort_session
from edgefer.export.source import require_fp32
from edgefer.metadata import ModelMetadata, read_metadata, set_ov_metadata
from edgefer.utils.io import sha256_file
from edgefer.utils.outputs import safe_name

#: Max abs logit difference of the OpenVINO IR to the ONNX on ORT, relative to the logit scale
#: (``tol * max(1, max |logit|)``). FP32 IRs agree to ~1e-5; FP16-weight IRs to ~1e-3.
OV_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


def export_openvino(
    onnx_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    precision: str = "fp32",
    name: str | None = None,
    smoke_test: bool = True,
) -> tuple[Path, float | None]:
    """Convert the FP32 ONNX to ``out_dir/<name>_<precision>.xml`` (+ ``.bin``).

    Returns ``(xml_path, max_abs_diff_to_onnx)`` (``None`` without ``smoke_test``). INT8 is not
    done here: it needs calibration data and lives in :mod:`edgefer.quantize`.
    """
    ov = require("openvino", "openvino", "OpenVINO export")
    if precision not in ("fp32", "fp16"):
        raise ExportError(
            f"export_openvino converts fp32 or fp16, not {precision!r} (INT8 IRs come from `edgefer quantize` "
            "or `edgefer export --target openvino --precision int8 --data PATH`)"
        )
    onnx_path = Path(onnx_path)
    meta = read_metadata(onnx_path)
    require_fp32(onnx_path, meta, "OpenVINO conversion", ExportError)
    out = Path(out_dir)
    stem = f"{safe_name(name, '--name') if name else onnx_path.stem}_{precision}"
    xml, bin_ = out / f"{stem}.xml", out / f"{stem}.bin"
    ir_meta = meta.replace(precision=precision, source_onnx_sha256=sha256_file(onnx_path))
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ExportError(f"OpenVINO cannot convert {onnx_path.name}: {str(exc).strip()[:400]}") from exc
    set_ov_metadata(model, ir_meta)
    diff = None
    with _tmp_dir(out) as tmp_dir:
        staged = tmp_dir / xml.name
        ov.save_model(model, str(staged), compress_to_fp16=(precision == "fp16"))
        if smoke_test:
            diff = _smoke(staged, onnx_path, ir_meta)
        # .bin first: a reader that finds the .xml finds its weights too
        os.replace(staged.with_suffix(".bin"), bin_)
        os.replace(staged, xml)
    return xml, diff


def _smoke(xml: Path, onnx_path: Path, meta: ModelMetadata) -> float:
    """Read the saved IR back, check its metadata and run one batch on the CPU against ORT."""
    ov = require("openvino", "openvino", "OpenVINO export")
    back = read_metadata(xml)
    if back.to_dict() != meta.to_dict():
        raise ExportError(f"metadata read back from {xml.name} differs from what was written")
    batch = 2 if meta.extra.get("dynamic_batch", True) else int(meta.extra.get("batch") or 1)
    x = np.random.default_rng(0).standard_normal(meta.preprocessing.batch_shape(batch), dtype=np.float32)
    core = ov.Core()
    try:
        # f32 execution: this checks the IR itself. The CPU plugin's default hint is bf16 on CPUs
        # with BF16 support (AVX512-BF16/AMX), which alone moves logits by ~1e-2.
        config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
        got = np.asarray(compiled(x)[compiled.output(0)], dtype=np.float32)
    except Exception as exc:
        raise ExportError(f"OpenVINO smoke inference of {xml.name} failed: {str(exc).strip()[:400]}") from exc
    sess = ort_session(onnx_path)  # an imported model keeps its own tensor names
    ref = sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: x})[0]
    if got.shape != ref.shape:
        raise ExportError(f"OpenVINO output shape {got.shape} differs from the ONNX {ref.shape}")
    diff = float(np.max(np.abs(got - ref)))
    limit = OV_TOLERANCE[meta.precision] * max(1.0, float(np.max(np.abs(ref))))
    if not diff <= limit:
        raise ExportError(f"OpenVINO {meta.precision} IR differs from the ONNX by {diff:.3g} (> {limit:.3g})")
    return diff
