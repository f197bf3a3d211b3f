"""``quantize()``: checkpoint (or FP32 ONNX) + dataset -> INT8 artifact, metadata and an honest report.

The flow for every method and target:

1. the FP32 ONNX (exported from the checkpoint by :func:`edgefer.export.onnx.export_onnx`, or
   given) is the reference; its metadata gives the preprocessing;
2. calibration images from the training split and validation images, both through the *eval*
   preprocessing (:mod:`edgefer.data.calibration`);
3. one NNCF run: ``ptq`` (plain PTQ), ``ptq-acc`` (accuracy control within ``max_drop`` points),
   ``qat`` (quantization-aware fine-tuning in PyTorch) or ``wc`` (INT8 weights only, OpenVINO);
4. the artifact is written atomically with ``precision="int8"`` metadata, loaded back through
   :func:`edgefer.backends.open_model` like the benchmark would, and scored against the FP32
   ONNX on the same validation images: accuracy, drop overall and for the worst class, agreement,
   size. ``report["budget_met"]`` says whether the gate's accuracy rules hold
   (:meth:`QuantizeOptions.accuracy_gate`: ``max_drop`` alone when only it is given, the
   production gate for ``ptq-acc``), ``report["gate_violations"]`` which do not.

Torch is needed only to export the checkpoint and for QAT; with ``onnx_path`` and ``method``
``ptq``/``ptq-acc``/``wc`` this runs without PyTorch.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.data.calibration import ArrayData, DatasetLike, calibration_arrays, validation_arrays
from edgefer.errors import QuantizationError, require
from edgefer.export.source import check_img_size, require_fp32
from edgefer.export.targets import target_named
from edgefer.export.targets.base import Int8Form
from edgefer.metadata import ModelMetadata, read_metadata, set_onnx_metadata, set_ov_metadata
from edgefer.quantize.evaluate import compare, predict
from edgefer.quantize.graph import input_name
from edgefer.quantize.options import QuantizeOptions
from edgefer.utils.io import atomic_path, dir_size, sha256_file, write_json
from edgefer.utils.options import merged
from edgefer.utils.outputs import check_outputs, safe_name, staged_output, staging_dir


@dataclass
class QuantizeResult:
    """What :func:`quantize` produced.

    Attributes:
        artifact: INT8 OpenVINO ``.xml`` (target openvino) or Q/DQ ``.onnx`` (trt, onnx).
        metadata: the artifact's :class:`ModelMetadata` (precision ``int8``, ``quantization`` dict).
        report: FP32 vs INT8 scores on the validation images (see :func:`quantize`).
        report_path: the JSON copy of ``report`` beside the artifact.
        files: every file written.
    """

    artifact: Path
    metadata: ModelMetadata
    report: dict[str, Any]
    report_path: Path | None = None
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "metadata": self.metadata.to_dict(),
            "report": self.report,
            "report_path": str(self.report_path) if self.report_path else None,
            "files": [str(f) for f in self.files],
        }


@contextlib.contextmanager
def quiet(progress: bool) -> Iterator[None]:
    """Silence NNCF's progress bars and INFO logs unless ``progress`` (they go to stdout)."""
    if progress:
        yield
        return
    import nncf

    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)


def _fp32_onnx(
    checkpoint: str | os.PathLike | None, onnx_path: str | os.PathLike | None, img_size: int | None, scratch: Path
) -> tuple[Path, ModelMetadata]:
    """The FP32 ONNX and its metadata: the given file, or an export of the checkpoint into ``scratch``."""
    if onnx_path is not None:
        path = Path(onnx_path)
        if not path.exists():
            raise QuantizationError(f"FP32 ONNX {path} does not exist")
        meta = read_metadata(path)
        require_fp32(path, meta, "quantization", QuantizationError)
        check_img_size(path, meta, img_size, QuantizationError)
        return path, meta.replace(source_onnx_sha256=sha256_file(path))
    if checkpoint is None:
        raise QuantizationError("pass a checkpoint or an FP32 ONNX (onnx_path) to quantize")
    from edgefer.export.onnx import export_onnx

    res = export_onnx(checkpoint, scratch, img_size=img_size)
    return Path(res.onnx or res.artifact), res.metadata


def _stem(meta: ModelMetadata, int8: Int8Form, method: str) -> str:
    suffix = {"ptq": "", "ptq-acc": "_acc", "qat": "_qat", "wc": "_wc"}[method]
    name = safe_name(meta.model_name, "the model name in the artifact metadata")
    return f"{name}_{int8.tag}{suffix}" if method != "wc" else f"{name}_int8w"


def save_ir(model: Any, xml: Path, meta: ModelMetadata) -> Path:
    """Write an OpenVINO model to ``xml`` (+ ``.bin``) with ``meta`` in rt_info, atomically."""
    import openvino as ov

    set_ov_metadata(model, meta)
    with staging_dir(xml.parent, "ir") as tmp:
        staged = tmp / xml.name
        # INT8 weights are stored as int8 anyway; keep what stays floating point exact (no FP16).
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), xml.with_suffix(".bin"))  # weights first, then the .xml
        os.replace(staged, xml)
    return xml


def save_onnx(model: Any, path: Path, meta: ModelMetadata) -> Path:
    """Write an ONNX model with ``meta`` as metadata_props, checked and atomically."""
    import onnx

    set_onnx_metadata(model, meta)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise QuantizationError(f"the quantized ONNX is invalid: {exc}") from exc
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return path


def _artifact_size(path: Path) -> int:
    return dir_size(path) + (dir_size(path.with_suffix(".bin")) if path.suffix == ".xml" else 0)


def quantize(
    checkpoint: str | os.PathLike | None,
    data: str | os.PathLike | DatasetLike,
    options: QuantizeOptions | None = None,
    *,
    onnx_path: str | os.PathLike | None = None,
    val_data: str | os.PathLike | DatasetLike | None = None,
    **fields: Any,
) -> QuantizeResult:
    """Quantize a model to INT8 as :class:`QuantizeOptions` say, and measure what it cost.

    Args:
        checkpoint: the FP32 checkpoint (needed for ``qat``; optional when ``onnx_path`` is given).
        data: dataset path (or an open dataset); calibration uses ``options.calib_split``; fewer
            than 10 calibration images, or more than the split holds, is a :class:`QuantizationError`.
        options: how to quantize (target, method, budget, ...); see :class:`QuantizeOptions`.
        onnx_path: the FP32 ONNX to start from (skips the export; torch-free for ptq/ptq-acc/wc).
        val_data: dataset for validation when it differs from ``data``.
        fields: shorthand for options fields, ``quantize(ckpt, data, method="qat")``; they replace
            the same fields of ``options``.

    Nothing is written unless everything succeeded. The report holds ``fp32``/``int8`` accuracies
    (on the labels), ``delta_pts`` (INT8 - FP32, negative = worse), ``worst_class_delta_pts``,
    ``agreement`` (top-1 equal to FP32), sizes, timings, and for ``ptq-acc`` the plain-PTQ numbers
    and ``kept_fp`` (layers left in FP), and the gate held to with its violations (``gate``,
    ``gate_violations``, ``budget_met``).
    """
    opts = merged(QuantizeOptions, options, fields, QuantizationError)
    for what, value in (("dataset", data), ("validation dataset", val_data)):
        if isinstance(value, (str, os.PathLike)) and not Path(value).exists():
            raise QuantizationError(f"{what} {value} does not exist")
    if opts.method == "qat" and checkpoint is None:
        raise QuantizationError(
            "QAT fine-tunes the PyTorch module: pass its --checkpoint (an ONNX alone, e.g. an imported model, "
            "has none; use --int8-method ptq-acc to hold it to a budget)"
        )
    require("nncf", "openvino", "INT8 quantization")
    out = Path(opts.out_dir)
    if out.exists() and not out.is_dir():
        raise QuantizationError(f"output folder {out} exists and is not a folder")
    t0 = time.perf_counter()
    # every file is staged and moved into ``out`` only when everything succeeded (utils.outputs)
    with staged_output(out, "quantize", overwrite=opts.overwrite) as stage, staging_dir(out, "fp32") as scratch:
        fp32_path, meta = _fp32_onnx(checkpoint, onnx_path, opts.img_size, scratch)
        classes, align = _check_classes(meta, val_data if val_data is not None else data)
        int8 = target_named(opts.target).int8  # what the target's INT8 artifact is
        stem = _stem(meta, int8, opts.method)
        names = int8.files(stem)  # the main file, then e.g. an IR's weights
        main_name = names[0]
        check_outputs(out, [*names, f"{stem}.report.json"], overwrite=opts.overwrite)  # before the expensive part
        pp = meta.preprocessing
        calib = calibration_arrays(
            data,
            pp,
            opts.calib_size,
            split=opts.calib_split,
            seed=opts.seed,
            allow_missing_classes=opts.allow_missing_classes,
        )
        val = validation_arrays(
            val_data if val_data is not None else data,
            pp,
            opts.val_size,
            split=opts.val_split,
            seed=opts.seed,
            allow_missing_classes=opts.allow_missing_classes,
        )
        fp32_logits = align(predict(fp32_path, val.x))
        staged = stage.path(main_name)
        artifact = stage.final(staged)
        stage.last.append(staged)  # the .xml / .onnx appears only once its weights are in place
        qinfo: dict[str, Any] = {
            "method": opts.method,
            "engine": "nncf",
            "nncf_version": _nncf_version(),
            "format": int8.label,
            "target": opts.target,
            "preset": opts.preset,
            "calib_size": len(calib),
            "calib_split": opts.calib_split,
            "fast_bias_correction": opts.fast_bias_correction,
            "ignored": list(opts.ignore),
        }
        extra: dict[str, Any] = {}
        run = _Run(opts, fp32_path, meta, calib, val, fp32_logits, checkpoint, data, qinfo, extra, classes, align)
        with quiet(opts.progress):
            model = _run_method(run)
        if opts.method == "wc":
            qinfo.update(format="openvino-weights-int8", calib_size=0)
        qmeta = meta.replace(
            precision="int8", quantization=qinfo, source_onnx_sha256=meta.source_onnx_sha256 or sha256_file(fp32_path)
        )
        (save_onnx if int8.qdq else save_ir)(model, staged, qmeta)
        int8_logits = align(predict(staged, val.x))
        report = _report(meta, qmeta, val, fp32_logits, int8_logits, fp32_path, staged, opts, extra, classes)
        if meta.class_map(classes).note:
            report["class_note"] = meta.class_map(classes).note
        report["artifact"] = str(artifact)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        files = [artifact, *(artifact.with_name(n) for n in names[1:])]
        report_path = stage.final(write_json(stage.path(f"{stem}.report.json"), report))
    return QuantizeResult(artifact, qmeta, report, report_path, [*files, report_path])


def _check_classes(meta: ModelMetadata, data: Any) -> tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray]]:
    """The dataset's classes and the function from the model's raw outputs to logits in their order
    (matched by name, checked before any work): a dataset class the model does not predict is a
    :class:`QuantizationError` naming it; model classes the dataset lacks are left out of scoring."""
    from edgefer.errors import DatasetError
    from edgefer.labels import CLASS_NAMES

    data_classes = (
        tuple(getattr(data, "class_names", CLASS_NAMES)) if not isinstance(data, (str, os.PathLike)) else CLASS_NAMES
    )
    try:
        meta.class_map(data_classes)
    except DatasetError as exc:
        raise QuantizationError(f"{exc}") from None
    return data_classes, functools.partial(meta.dataset_logits, dataset_names=data_classes)


def _nncf_version() -> str:
    import nncf

    return str(nncf.__version__)


@dataclass
class _Run:
    """One quantization under way: its options, the FP32 model and the data it is measured on."""

    opts: QuantizeOptions
    fp32_path: Path
    meta: ModelMetadata
    calib: ArrayData
    val: ArrayData
    fp32_logits: np.ndarray
    checkpoint: str | os.PathLike | None
    data: Any
    qinfo: dict[str, Any]  # filled in: what the artifact's metadata says about its quantization
    extra: dict[str, Any]  # filled in: method-specific sections of the report
    names: tuple[str, ...]  # the dataset's classes: fp32_logits and every scored model's logits are in this order
    align: Callable[[np.ndarray], np.ndarray]  # raw model outputs -> logits in ``names``' order

    def record_accuracy_control(self, gate: Any, info: dict[str, Any]) -> None:
        """What accuracy control (ptq-acc's, or qat's after the fine-tune) held the model to and kept
        in FP, into the artifact's metadata and the report."""
        self.qinfo.update(max_drop_pt=self.opts.max_drop, gate=str(gate), kept_fp=info["kept_fp"])
        self.extra["accuracy_control"] = info


def _run_method(run: _Run) -> Any:
    """Run one method; returns the in-memory quantized model (ov.Model or onnx.ModelProto)."""
    from edgefer.quantize import ptq

    opts = run.opts
    int8 = target_named(opts.target).int8
    kwargs = ptq.nncf_kwargs(opts.target, opts.preset, opts.ignore, (), opts.calib_size, opts.fast_bias_correction)
    if opts.method == "wc":  # the options allow it only where the INT8 form is an OpenVINO model
        return ptq.compress_weights_openvino(int8.load_for_nncf(run.fp32_path), opts.ignore)
    if opts.method == "ptq":
        model = _ptq(int8, run.fp32_path, run.calib, kwargs)
        if int8.qdq:
            run.qinfo["qdq_nodes"] = ptq.check_qdq(model)
        return model
    if opts.method == "ptq-acc":
        from edgefer.quantize.accuracy_control import quantize_with_accuracy_control

        gate = opts.accuracy_gate()
        assert gate is not None  # ptq-acc always has one (QuantizeOptions.accuracy_gate)
        model, info = quantize_with_accuracy_control(
            opts.target,
            int8.load_for_nncf(run.fp32_path),
            run.calib,
            run.val,
            run.fp32_logits,
            gate,
            run.names,
            kwargs,
            run.align,
        )
        run.record_accuracy_control(gate, info)
        return model
    if opts.method == "qat":
        if run.checkpoint is None:
            raise QuantizationError("QAT fine-tunes the PyTorch model: pass the checkpoint")
        from edgefer.quantize.qat import FineTune, quantization_aware_training

        model, info = quantization_aware_training(
            run.checkpoint,
            opts.target,
            run.meta,
            run.calib,
            run.data,
            opts.calib_split,
            kwargs,
            FineTune.from_options(opts),
            restore=_restorer(run, int(kwargs.get("subset_size", 300))),
        )
        run.qinfo.update(
            qat_epochs=opts.qat_epochs, qat_lr=opts.qat_lr, qat_steps=info.get("steps"), qat_loss=info["loss"]
        )
        if opts.qat_loss == "distill":
            run.qinfo["qat_temperature"] = opts.qat_temperature
        run.extra["qat"] = info
        return model
    raise QuantizationError(f"unknown method {opts.method!r}")  # pragma: no cover - checked by the options


def _restorer(run: _Run, ranking_subset_size: int) -> Any:
    """QAT's ``restore`` step: hold the fine-tuned model to the options' gate on the validation images
    (:func:`edgefer.quantize.accuracy_control.restore_accuracy`), recording what it kept in FP;
    None when no budget is set."""
    gate = run.opts.accuracy_gate()
    if gate is None:
        return None

    def restore(fp32_model: Any, quantized: Any) -> Any:
        from edgefer.quantize.accuracy_control import restore_accuracy

        model, info = restore_accuracy(
            run.opts.target,
            fp32_model,
            quantized,
            run.val,
            run.fp32_logits,
            gate,
            run.names,
            ranking_subset_size,
            run.align,
        )
        run.record_accuracy_control(gate, info)
        return model

    return restore


def _ptq(int8: Int8Form, fp32_path: Path, calib: ArrayData, kwargs: dict[str, Any]) -> Any:
    from edgefer.quantize import ptq

    model = int8.load_for_nncf(fp32_path)
    if int8.qdq:
        return ptq.quantize_onnx(model, ptq.nncf_dataset(calib.x, input_name(model)), **kwargs)
    return ptq.quantize_openvino(model, ptq.nncf_dataset(calib.x), **kwargs)


def _report(
    meta: ModelMetadata,
    qmeta: ModelMetadata,
    val: ArrayData,
    fp32_logits: np.ndarray,
    int8_logits: np.ndarray,
    fp32_path: Path,
    artifact: Path,
    opts: QuantizeOptions,
    extra: dict[str, Any],
    names: tuple[str, ...],
) -> dict[str, Any]:
    cmp = compare(fp32_logits, int8_logits, val.labels, val.ids, names)
    max_drop = opts.max_drop
    gate = opts.accuracy_gate()
    violations = None if gate is None else gate.check({"label": artifact.name, "status": "ok", "accuracy": cmp})
    report: dict[str, Any] = {
        "model": meta.model_name,
        "artifact": str(artifact),
        "quantization": qmeta.quantization,
        "validation": {"split": val.split, "images": len(val)},
        "fp32_accuracy": cmp["reference_accuracy"],
        "int8_accuracy": cmp["accuracy"],
        "delta_pts": cmp["delta_pts"],
        "worst_class": cmp["worst_class"],
        "worst_class_delta_pts": cmp["worst_class_delta_pts"],
        "agreement": cmp["agreement"],
        "mean_kl": cmp["mean_kl"],
        "fp32_size_bytes": _artifact_size(fp32_path),
        "int8_size_bytes": _artifact_size(artifact),
        "max_drop_pt": max_drop,
        "gate": None if gate is None else str(gate),
        "gate_violations": violations,
        # within the budget: the gate's accuracy rules (max-drop alone when only that is given)
        "budget_met": None if violations is None else not violations,
        "comparison": cmp,
    }
    report.update(extra)
    return report
