"""Capturing every intermediate tensor of the FP32 ONNX and of the INT8 artifact on the sample:
ONNX Runtime's ``qdq_loss_debug`` helpers for ONNX (and the quantizers' SQNR), ``Model.add_outputs``
for an OpenVINO IR, and the memory check that refuses a sample whose tensors would not fit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import QuantizationError
from edgefer.quantize.graph import input_name
from edgefer.utils.limits import memory_budget


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader``-style iterable: one image per run."""

    def __init__(self, name: str, x: np.ndarray) -> None:
        self._items = [{name: np.ascontiguousarray(x[i : i + 1])} for i in range(len(x))]
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self._items):
            return None
        self._pos += 1
        return self._items[self._pos - 1]

    def __iter__(self) -> Any:
        return iter(self._items)


def onnx_activations(path: Path, x: np.ndarray, scratch: Path) -> dict[str, np.ndarray]:
    """Every float tensor of an ONNX model on ``x`` (one image per run), as {name: (N, -1) array}."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors

    augmented = scratch / f"{path.stem}.augmented.onnx"
    modify_model_output_intermediate_tensors(str(path), str(augmented))
    name = input_name(onnx.load(str(path), load_external_data=False))
    acts = collect_activations(str(augmented), _Reader(name, x))
    return {k: np.stack([np.asarray(a).reshape(-1) for a in v]) for k, v in acts.items() if len(v) == len(x)}


def _qdq_rename(model: Any, acts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename NNCF's DQ outputs of activations to ONNX Runtime's ``<x>_DequantizeLinear_Output`` convention."""
    from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX

    inits = {t.name for t in model.graph.initializer}
    q_of = {n.output[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    out = dict(acts)
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] not in out:
            continue
        q = q_of.get(node.input[0])
        if q is None or q.input[0] in inits:
            continue  # a weight (stored int8, or Q of an initializer)
        out[q.input[0] + DEQUANT_OUTPUT_SUFFIX] = out.pop(node.output[0])
    return out


def qdq_sqnr(model: Any, qdq_acts: dict[str, np.ndarray], fp_acts: dict[str, np.ndarray]) -> dict[str, float]:
    """ONNX Runtime's SQNR (dB) of each activation quantizer alone (its input vs its Q/DQ output)."""
    from onnxruntime.quantization.qdq_loss_debug import compute_activation_error, create_activation_matching

    renamed = _qdq_rename(model, qdq_acts)
    matching = create_activation_matching(
        {k: list(v) for k, v in renamed.items()}, {k: list(v) for k, v in fp_acts.items()}
    )
    matching = {k: m for k, m in matching.items() if "float" in m}
    return {k: float(v["qdq_err"]) for k, v in compute_activation_error(matching).items()}


def ov_activations(xml: Path, names: Sequence[str], x: np.ndarray) -> tuple[dict[str, np.ndarray], set[str]]:
    """The tensors ``names`` (ONNX tensor names kept by OpenVINO) of an IR on ``x``, plus its quantized ops."""
    import openvino as ov

    from edgefer.backends.openvino import compile_config
    from edgefer.quantize.ptq import quantized_op_names

    core = ov.Core()
    model = core.read_model(str(xml))
    quantized = quantized_op_names(model)
    wanted = set(names)
    present: dict[str, Any] = {}
    for op in model.get_ordered_ops():
        for out in op.outputs():
            for n in out.get_names():
                if n in wanted and n not in present:
                    present[n] = out
    if not present:
        raise QuantizationError(f"{xml.name} keeps none of the FP32 ONNX tensor names: was it converted from it?")
    model.add_outputs(list(present.values()))
    compiled = core.compile_model(model, "CPU", compile_config("int8", "CPU"))
    request = compiled.create_infer_request()
    by_port: list[tuple[str, Any]] = []
    for port in compiled.outputs:
        hit = next((n for n in port.get_names() if n in present), None)
        if hit is not None:
            by_port.append((hit, port))
    rows: dict[str, list[np.ndarray]] = {n: [] for n, _ in by_port}
    for i in range(len(x)):
        res = request.infer({0: np.ascontiguousarray(x[i : i + 1])})
        for n, port in by_port:
            rows[n].append(np.asarray(res[port], dtype=np.float32).reshape(-1))
    return {n: np.stack(v) for n, v in rows.items()}, quantized


#: the activations held per image, as a multiple of the FP32 model's own: FP32's, the INT8 model's
#: (Q/DQ adds a quantized copy of most tensors) and the copies made while stacking them
_ACTIVATION_COPIES = 4


def check_memory(fp32_path: Path, n_images: int, pp: Any, scratch: Path) -> None:
    """Refuse a sample whose layer-by-layer activations would not fit the memory this process may
    use (:func:`edgefer.utils.limits.memory_budget`: half the memory available now, within its
    address-space limit).

    Every tensor of both models is held for every image of the sample (issue 26: ``--samples
    100000`` on 750 images at 64 px reached 9.25 GB). One blank image through the FP32 model
    measures the floats per image; the estimate is that times the images and
    :data:`_ACTIVATION_COPIES`, plus the input batch. The blank image has the model's own input shape
    (``pp``, its preprocessing: layout and channels -- an imported grey NHWC model too).
    """
    blank = np.zeros(pp.batch_shape(1), np.float32)
    probe = onnx_activations(fp32_path, blank, scratch)
    floats = sum(int(v.shape[1]) for v in probe.values())
    per_image = 4 * (floats * _ACTIVATION_COPIES + blank.size)
    budget = memory_budget()
    if n_images * per_image > budget:
        fit = max(0, budget // per_image)
        hint = f"pass --samples {fit} or fewer" if fit else "there is not enough free memory to debug this model"
        raise QuantizationError(
            f"comparing {n_images} images layer by layer would hold about {n_images * per_image / 2**30:.1f} GiB "
            f"of activations ({per_image / 2**20:.1f} MiB per image), over the {budget / 2**30:.1f} GiB this "
            f"process can spare (half the memory available now, within its address-space limit): {hint}"
        )
