"""PyTorch checkpoint -> FP32 ONNX, the hub every other target starts from.

The ONNX file is simplified (onnxslim), checked (``onnx.checker``), carries the artifact
metadata as ``metadata_props`` (edgefer version, model, class names, preprocessing, the
checkpoint's sha256) and is numerically compared with PyTorch on ONNX Runtime before it is
written: an FP32 export that differs by more than 1e-4 is refused (:class:`ExportError`) and
nothing is left behind.

Exporter choice (torch 2.14): the TorchScript exporter (``dynamo=False`` + ``dynamic_axes``)
writes exactly the requested opset, 17 by default, which is the newest opset the TensorRT 8.5/8.6
ONNX parsers of JetPack 5 / 6.0 accept, and takes well under a second for our models. The
``torch.export`` exporter (``dynamo=True`` + ``dynamic_shapes``) always emits opset >= 18 and
takes seconds; it is the fallback when the TorchScript exporter cannot trace a model (or is gone
from a future torch). ``exporter="dynamo"`` forces it.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefer.errors import EdgeferError, ExportError, require
from edgefer.export.result import ExportResult
from edgefer.metadata import ModelMetadata, set_onnx_metadata
from edgefer.utils.io import ensure_writable_dir, sha256_file
from edgefer.utils.outputs import safe_name

if TYPE_CHECKING:  # pragma: no cover
    import onnx as onnx_t
    from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
#: Largest tolerated max abs difference between PyTorch and the FP32 ONNX on ONNX Runtime.
FP32_TOLERANCE = 1e-4
DEFAULT_OPSET = 17
_EXPORTERS = ("auto", "torchscript", "dynamo")


def _torchscript_args(opset: int, dynamic_batch: bool) -> dict[str, Any]:
    """``torch.onnx.export`` arguments of the TorchScript exporter: the requested opset, exactly."""
    dynamic_axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None
    return {"dynamic_axes": dynamic_axes, "opset_version": opset, "do_constant_folding": True, "dynamo": False}


def _dynamo_args(opset: int, dynamic_batch: bool) -> dict[str, Any]:
    """``torch.onnx.export`` arguments of the ``torch.export`` exporter (opset >= 18, one file)."""
    from torch.export import Dim

    dynamic_shapes = ({0: Dim(BATCH_DIM, min=1, max=4096)},) if dynamic_batch else None
    return {"dynamic_shapes": dynamic_shapes, "opset_version": max(opset, 18), "external_data": False, "dynamo": True}


#: The exporters ``torch_to_onnx`` can use, each as the function giving its own export arguments.
_EXPORTER_ARGS = {"torchscript": _torchscript_args, "dynamo": _dynamo_args}


def _torch_export(model: nn.Module, x: Any, path: Path, exporter: str, opset: int, dynamic_batch: bool) -> None:
    """One ``torch.onnx.export`` call with the input/output names every edgefer ONNX file has and
    ``exporter``'s own arguments; the exporters' warnings and stdout chatter are kept out of the CLI."""
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # deprecation and tracer warnings
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            **_EXPORTER_ARGS[exporter](opset, dynamic_batch),
        )


def torch_to_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    img_size: int,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    batch: int = 1,
    exporter: str = "auto",
) -> Path:
    """Export ``model`` (eval mode is set) to ``path`` with input ``input`` (N, 3, S, S) and
    output ``logits`` (N, C); the batch dimension is the symbol ``batch`` when ``dynamic_batch``.

    Written atomically: ``path`` is either the complete ONNX file or untouched. No metadata, no
    simplification: :func:`export_onnx` adds those.
    """
    import torch

    if exporter not in _EXPORTERS:
        raise ExportError(f"exporter must be one of {_EXPORTERS}, not {exporter!r}")
    if opset < 17:
        raise ExportError(f"opset {opset} is too old: edgefer exports opset >= 17")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    path = Path(path)
    ensure_writable_dir(path.parent)
    model = model.eval()
    x = torch.randn(2 if dynamic_batch else batch, 3, img_size, img_size)
    with _tmp_dir(path.parent) as tmp_dir:
        tmp = tmp_dir / path.name
        errors: list[str] = []
        order = {"auto": ("torchscript", "dynamo"), "torchscript": ("torchscript",), "dynamo": ("dynamo",)}[exporter]
        for name in order:
            try:
                with torch.no_grad():
                    _torch_export(model, x, tmp, name, opset, dynamic_batch)
                break
            except Exception as exc:  # both exporters raise many exception types
                errors.append(f"{name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
                tmp.unlink(missing_ok=True)
        else:
            raise ExportError("torch -> ONNX export failed: " + "; ".join(errors))
        os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _tmp_dir(parent: Path) -> Iterator[Path]:
    """A scratch directory inside ``parent`` (same file system, so ``os.replace`` is atomic); its
    name carries the pid, so one left by a killed run is removed at the next start."""
    from edgefer.utils.outputs import staging_dir

    with staging_dir(parent, "export") as d:
        yield d


def simplify_onnx(model: onnx_t.ModelProto) -> onnx_t.ModelProto:
    """Constant folding and dead-node removal with onnxslim (shapes and the dynamic batch kept)."""
    onnxslim = require("onnxslim", "onnx", "ONNX simplification")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        slim = onnxslim.slim(model)
    if slim is None:  # pragma: no cover - onnxslim returns None only when writing to a path
        raise ExportError("onnxslim returned no model")
    return slim


def check_onnx(model: onnx_t.ModelProto) -> None:
    """``onnx.checker`` with shape inference; an invalid graph is an :class:`ExportError`."""
    onnx = require("onnx", "onnx", "ONNX export")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"exported ONNX model is invalid: {exc}") from exc


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """A CPU ONNX Runtime session for export-time checks (deterministic, one thread by default)."""
    ort = require("onnxruntime", "onnx", "ONNX parity checks")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load {path}: {exc}") from exc


def torch_onnx_parity(model: nn.Module, onnx_path: str | os.PathLike, img_size: int, batches: tuple[int, ...]) -> float:
    """Max abs difference of logits between ``model`` and the ONNX on ORT CPU, over random
    inputs of each batch size in ``batches`` (seeded, so a failure is reproducible)."""
    import torch

    sess = ort_session(onnx_path)
    rng = np.random.default_rng(0)
    worst = 0.0
    for b in batches:
        x = rng.standard_normal((b, 3, img_size, img_size), dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).float().numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape} at batch {b}")
        worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst


def load_for_export(checkpoint: str | os.PathLike, img_size: int | None = None) -> tuple[nn.Module, ModelMetadata]:
    """Load a checkpoint -> (eval model, FP32 metadata with the export input size)."""
    from edgefer.training.checkpoint import build_model, checkpoint_metadata, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt)
    meta = checkpoint_metadata(ckpt, checkpoint)
    if img_size is not None:
        if img_size < 16:
            raise ExportError(f"img_size {img_size} is too small (>= 16 expected)")
        meta = meta.replace(preprocessing=meta.preprocessing.with_size(img_size))
    return model, meta


def export_onnx(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    img_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    max_batch: int | None = None,
    simplify: bool = True,
    check_parity: bool = True,
    batch: int = 1,
    name: str | None = None,
    exporter: str = "auto",
    tolerance: float = FP32_TOLERANCE,
) -> ExportResult:
    """Export a checkpoint to ``out_dir/<name>.onnx`` (``name`` defaults to the model name).

    ``dynamic=True`` gives a dynamic batch (``max_batch`` is recorded in the metadata for the
    TensorRT optimisation profile); ``dynamic=False`` fixes the batch to ``batch``. The PyTorch
    vs ONNX Runtime max abs difference is in ``result.parity["onnx_fp32_vs_torch"]``; above
    ``tolerance`` the export fails and no file is written.
    """
    onnx = require("onnx", "onnx", "ONNX export")
    if max_batch is not None and max_batch < 1:
        raise ExportError(f"max_batch must be >= 1, got {max_batch}")
    if not dynamic and max_batch is not None and max_batch != batch:
        raise ExportError("--max-batch needs --dynamic (a static export has exactly --batch)")
    out = _writable(out_dir)
    model, meta = load_for_export(checkpoint, img_size)
    size = meta.preprocessing.input_size
    meta = meta.replace(
        extra={
            **meta.extra,
            "opset": opset,
            "dynamic_batch": bool(dynamic),
            "batch": None if dynamic else int(batch),
            "max_batch": int(max_batch) if (dynamic and max_batch) else (None if dynamic else int(batch)),
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
        }
    )
    target = out / f"{safe_name(name or meta.model_name, 'model name' if name is None else '--name')}.onnx"
    parity: dict[str, float] = {}
    with _tmp_dir(out) as tmp_dir:
        raw = torch_to_onnx(model, tmp_dir / "raw.onnx", size, opset, dynamic, batch, exporter)
        proto = onnx.load(str(raw))
        if simplify:
            proto = simplify_onnx(proto)
        set_onnx_metadata(proto, meta)
        check_onnx(proto)
        staged = tmp_dir / target.name
        onnx.save(proto, str(staged))
        if check_parity:
            batches = (1, min(3, max_batch or 3)) if dynamic else (batch,)
            diff = torch_onnx_parity(model, staged, size, tuple(sorted(set(batches))))
            parity["onnx_fp32_vs_torch"] = diff
            if not diff <= tolerance:  # also catches NaN
                raise ExportError(
                    f"ONNX parity check failed: max abs difference to PyTorch is {diff:.3g} "
                    f"(> {tolerance:g}); no file was written"
                )
        os.replace(staged, target)
    meta = meta.replace(source_onnx_sha256=sha256_file(target))
    return ExportResult(
        target="onnx", precision="fp32", artifact=target, onnx=target, metadata=meta, parity=parity, files=[target]
    )


def _writable(out_dir: str | os.PathLike) -> Path:
    try:
        return ensure_writable_dir(out_dir)
    except EdgeferError as exc:
        raise ExportError(str(exc)) from exc
