"""The checks ``edgefer debug`` makes before it runs anything: the FP32 ONNX and the INT8 artifact
are the FP32 and INT8 of one model (metadata, source hash, classes, preprocessing, input shape), and
the dataset's classes are ones the model predicts. Each failure is a one-line
:class:`~edgefer.errors.QuantizationError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgefer.errors import QuantizationError
from edgefer.quantize.graph import input_name


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".xml":
        return "openvino"
    if suffix in (".engine", ".plan", ".trt"):
        raise QuantizationError(
            f"{path.name} is a TensorRT engine, whose intermediate tensors are fused away: debug the Q/DQ ONNX it "
            "was built from, or on the device use Polygraphy (polygraphy run <int8_qdq.onnx> --trt --onnxrt "
            "--trt-outputs mark all --onnx-outputs mark all)"
        )
    raise QuantizationError(f"{path.name}: the INT8 artifact must be a Q/DQ .onnx or an OpenVINO INT8 .xml")


def check_inputs(fp32_onnx: Path, int8: Path) -> tuple[Any, Any, str]:
    """Both files exist, are FP32 and INT8 of the same model interface; returns both metadata and the INT8 kind."""
    from edgefer.metadata import read_metadata

    for what, p in (("FP32 ONNX", fp32_onnx), ("INT8 artifact", int8)):
        if not p.is_file():
            raise QuantizationError(f"{what} {p} does not exist")
    if fp32_onnx.suffix.lower() != ".onnx":
        raise QuantizationError(f"{fp32_onnx.name}: the FP32 model must be the FP32 .onnx")
    kind = _kind(int8)
    meta, qmeta = read_metadata(fp32_onnx), read_metadata(int8)
    if meta.precision != "fp32":
        raise QuantizationError(f"{fp32_onnx.name} is {meta.precision}, not the FP32 ONNX")
    if qmeta.precision != "int8":
        raise QuantizationError(f"{int8.name} is {qmeta.precision}, not an INT8 artifact: nothing to debug")
    if meta.model_name != qmeta.model_name:
        raise QuantizationError(
            f"{int8.name} is a {qmeta.model_name} but {fp32_onnx.name} a {meta.model_name}: not the FP32 model "
            "it was quantized from, so a layer-by-layer comparison means nothing"
        )
    _check_source(fp32_onnx, int8, meta, qmeta)
    if tuple(meta.class_names) != tuple(qmeta.class_names):
        raise QuantizationError(
            f"{fp32_onnx.name} predicts {len(meta.class_names)} classes {list(meta.class_names)} but {int8.name} "
            f"{len(qmeta.class_names)} {list(qmeta.class_names)}: they are not the same model"
        )
    s, qs = meta.preprocessing.input_size, qmeta.preprocessing.input_size
    if s != qs:
        raise QuantizationError(f"{fp32_onnx.name} takes {s} px inputs but {int8.name} {qs} px: not the same model")
    if meta.preprocessing != qmeta.preprocessing:
        raise QuantizationError(
            f"{fp32_onnx.name} and {int8.name} record different preprocessing: not the same model's FP32 and INT8"
        )
    return meta, qmeta, kind


def _check_source(fp32_onnx: Path, int8: Path, meta: Any, qmeta: Any) -> None:
    """The INT8 artifact records the sha256 of the FP32 ONNX it was quantized from
    (``source_onnx_sha256``): it must be this file, or an export of the same checkpoint (both
    record the same ``source_checkpoint_sha256``; ``quantize --checkpoint`` exports into a scratch
    folder that is gone afterwards). An INT8 model quantized from other weights of the same
    architecture has the same layers and shapes, and would get a confident, meaningless ranking
    and an ``ignore.json`` that ``quantize --ignore-from`` accepts (issue 26)."""
    from edgefer.utils.io import sha256_file

    source_sha = qmeta.source_onnx_sha256
    if not source_sha:
        raise QuantizationError(
            f"{int8.name} does not record which FP32 ONNX it was quantized from (no source_onnx_sha256 in its "
            f"metadata), so it cannot be checked against {fp32_onnx.name}: quantize it again with edgefer quantize"
        )
    sha = sha256_file(fp32_onnx)
    ckpt, qckpt = meta.source_checkpoint_sha256, qmeta.source_checkpoint_sha256
    if source_sha.lower() != sha and not (ckpt and ckpt == qckpt):
        raise QuantizationError(
            f"{int8.name} was quantized from another FP32 ONNX (source_onnx_sha256 {source_sha[:12]}...), not "
            f"from {fp32_onnx.name} ({sha[:12]}...), nor from an export of the same checkpoint: give debug the "
            "FP32 ONNX quantize started from"
        )


def check_data_classes(meta: Any, dataset: Any) -> tuple[str, ...]:
    """The dataset's classes; each must be one the model predicts (matched by name, not position)."""
    from edgefer.errors import DatasetError
    from edgefer.labels import CLASS_NAMES

    names = tuple(getattr(dataset, "class_names", ()) or ()) or CLASS_NAMES
    try:
        meta.class_map(names)
    except DatasetError as exc:
        raise QuantizationError(str(exc)) from None
    return names


def check_shapes(fp_model: Any, int8: Path, kind: str) -> None:
    """The two graphs take the same input shape (static dimensions compared; a dynamic one matches any)."""

    def dims_onnx(model: Any) -> list[Any]:
        inp = next(i for i in model.graph.input if i.name == input_name(model))
        return [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]

    fp_dims = dims_onnx(fp_model)
    if kind == "onnx":
        import onnx

        q_dims = dims_onnx(onnx.load(str(int8), load_external_data=False))
    else:
        import openvino as ov

        pshape = ov.Core().read_model(str(int8)).input(0).get_partial_shape()
        q_dims = [d.get_length() if d.is_static else None for d in pshape]
    same = len(fp_dims) == len(q_dims) and all(
        a is None or b is None or a == b for a, b in zip(fp_dims, q_dims, strict=False)
    )
    if not same:
        raise QuantizationError(f"the FP32 ONNX takes input {fp_dims} but {int8.name} {q_dims}: not the same model")
