"""Post-training INT8 quantization with NNCF: one engine for every target.

* OpenVINO: ``nncf.quantize`` on the ``openvino.Model`` (converted from the FP32 ONNX) gives an IR
  with FakeQuantize ops that the CPU/GPU/NPU plugins run in INT8.
* TensorRT / ONNX: ``nncf.quantize`` on the ``onnx.ModelProto`` gives an explicit Q/DQ graph. NNCF's
  defaults pick *unsigned* (uint8) activations after ReLU and a first-layer "overflow fix" meant
  for old Intel CPUs; TensorRT wants something else, so :func:`trt_parameters` asks for what
  TensorRT executes: symmetric quantization, per-channel weights (signed, narrow range -127..127)
  and per-tensor activations, no overflow fix. NNCF's hardware configs do not allow forcing
  *activations* to be signed, so :func:`to_signed_int8` then rewrites each unsigned pair
  (uint8, zero point 0, range [0, 255*s]) as a signed one covering the same range
  (int8, zero point 0, scale 255*s/127) -- the half-resolution grid TensorRT itself uses for
  non-negative tensors, so ONNX Runtime scores the numerics TensorRT will run.
  NNCF places the pairs on the inputs of Conv/Gemm/MatMul and of residual Adds, the places
  TensorRT fuses a DQ->op->Q chain into one INT8 kernel. :func:`check_qdq` then verifies the
  graph and fails loudly if anything else slipped in.

Torch-free (docs/architecture.md: everything downstream of the ONNX file is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefer.errors import QuantizationError
from edgefer.export.targets import target_named
from edgefer.quantize.options import check_preset


def ignored_scope(ignore: Sequence[str] = (), extra_names: Sequence[str] = ()) -> Any:
    """An ``nncf.IgnoredScope`` from user regex patterns (``--ignore``) plus exact node names."""
    import nncf

    if not ignore and not extra_names:
        return None
    return nncf.IgnoredScope(names=list(extra_names), patterns=list(ignore), validate=True)


def _preset(preset: str) -> Any:
    import nncf

    return nncf.QuantizationPreset.PERFORMANCE if preset == "performance" else nncf.QuantizationPreset.MIXED


def trt_parameters() -> Any:
    """Advanced NNCF parameters for a TensorRT-compatible explicit-quantization ONNX."""
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    return AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.DISABLE,
        activations_quantization_params=QuantizationParameters(
            num_bits=8, mode=QuantizationScheme.SYMMETRIC, per_channel=False
        ),
        weights_quantization_params=QuantizationParameters(
            num_bits=8,
            mode=QuantizationScheme.SYMMETRIC,
            signedness_to_force=True,
            per_channel=True,
            narrow_range=True,
        ),
    )


def nncf_kwargs(
    target: str,
    preset: str = "performance",
    ignore: Sequence[str] = (),
    ignore_names: Sequence[str] = (),
    calib_size: int = 300,
    fast_bias_correction: bool = True,
) -> dict[str, Any]:
    """Keyword arguments shared by ``nncf.quantize`` and ``nncf.quantize_with_accuracy_control``."""
    check_preset(target, preset)
    kwargs: dict[str, Any] = {
        "preset": _preset(preset),
        "subset_size": int(calib_size),
        "fast_bias_correction": bool(fast_bias_correction),
        "ignored_scope": ignored_scope(ignore, ignore_names),
    }
    if target_named(target).int8.qdq:  # a Q/DQ ONNX for TensorRT: symmetric, per-channel weights
        kwargs["advanced_parameters"] = trt_parameters()
    return kwargs


def run_nncf(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call an NNCF entry point, turning its validation errors (bad ignored scope, ...) into ours."""
    import nncf

    try:
        return fn(*args, **kwargs)
    except (nncf.ValidationError, nncf.ParameterNotSupportedError, nncf.UnsupportedModelError) as exc:
        raise QuantizationError(f"NNCF refused the quantization setup: {exc}") from exc


def quantize_openvino(ov_model: Any, calib: Any, **kwargs: Any) -> Any:
    """INT8 PTQ of an ``openvino.Model`` (FakeQuantize IR). ``kwargs`` from :func:`nncf_kwargs`."""
    import nncf

    return run_nncf(nncf.quantize, ov_model, calib, **kwargs)


def quantize_onnx(onnx_model: Any, calib: Any, **kwargs: Any) -> Any:
    """INT8 PTQ of an ``onnx.ModelProto`` into an explicit Q/DQ graph, checked by :func:`check_qdq`."""
    import nncf

    q = run_nncf(nncf.quantize, onnx_model, calib, **kwargs)
    to_signed_int8(q)
    check_qdq(q)
    return q


def to_signed_int8(model: Any) -> int:
    """Rewrite unsigned symmetric Q/DQ pairs (uint8, zero point 0) as int8 ones, in place.

    The float range stays [0, 255*s]; the new scale is 255*s/127 and the zero point int8 0. Returns
    how many Q/DQ nodes were rewritten. An unsigned pair with a non-zero zero point is asymmetric
    and is left for :func:`check_qdq` to reject.
    """
    from onnx import TensorProto, numpy_helper

    values = _initializers(model)
    new_inits = []
    q_outputs: set[str] = set()
    changed = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = values.get(node.input[2])
        scale = values.get(node.input[1])
        if zp is None or scale is None or zp.dtype != np.uint8 or np.any(zp != 0):
            continue
        base = f"{node.name}_int8"
        new_scale = (scale.astype(np.float32) * np.float32(255.0 / 127.0)).astype(scale.dtype)
        new_inits.append(numpy_helper.from_array(new_scale, f"{base}_scale"))
        new_inits.append(numpy_helper.from_array(np.zeros_like(zp, dtype=np.int8), f"{base}_zero_point"))
        node.input[1], node.input[2] = f"{base}_scale", f"{base}_zero_point"
        if node.op_type == "QuantizeLinear":
            q_outputs.add(node.output[0])
        changed += 1
    for info in model.graph.value_info:  # the quantized tensors' declared type follows the zero point
        if info.name in q_outputs:
            info.type.tensor_type.elem_type = TensorProto.INT8
    model.graph.initializer.extend(new_inits)
    drop_unused_initializers(model)
    return changed


def fold_weight_quantizers(model: Any) -> int:
    """Store constant weights as int8 initializers: each ``QuantizeLinear(W)`` becomes its output.

    The graph then reads ``int8 W_q -> DequantizeLinear -> Conv``, 4x smaller than float weights
    plus a Q/DQ pair and what TensorRT's parser accepts. Unlike NNCF's own pass this handles a
    weight shared by several quantizers (e.g. the hybrid attention's MLP applied to both the
    average- and the max-pooled descriptor). Returns how many quantizers were folded.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    folded = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits or len(node.input) < 3:
            continue
        if node.input[1] not in inits or node.input[2] not in inits:
            continue
        x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zp = numpy_helper.to_array(inits[node.input[2]])
        if zp.dtype != np.int8:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * x.ndim
        if scale.size > 1:
            shape[axis % x.ndim] = scale.size
        q = np.rint(x / scale.reshape(shape)) + zp.astype(np.float32).reshape(shape)  # round half to even
        model.graph.initializer.append(numpy_helper.from_array(np.clip(q, -128, 127).astype(np.int8), node.output[0]))
        folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    drop_unused_initializers(model)
    return len(folded)


def drop_unused_initializers(model: Any) -> None:
    """Remove the initializers no node (and no graph output) reads."""
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def _initializers(model: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    values = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:  # NNCF may emit scales/zero points as Constant nodes
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return {k: numpy_helper.to_array(v) for k, v in values.items()}


def check_qdq(model: Any) -> dict[str, int]:
    """Verify an explicit-quantization ONNX is what TensorRT runs; return counts for the report.

    Requirements: only the standard ``QuantizeLinear``/``DequantizeLinear`` (default ONNX domain,
    no ``com.microsoft`` contrib ops, no QLinearConv/ConvInteger), every zero point int8 and 0
    (symmetric), scales positive and per-tensor for activations. Weights may be stored already
    quantized as int8 initializers feeding a DequantizeLinear (NNCF's weight compression), which
    TensorRT accepts. Raises :class:`QuantizationError` naming the offending node.
    """
    inits = _initializers(model)
    weight_names = {t.name for t in model.graph.initializer}
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0, "per_channel": 0}
    n_q = 0
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise QuantizationError(f"Q/DQ ONNX contains non-standard op {node.domain}::{node.op_type} ({node.name})")
        if node.op_type in ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"):
            raise QuantizationError(f"Q/DQ ONNX contains {node.op_type} ({node.name}); TensorRT needs explicit Q/DQ")
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        n_q += 1
        counts[node.op_type] += 1
        if len(node.input) < 3 or node.input[2] not in inits:
            raise QuantizationError(f"{node.op_type} {node.name} has no constant zero point")
        zp = inits[node.input[2]]
        scale = inits.get(node.input[1])
        if zp.dtype != np.int8:
            raise QuantizationError(f"{node.op_type} {node.name} has a {zp.dtype} zero point; TensorRT needs int8")
        if np.any(zp != 0):
            raise QuantizationError(f"{node.op_type} {node.name} has non-zero zero points (asymmetric quantization)")
        if scale is None or np.any(scale <= 0):
            raise QuantizationError(f"{node.op_type} {node.name} has a missing or non-positive scale")
        if scale.size > 1:
            counts["per_channel"] += 1
            if node.op_type == "QuantizeLinear" and node.input[0] not in weight_names:
                raise QuantizationError(f"activation quantizer {node.name} is per-channel; TensorRT needs per-tensor")
    if n_q == 0:
        raise QuantizationError("the quantized ONNX has no QuantizeLinear/DequantizeLinear nodes: nothing quantized")
    return counts


def compress_weights_openvino(ov_model: Any, ignore: Sequence[str] = ()) -> Any:
    """INT8 weights-only compression (activations stay FP32): ~4x smaller weights, no calibration."""
    import nncf

    kwargs: dict[str, Any] = {"mode": nncf.CompressWeightsMode.INT8_SYM}
    scope = ignored_scope(ignore)
    if scope is not None:
        kwargs["ignored_scope"] = scope
    return run_nncf(nncf.compress_weights, ov_model, **kwargs)


def quantized_op_names(model: Any) -> set[str]:
    """Names of the ops that consume a quantized input (OpenVINO FakeQuantize or ONNX DequantizeLinear).

    Diffing two of these sets tells which layers accuracy control put back in floating point.
    """
    kind = type(model).__module__.split(".")[0]
    names: set[str] = set()
    if kind == "onnx":
        dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        for node in model.graph.node:
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_outputs for i in node.input):
                names.add(node.name)
        return names
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("FakeQuantize", "Convert", "Multiply", "Subtract"):
            continue
        for value in op.input_values():
            src = value.get_node()
            # FakeQuantize directly, or a weight decompression chain ending in FakeQuantize's place
            if src.get_type_name() == "FakeQuantize":
                names.add(op.get_friendly_name())
                break
    return names


def nncf_dataset(x: np.ndarray, input_name: str | None = None, transform: Any = None) -> Any:
    """Wrap preprocessed images as an ``nncf.Dataset`` of single-image batches (1, 3, H, W).

    One image per item keeps NNCF's statistics per sample (its default for non-batched data) and
    makes ``subset_size`` count images. The OpenVINO backend takes the array itself; the ONNX
    backend wants ``{input_name: array}`` (pass ``input_name``); ``transform`` maps an item to any
    other model input (e.g. a torch tensor for QAT).
    """
    import nncf

    items = [x[i : i + 1] for i in range(len(x))]
    if transform is None and input_name is not None:

        def transform(item: np.ndarray) -> dict[str, np.ndarray]:
            return {input_name: item}

    return nncf.Dataset(items, transform)
