"""DeepStream ``nvinfer`` secondary-classifier config generated from the artifact metadata.

In a DeepStream pipeline a face detector runs as the primary GIE (``gie-unique-id=1``) and our
expression model as a secondary GIE (``process-mode=2``) on the detector's objects. ``nvinfer``
crops each object, scales it to the network size (stretching, like our ``resize="stretch"``) and
normalises every pixel as ``y = net-scale-factor * (x - offsets[c])`` with x in [0, 255].

Our models were trained with ``y = (x / 255 - mean[c]) / std[c]`` = ``(x - 255 mean[c]) /
(255 std[c])``, so ``offsets[c] = 255 * mean[c]`` exactly, but nvinfer has ONE scale factor for
all channels. We use ``net-scale-factor = 1 / (255 * mean(std))``; when the std differs per
channel (ImageNet: 0.229/0.224/0.225) channel c is off by ``std_eff / std[c]``, at most
``max |x - offset| * |1/(255 std[c]) - net-scale-factor|`` in normalised units, reported as
``max_norm_error`` (about 0.03 for ImageNet statistics, on inputs that span about +-2.5).
When we are given the ONNX file we remove the error: :func:`prepare_onnx` prepends a per-channel
``Mul`` by ``std_eff / std[c]`` to the graph, so the network sees exactly the training
normalisation (``exact_normalization=True`` in the result).

nvinfer's default classifier parser reads probabilities: it takes the arg-max class of each output
layer and compares its value with ``classifier-threshold``. Our models output logits, so
:func:`prepare_onnx` also appends a ``Softmax`` (output ``probs``) - without it a threshold
would be compared with raw logits; an imported model whose metadata says it outputs
probabilities already ends in one and gets none. A grey model is ``model-color-format=2``
(one channel); an NHWC model (Keras-style) ``network-input-order=1``. A TensorRT engine given
as is is used as is (its output blob then holds logits; the README says what that means for the threshold).

Labels file: for classifiers, one line per output layer with that layer's class names separated by
``;`` (the format of DeepStream's sample secondary classifiers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import ExportError
from edgefer.formats import format_of
from edgefer.metadata import ModelMetadata
from edgefer.utils.io import ensure_writable_dir, write_json, write_text
from edgefer.utils.limits import MAX_BATCH, check_at_most

#: nvinfer network-mode values.
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}
PROBS_NAME = "probs"


@dataclass
class DeepStreamConfig:
    """Files written by :func:`deepstream_config` and the values derived for nvinfer."""

    config: Path
    labels: Path
    metadata: Path
    model: Path
    net_scale_factor: float
    offsets: tuple[float, ...]
    model_color_format: int
    network_mode: int
    output_blob: str
    exact_normalization: bool
    max_norm_error: float
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> list[Path]:
        return [self.config, self.labels, self.metadata, self.model]


def normalization(
    mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[float, tuple[float, ...], np.ndarray, float]:
    """``(net_scale_factor, offsets, per_channel_correction, max_norm_error)`` for nvinfer.

    ``per_channel_correction[c] = std_eff / std[c]`` turns nvinfer's output into the exact
    training normalisation; ``max_norm_error`` is the worst error without that correction.
    """
    mean_a = np.asarray(mean, dtype=np.float64)
    std_a = np.asarray(std, dtype=np.float64)
    std_eff = float(std_a.mean())
    scale = 1.0 / (255.0 * std_eff)
    offsets = tuple(float(v) for v in 255.0 * mean_a)
    worst_dx = np.maximum(np.abs(0.0 - 255.0 * mean_a), np.abs(255.0 - 255.0 * mean_a))
    err = float(np.max(worst_dx * np.abs(1.0 / (255.0 * std_a) - scale)))
    return scale, offsets, (std_eff / std_a).astype(np.float32), err


def prepare_onnx(
    onnx_in: str | os.PathLike,
    onnx_out: str | os.PathLike,
    channel_scale: np.ndarray | None,
    softmax: bool = True,
    layout: str = "NCHW",
) -> str:
    """Copy of the ONNX with a per-channel input ``Mul`` (exact normalisation) and a final
    ``Softmax`` (probabilities for nvinfer's classifier parser). Returns the output blob name."""
    from edgefer.errors import require

    onnx = require("onnx", "runtime", "the DeepStream config")
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_in))
    graph = model.graph
    inp = graph.input[0].name
    if channel_scale is not None and not np.allclose(channel_scale, 1.0):
        scaled = f"{inp}_ds_scaled"
        for node in graph.node:
            node.input[:] = [scaled if n == inp else n for n in node.input]
        shape = (1, -1, 1, 1) if layout == "NCHW" else (1, 1, 1, -1)
        init = numpy_helper.from_array(np.asarray(channel_scale, np.float32).reshape(shape), f"{inp}_ds_scale")
        graph.initializer.append(init)
        graph.node.insert(0, helper.make_node("Mul", [inp, init.name], [scaled], name="edgefer_ds_channel_scale"))
    out_name = graph.output[0].name
    if softmax:
        graph.node.append(helper.make_node("Softmax", [out_name], [PROBS_NAME], axis=1, name="edgefer_ds_softmax"))
        old = graph.output[0]
        new = helper.make_tensor_value_info(PROBS_NAME, old.type.tensor_type.elem_type, None)
        new.type.CopyFrom(old.type)
        graph.output.remove(old)
        graph.output.insert(0, new)
        out_name = PROBS_NAME
    onnx.checker.check_model(model)
    from edgefer.utils.io import atomic_path

    with atomic_path(onnx_out, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return out_name


def deepstream_config(
    metadata: ModelMetadata,
    onnx_or_engine_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    gie_unique_id: int = 2,
    operate_on_gie_id: int = 1,
    operate_on_class_ids: tuple[int, ...] = (0,),
    batch_size: int = 16,
    precision: str | None = None,
    classifier_threshold: float = 0.0,
    min_object_size: int = 32,
    exact_normalization: bool = True,
) -> DeepStreamConfig:
    """Write ``config_infer_secondary_edgefer.txt``, ``labels.txt``, ``metadata.json`` (and a
    DeepStream-ready ONNX copy) into ``out_dir``; return what was written and derived.

    ``precision`` (fp32/fp16/int8) sets ``network-mode``; default: the artifact's precision, fp16
    for an fp32 ONNX (what a Jetson should run). INT8 from an ONNX needs Q/DQ nodes (TensorRT 10+
    explicit quantization); edgefer's Q/DQ ONNX is that.
    """
    src = Path(onnx_or_engine_path)
    if not src.exists():
        raise ExportError(f"model {src} does not exist")
    if batch_size < 1:
        raise ExportError(f"batch_size must be >= 1, got {batch_size}")
    check_at_most("--batch", batch_size, MAX_BATCH, ExportError)
    out = ensure_writable_dir(out_dir)
    pp = metadata.preprocessing
    # one value of mean/std means the same for every channel: nvinfer wants one offset per channel
    scale, offsets, correction, max_err = normalization(
        tuple(pp.mean) * (pp.channels // len(pp.mean)), tuple(pp.std) * (pp.channels // len(pp.std))
    )
    precision = precision or ("fp16" if metadata.precision == "fp32" else metadata.precision)
    if precision not in NETWORK_MODES:
        raise ExportError(f"precision must be one of {', '.join(NETWORK_MODES)}, not {precision!r}")
    kind = format_of(src).name  # one suffix table (edgefer.formats); an unknown suffix names the known ones
    if kind not in ("onnx", "trt"):
        raise ExportError(f"DeepStream needs an .onnx or a TensorRT engine, not {src.name}")
    lines = [
        "# nvinfer secondary classifier generated by edgefer from the artifact metadata.",
        f"# model {metadata.model_name} ({metadata.precision}), "
        f"input {pp.input_size}x{pp.input_size} {pp.color_order},",
        f"# mean {list(pp.mean)} std {list(pp.std)} on [0,1]; nvinfer computes y = net-scale-factor * (x - offsets).",
        "[property]",
        "gpu-id=0",
    ]
    exact = False
    if kind == "onnx":
        model_path = out / f"{src.stem}_deepstream.onnx"
        blob = prepare_onnx(
            src,
            model_path,
            correction if exact_normalization else None,
            softmax=metadata.outputs != "probabilities",
            layout=pp.layout,
        )
        exact = exact_normalization or bool(np.allclose(correction, 1.0))
        engine = f"{model_path.name}_b{batch_size}_gpu0_{precision}.engine"
        lines += [
            f"onnx-file={model_path.name}",
            "# built by nvinfer on first run and cached here:",
            f"model-engine-file={engine}",
        ]
    else:
        model_path = src.resolve()
        blob = str(metadata.extra.get("output_name", "logits"))
        exact = bool(np.allclose(correction, 1.0))
        lines += [f"model-engine-file={model_path}"]
    if not exact:
        lines.append(f"# approximation: one scale for all channels, max error {max_err:.4f} (normalised units)")
    values: dict[str, Any] = {
        "net-scale-factor": repr(float(scale)),
        "offsets": ";".join(repr(float(o)) for o in offsets),
        "model-color-format": {"RGB": 0, "BGR": 1, "GRAY": 2}[pp.color_order],
        "infer-dims": f"{pp.channels};{pp.input_size};{pp.input_size}",
        "network-input-order": 0 if pp.layout == "NCHW" else 1,
        "labelfile-path": "labels.txt",
        "batch-size": batch_size,
        "network-mode": NETWORK_MODES[precision],
        "network-type": 1,
        "process-mode": 2,
        "gie-unique-id": gie_unique_id,
        "operate-on-gie-id": operate_on_gie_id,
        "operate-on-class-ids": ";".join(str(c) for c in operate_on_class_ids),
        "output-blob-names": blob,
        "classifier-threshold": classifier_threshold,
        "classifier-async-mode": 0,
        "maintain-aspect-ratio": 0,
        "scaling-filter": 1,
        "input-object-min-width": min_object_size,
        "input-object-min-height": min_object_size,
    }
    lines += [f"{k}={v}" for k, v in values.items()]
    config = write_text(out / "config_infer_secondary_edgefer.txt", "\n".join(lines) + "\n")
    labels = write_text(out / "labels.txt", ";".join(metadata.class_names) + "\n")
    meta_path = write_json(out / "metadata.json", {"metadata": metadata.to_dict()})
    return DeepStreamConfig(
        config=config,
        labels=labels,
        metadata=meta_path,
        model=model_path,
        net_scale_factor=scale,
        offsets=offsets,
        model_color_format=int(values["model-color-format"]),
        network_mode=NETWORK_MODES[precision],
        output_blob=blob,
        exact_normalization=exact,
        max_norm_error=0.0 if exact else max_err,
        values=values,
    )


def parse_config(path: str | os.PathLike) -> dict[str, str]:
    """``key=value`` pairs of an nvinfer config's ``[property]`` group (for tests and tools)."""
    props: dict[str, str] = {}
    group = None
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            group = line.strip("[]")
            continue
        if group == "property" and "=" in line:
            k, v = line.split("=", 1)
            props[k.strip()] = v.strip()
    return props
