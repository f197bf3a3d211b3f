"""Bring your own model: a foreign FP32 ONNX becomes an edgefer artifact (``edgefer import``).

edgefer's own exports carry a :class:`~edgefer.metadata.ModelMetadata` that every downstream
command reads (docs/architecture.md invariant 1). A model trained elsewhere (plain
``torch.onnx.export``, Keras through ``tf2onnx``, an AffectNet checkpoint) has none, and some of
what it would say cannot be read from the graph: the channel order, the normalisation, what each
output means. :func:`import_model` records what it is told and what the graph says, and writes a
copy of the ONNX with that metadata, *nothing else changed*: the copy is run next to the original
on ONNX Runtime and must give identical outputs.

Read from the graph where it is unambiguous: the input size (a static square H = W), the layout
(the channel axis is the one of size 1 or 3), the number of outputs (checked against the class
list) and a final ``Softmax`` (the outputs are then probabilities). Told by the user: colour
(``gray``, ``rgb``, ``bgr``), mean and std (one value or one per channel, 0-1 scale unless
``scale=255``), the resize policy, and the class names in the model's output order (any common
spelling; mapped to edgefer's canonical names, unknown names are an error listing ours).

Torch-free (onnx + onnxruntime + numpy): it runs on a device too. Nothing is written unless every
check passed (:func:`edgefer.utils.outputs.staged_output`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import DatasetError, ExportError, require
from edgefer.labels import OUTPUT_KINDS, canonical_name
from edgefer.metadata import ModelMetadata, set_onnx_metadata
from edgefer.preprocess import Preprocessing
from edgefer.utils.io import sha256_file
from edgefer.utils.options import merged
from edgefer.utils.outputs import safe_name, staged_output

#: --color values -> Preprocessing.color_order
COLORS = {"gray": "GRAY", "grey": "GRAY", "rgb": "RGB", "bgr": "BGR"}
#: Node types that may follow the final Softmax without changing what the outputs are.
_PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Cast")


@dataclass(frozen=True)
class ImportOptions:
    """What :func:`import_model` is told about a foreign model (validated when made).

    Attributes:
        classes: class names in the model's output order (``angry``, ``Happiness``, ``contempt``...).
        color: ``gray``, ``rgb`` or ``bgr``: what the model's input channels are.
        mean, std: normalisation ``(x - mean) / std``, one value or one per channel, in ``scale``.
        scale: the unit ``mean``/``std`` are given in: 1 (pixels 0..1, edgefer's) or 255 (0..255).
        layout: ``nchw`` / ``nhwc``; None = read from the graph (an error when it is ambiguous).
        input_size: square input side; None = read from the graph (an error when it is dynamic).
        resize: ``stretch`` or ``center_crop`` (how a face crop becomes the square input).
        interpolation: OpenCV interpolation of the resize.
        outputs: ``auto`` (probabilities when the graph ends in a Softmax), ``logits`` or ``probabilities``.
        name: the artifact's model name and file stem; default the source file's stem.
        reference_data / reference_split: a dataset to write the FP32 ``reference.npz`` from.
        overwrite: replace an earlier import in the output folder.
    """

    classes: tuple[str, ...] = ()
    color: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    scale: float = 1.0
    layout: str | None = None
    input_size: int | None = None
    resize: str = "stretch"
    interpolation: str = "linear"
    outputs: str = "auto"
    name: str | None = None
    reference_data: str | None = None
    reference_split: str = "test"
    allow_missing_classes: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        for key in ("classes", "mean", "std"):
            value = getattr(self, key)
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            elif isinstance(value, (int, float)):
                value = [value]
            object.__setattr__(self, key, tuple(value))
        if not self.classes:
            raise ExportError("--classes is required: the class names in the model's output order")
        object.__setattr__(self, "classes", tuple(_canonical(n) for n in self.classes))
        dupes = sorted({n for n in self.classes if self.classes.count(n) > 1})
        if dupes:
            raise ExportError(f"--classes names {', '.join(dupes)} more than once")
        if self.color.lower() not in COLORS:
            raise ExportError(
                "--color is required: gray, rgb or bgr (edgefer cannot tell the channel order from the graph)"
            )
        if not self.mean or not self.std:
            raise ExportError("--mean and --std are required (one value, or one per channel): the graph does not say")
        try:
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        except ValueError:
            raise ExportError(f"--mean/--std must be numbers, got {self.mean} / {self.std}") from None
        if self.scale not in (1, 1.0, 255, 255.0):
            raise ExportError(
                f"--scale must be 1 (mean/std for pixels 0..1) or 255 (for pixels 0..255), not {self.scale}"
            )
        if self.layout is not None and self.layout.upper() not in ("NCHW", "NHWC"):
            raise ExportError(f"--layout must be nchw or nhwc, not {self.layout!r}")
        if self.outputs not in ("auto", *OUTPUT_KINDS):
            raise ExportError(f"--outputs must be auto, logits or probabilities, not {self.outputs!r}")
        self.preprocessing(self.input_size or 112, self.layout or "NCHW")  # mean/std/resize checked now

    def preprocessing(self, input_size: int, layout: str) -> Preprocessing:
        """The :class:`Preprocessing` these options describe for a model of ``input_size`` and ``layout``."""
        color = COLORS[self.color.lower()]
        channels = 1 if color == "GRAY" else 3
        has = "1 channel: give 1 value" if channels == 1 else f"{channels} channels: give 1 or {channels} values"
        for what, values in (("--mean", self.mean), ("--std", self.std)):
            if len(values) not in (1, channels):
                raise ExportError(f"{what} has {len(values)} values but a {self.color.lower()} model has {has}")
        try:
            return Preprocessing(
                input_size=int(input_size),
                mean=tuple(v / self.scale for v in self.mean),
                std=tuple(v / self.scale for v in self.std),
                color_order=color,
                resize=self.resize,
                interpolation=self.interpolation,
                layout=layout.upper(),
            )
        except ExportError:
            raise
        except Exception as exc:  # EdgeferError from Preprocessing: one line, as an import error
            raise ExportError(str(exc)) from None


def _canonical(name: str) -> str:
    try:
        return canonical_name(name)
    except DatasetError as exc:
        raise ExportError(f"--classes: {exc}") from None


@dataclass
class ImportResult:
    """What :func:`import_model` wrote: the artifact, its metadata, the reference and notes."""

    artifact: Path
    metadata: ModelMetadata
    reference: Path | None = None
    notes: list = field(default_factory=list)
    files: list = field(default_factory=list)


@dataclass(frozen=True)
class GraphFacts:
    """What the ONNX graph says about its one input and its output."""

    input_name: str
    input_dims: tuple[Any, ...]  # ints for static dims, strings/None for dynamic ones
    output_name: str
    output_dims: tuple[Any, ...]
    final_softmax: bool
    opset: int

    @property
    def static_batch(self) -> int | None:
        b = self.input_dims[0]
        return b if isinstance(b, int) and b > 0 else None


def graph_facts(model: Any, src: Path) -> GraphFacts:
    """Read the input/output shapes and the final Softmax of an ``onnx.ModelProto``."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"{src.name} has {len(inputs)} inputs; edgefer imports models with one image input")
    if len(graph.output) != 1:
        raise ExportError(
            f"{src.name} has {len(graph.output)} outputs; edgefer imports classifiers with one output "
            "(export the class scores only)"
        )
    inp, out = inputs[0], graph.output[0]
    if inp.type.tensor_type.elem_type != 1:  # onnx.TensorProto.FLOAT
        raise ExportError(f"{src.name}'s input is not float32: import the FP32 model")
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in graph.node):
        raise ExportError(f"{src.name} is already quantized: import the FP32 model and quantize it with edgefer")
    in_dims = _dims(inp)
    out_dims = _dims(out)
    if len(in_dims) != 4:
        raise ExportError(
            f"{src.name}'s input has rank {len(in_dims)}; an image model takes (N, C, H, W) or (N, H, W, C)"
        )
    if len(out_dims) != 2:
        raise ExportError(f"{src.name}'s output has rank {len(out_dims)}; a classifier returns (N, classes)")
    producers = {o: n for n in graph.node for o in n.output}
    node = producers.get(out.name)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return GraphFacts(inp.name, in_dims, out.name, out_dims, node is not None and node.op_type == "Softmax", opset)


def _dims(value_info: Any) -> tuple[Any, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim)


def resolve_layout(facts: GraphFacts, told: str | None, channels: int, src: Path) -> str:
    """NCHW or NHWC: from the graph where its channel axis is unambiguous; what the user said must agree."""
    d = facts.input_dims
    nchw_fits = d[1] == channels or not isinstance(d[1], int)
    nhwc_fits = d[3] == channels or not isinstance(d[3], int)
    if told is not None:
        told = told.upper()
        if (told == "NCHW" and not nchw_fits) or (told == "NHWC" and not nhwc_fits):
            raise ExportError(
                f"--layout {told.lower()} contradicts {src.name}'s input shape {_show(d)} "
                f"(a {channels}-channel {told} input has {channels} at axis {1 if told == 'NCHW' else 3})"
            )
        return told
    static_c1, static_c3 = isinstance(d[1], int), isinstance(d[3], int)
    if static_c1 and d[1] == channels and not (static_c3 and d[3] == channels):
        return "NCHW"
    if static_c3 and d[3] == channels and not (static_c1 and d[1] == channels):
        return "NHWC"
    if not nchw_fits and not nhwc_fits:
        raise ExportError(
            f"{src.name}'s input shape {_show(d)} has no axis of {channels} channels for --color; check --color"
        )
    raise ExportError(f"cannot tell the layout of {src.name}'s input {_show(d)}: pass --layout nchw or nhwc")


def resolve_size(facts: GraphFacts, layout: str, told: int | None, src: Path) -> int:
    """The square input side: the graph's static H = W, or what the user said (which must agree)."""
    d = facts.input_dims
    h, w = (d[2], d[3]) if layout == "NCHW" else (d[1], d[2])
    static = isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
    if static and h != w:
        raise ExportError(f"{src.name} takes {h}x{w} inputs; edgefer models take square inputs")
    if told is not None:
        if static and told != h:
            raise ExportError(f"--img-size {told} contradicts {src.name}'s static input of {h}x{w}")
        return int(told)
    if not static:
        raise ExportError(f"{src.name}'s input size is dynamic ({_show(d)}): pass --img-size")
    return int(h)


def _show(dims: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(v) if v else "?" for v in dims) + ")"


def import_model(
    src: str | os.PathLike, out_dir: str | os.PathLike, options: ImportOptions | None = None, **fields: Any
) -> ImportResult:
    """Write ``out_dir/<name>.onnx``: ``src`` with edgefer's metadata and nothing else changed.

    ``options`` (or its fields as keywords) say what the graph cannot: see :class:`ImportOptions`.
    A class count that is not the output's, a layout or size that contradicts the graph, a mean
    with the wrong number of channels: an :class:`ExportError` and nothing written. With
    ``reference_data`` the FP32 ``reference.npz`` is written beside it (as ``edgefer export`` does).
    """
    opts = merged(ImportOptions, options, fields, ExportError)
    onnx = require("onnx", "runtime", "importing an ONNX model")
    src = Path(src)
    if not src.is_file():
        raise ExportError(f"model {src} does not exist")
    if src.suffix.lower() != ".onnx":
        raise ExportError(f"{src.name} is not an .onnx file (export your model to ONNX first; see the README)")
    if opts.reference_data is not None and not Path(opts.reference_data).exists():
        raise ExportError(f"reference dataset {opts.reference_data} does not exist")
    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise ExportError(f"{src} is not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    facts = graph_facts(model, src)
    color = COLORS[opts.color.lower()]
    channels = 1 if color == "GRAY" else 3
    layout = resolve_layout(facts, opts.layout, channels, src)
    size = resolve_size(facts, layout, opts.input_size, src)
    pp = opts.preprocessing(size, layout)
    n_out = facts.output_dims[1]
    if isinstance(n_out, int) and n_out > 0 and n_out != len(opts.classes):
        raise ExportError(
            f"--classes names {len(opts.classes)} classes but {src.name} outputs {n_out} scores: "
            "give one name per output, in the model's output order"
        )
    notes = []
    outputs = opts.outputs
    if outputs == "auto":
        outputs = "probabilities" if facts.final_softmax else "logits"
        notes.append(
            f"outputs: {outputs} ({'the graph ends in a Softmax' if facts.final_softmax else 'no final Softmax'})"
        )
    elif outputs == "logits" and facts.final_softmax:
        notes.append("told logits, but the graph ends in a Softmax: scores will be treated as logits")
    name = safe_name(opts.name or src.stem, "--name" if opts.name else "the model file name")
    batch = facts.static_batch
    meta = ModelMetadata(
        model_name=name,
        class_names=opts.classes,
        preprocessing=pp,
        model_args={"imported_from": src.name},
        precision="fp32",
        outputs=outputs,
        extra={
            "imported": True,
            "opset": facts.opset,
            "dynamic_batch": batch is None,
            "batch": batch,
            "max_batch": batch,
            "input_name": facts.input_name,
            "output_name": facts.output_name,
            "source_sha256": sha256_file(src),
        },
    )
    set_onnx_metadata(model, meta)
    target_name = f"{name}.onnx"
    with staged_output(out_dir, "import", overwrite=opts.overwrite) as stage:
        staged = stage.path(target_name)
        onnx.save(model, str(staged))
        _check_identical(src, staged, pp, batch, len(opts.classes))
        reference = None
        if opts.reference_data is not None:
            from edgefer.export.reference import make_reference

            ref_path = stage.path("reference.npz")
            make_reference(
                staged,
                opts.reference_data,
                split=opts.reference_split,
                out=ref_path,
                progress=False,
                allow_missing_classes=opts.allow_missing_classes,
            )
            reference = stage.final(ref_path)
            note = meta.class_map().note
            if note:
                notes.append(note)
        artifact = stage.final(staged)
    meta = meta.replace(source_onnx_sha256=sha256_file(artifact))
    files = [artifact] + ([reference] if reference is not None else [])
    return ImportResult(artifact, meta, reference, notes, files)


def _check_identical(src: Path, copy: Path, pp: Preprocessing, batch: int | None, n_classes: int) -> None:
    """The copy must compute exactly what the original computes (same random input, ONNX Runtime)."""
    from edgefer.export.onnx import ort_session

    x = np.random.default_rng(0).standard_normal(pp.batch_shape(batch or 2), dtype=np.float32)
    outs = []
    for path in (src, copy):
        try:
            sess = ort_session(path)
            outs.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
        except Exception as exc:
            raise ExportError(
                f"ONNX Runtime cannot run {src.name} on a {pp.batch_shape(batch or 2)} input "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}); check --layout/--color/--img-size"
            ) from None
    if outs[0].shape != outs[1].shape or not np.array_equal(outs[0], outs[1]):
        raise ExportError(f"the imported copy of {src.name} does not reproduce its outputs; nothing was written")
    if outs[0].ndim != 2 or outs[0].shape[1] != n_classes:
        raise ExportError(
            f"{src.name} returns outputs of shape {outs[0].shape} but --classes names {n_classes} classes: "
            "give one name per output, in the model's output order"
        )
