"""Keep one layer in floating point: a Q/DQ ONNX with that layer's Q/DQ removed
(:func:`keep_layer_fp`), and the agreement with FP32 it buys, layer by layer (:func:`keep_fp_rows`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgefer.errors import QuantizationError
from edgefer.quantize.debug_ranking import ranked


def keep_layer_fp(q_model: Any, node_name: str) -> Any:
    """A copy of a Q/DQ ONNX in which node ``node_name`` reads FP inputs: its activation inputs bypass
    their Q/DQ pair and its quantized weights are replaced by their dequantized float values."""
    import copy

    from onnx import numpy_helper

    model = copy.deepcopy(q_model)
    by_out = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    node = next((n for n in model.graph.node if n.name == node_name), None)
    if node is None:
        raise QuantizationError(f"node {node_name!r} is not in the Q/DQ model")
    for k, name in enumerate(node.input):
        dq = by_out.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        src = dq.input[0]
        q = by_out.get(src)
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[k] = q.input[0]  # activation (or float weight) before its Q/DQ pair
        elif src in inits and dq.input[1] in inits:  # int8 weight stored quantized: dequantize it here
            w = numpy_helper.to_array(inits[src]).astype(np.float32)
            scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
            zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 else 0.0
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            shape = [1] * w.ndim
            if np.size(scale) > 1:
                shape[axis % w.ndim] = np.size(scale)
            zp_arr = np.reshape(zp, shape) if np.size(zp) > 1 else zp
            fw = (w - zp_arr) * np.reshape(scale, shape)
            new = f"{name}_kept_fp"
            model.graph.initializer.append(numpy_helper.from_array(fw.astype(np.float32), new))
            node.input[k] = new
    return model


def keep_fp_rows(
    q_model: Any,
    layers: list[dict[str, Any]],
    sample: Any,
    fp_logits: np.ndarray,
    q_logits: np.ndarray,
    limit: int | None = None,
    align: Any = None,
) -> None:
    """Per quantized layer (the ``limit`` worst-ranked, or all): agreement (and accuracy) with FP32 when
    that layer alone is kept in FP."""
    from edgefer.quantize.evaluate import predict

    fp_top = fp_logits.argmax(1)
    base = float(np.mean(q_logits.argmax(1) == fp_top))
    for r in sorted(ranked(layers), key=lambda r: r["rank"])[:limit]:
        logits = predict(keep_layer_fp(q_model, r["name"]), sample.x)
        logits = align(logits) if align is not None else logits
        agree = float(np.mean(logits.argmax(1) == fp_top))
        r["agreement_kept_fp"] = agree
        r["agreement_gain"] = agree - base
        r["accuracy_kept_fp"] = float(np.mean(logits.argmax(1) == sample.labels))
