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
   size. ``report["budget_met"]`` says whether the drop is within ``max_drop`` when one is given.

Torch is needed only to export the checkpoint and for QAT; with ``onnx_path`` and ``method``
``ptq``/``ptq-acc``/``wc`` this runs without PyTorch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.data.calibration import ArrayData, DatasetLike, calibration_arrays, validation_arrays
from edgefer.errors import QuantizationError, require
from edgefer.formats import TARGETS  # one list for export, quantize and the pipeline
from edgefer.metadata import ModelMetadata, read_metadata, set_onnx_metadata, set_ov_metadata
from edgefer.quantize.evaluate import compare, predict
from edgefer.utils.io import atomic_path, dir_size, sha256_file, write_json
from edgefer.utils.outputs import check_outputs, safe_name, staged_output, staging_dir

METHODS = ("ptq", "ptq-acc", "qat", "wc")
#: Budget used by ``ptq-acc`` when no ``max_drop`` is given (the issue's target: <= 0.5 point).
DEFAULT_MAX_DROP = 0.5


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


def _check_args(target: str, method: str, max_drop: float | None, calib_size: int) -> None:
    if target not in TARGETS:
        raise QuantizationError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    if method not in METHODS:
        raise QuantizationError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "wc" and target != "openvino":
        raise QuantizationError("weights-only compression (method 'wc') is for the openvino target")
    if max_drop is not None and not 0.0 <= max_drop <= 100.0:
        raise QuantizationError(f"max_drop is in accuracy points (0..100), got {max_drop}")
    if calib_size < 1:
        raise QuantizationError(f"calib_size must be positive, got {calib_size}")


def _fp32_onnx(
    checkpoint: str | os.PathLike | None, onnx_path: str | os.PathLike | None, img_size: int | None, scratch: Path
) -> tuple[Path, ModelMetadata]:
    """The FP32 ONNX and its metadata: the given file, or an export of the checkpoint into ``scratch``."""
    if onnx_path is not None:
        path = Path(onnx_path)
        if not path.exists():
            raise QuantizationError(f"FP32 ONNX {path} does not exist")
        meta = read_metadata(path)
        if meta.precision != "fp32":
            raise QuantizationError(f"{path.name} is {meta.precision}; quantization starts from the FP32 ONNX")
        if img_size is not None and img_size != meta.preprocessing.input_size:
            raise QuantizationError(
                f"{path.name} was exported at {meta.preprocessing.input_size} px, not {img_size}; "
                "re-export it or drop --img-size"
            )
        return path, meta.replace(source_onnx_sha256=sha256_file(path))
    if checkpoint is None:
        raise QuantizationError("pass a checkpoint or an FP32 ONNX (onnx_path) to quantize")
    from edgefer.export.onnx import export_onnx

    res = export_onnx(checkpoint, scratch, img_size=img_size)
    return Path(res.onnx or res.artifact), res.metadata


def _stem(meta: ModelMetadata, target: str, method: str) -> str:
    fmt = "int8" if target == "openvino" else "int8_qdq"
    suffix = {"ptq": "", "ptq-acc": "_acc", "qat": "_qat", "wc": "_wc"}[method]
    name = safe_name(meta.model_name, "the model name in the artifact metadata")
    return f"{name}_{fmt}{suffix}" if method != "wc" else f"{name}_int8w"


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
    target: str = "openvino",
    method: str = "ptq",
    calib_size: int = 300,
    max_drop: float | None = None,
    preset: str = "performance",
    ignore: Sequence[str] = (),
    out_dir: str | os.PathLike = "runs/quantize",
    onnx_path: str | os.PathLike | None = None,
    img_size: int | None = None,
    fast_bias_correction: bool = True,
    qat_epochs: int = 2,
    qat_lr: float = 1e-4,
    progress: bool = True,
    val_size: int | None = None,
    val_data: str | os.PathLike | DatasetLike | None = None,
    calib_split: str = "train",
    val_split: str = "test",
    seed: int = 0,
    qat_max_steps: int | None = None,
    allow_missing_classes: bool = False,
    overwrite: bool = False,
) -> QuantizeResult:
    """Quantize a model to INT8 for ``target`` with ``method`` and measure what it cost.

    Args:
        checkpoint: the FP32 checkpoint (needed for ``qat``; optional when ``onnx_path`` is given).
        data: dataset path (or an open dataset); calibration uses ``calib_split``.
        target: "openvino" (INT8 IR), "trt" or "onnx" (explicit Q/DQ ONNX, TensorRT-compatible).
        method: "ptq", "ptq-acc" (accuracy control, needs ``max_drop``; default
            :data:`DEFAULT_MAX_DROP`), "qat", or "wc" (INT8 weights only, OpenVINO).
        calib_size: calibration images (deterministic subset); fewer than 10, or more than the
            split holds, is a :class:`QuantizationError`.
        max_drop: accuracy budget in points (absolute); for ptq/qat it is checked, not enforced.
        preset: "performance" (symmetric) or "mixed" (asymmetric activations; OpenVINO only).
        ignore: regex patterns of graph node names to keep in floating point.
        out_dir: where the artifact and ``<stem>.report.json`` go.
        onnx_path: the FP32 ONNX to start from (skips the export; torch-free for ptq/ptq-acc/wc).
        val_size: validation images scored (None = the whole ``val_split``).
        val_data: dataset for validation when it differs from ``data``.
        allow_missing_classes: accept a calibration/validation split that lacks some class (a
            model trained with ``--allow-missing-classes``).
        overwrite: replace an earlier INT8 model of the same name in ``out_dir`` (refused
            otherwise, before any work). Nothing is written unless everything succeeded.

    The report holds ``fp32``/``int8`` accuracies (on the labels), ``delta_pts`` (INT8 - FP32,
    negative = worse), ``worst_class_delta_pts``, ``agreement`` (top-1 equal to FP32), sizes,
    timings, and for ``ptq-acc`` the plain-PTQ numbers and ``kept_fp`` (layers left in FP).
    """
    _check_args(target, method, max_drop, calib_size)
    if val_size is not None and val_size < 1:
        raise QuantizationError(f"val_size must be positive, got {val_size}")
    if method == "ptq-acc" and max_drop is None:
        max_drop = DEFAULT_MAX_DROP
    for what, value in (("dataset", data), ("validation dataset", val_data)):
        if isinstance(value, (str, os.PathLike)) and not Path(value).exists():
            raise QuantizationError(f"{what} {value} does not exist")
    require("nncf", "openvino", "INT8 quantization")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise QuantizationError(f"output folder {out} exists and is not a folder")
    t0 = time.perf_counter()
    # every file is staged and moved into ``out`` only when everything succeeded (utils.outputs)
    with staged_output(out, "quantize", overwrite=overwrite) as stage, staging_dir(out, "fp32") as scratch:
        fp32_path, meta = _fp32_onnx(checkpoint, onnx_path, img_size, scratch)
        _check_classes(meta, val_data if val_data is not None else data)
        stem = _stem(meta, target, method)
        names = [f"{stem}.xml", f"{stem}.bin"] if target == "openvino" else [f"{stem}.onnx"]
        check_outputs(out, [*names, f"{stem}.report.json"], overwrite=overwrite)  # before the expensive part
        pp = meta.preprocessing
        calib = calibration_arrays(
            data, pp, calib_size, split=calib_split, seed=seed, allow_missing_classes=allow_missing_classes
        )
        val = validation_arrays(
            val_data if val_data is not None else data,
            pp,
            val_size,
            split=val_split,
            seed=seed,
            allow_missing_classes=allow_missing_classes,
        )
        fp32_logits = predict(fp32_path, val.x)
        staged = stage.path(names[0])
        artifact = stage.final(staged)
        stage.last.append(staged)  # the .xml / .onnx appears only once its weights are in place
        qinfo: dict[str, Any] = {
            "method": method,
            "engine": "nncf",
            "nncf_version": _nncf_version(),
            "format": "openvino-fq" if target == "openvino" else "onnx-qdq",
            "target": target,
            "preset": preset,
            "calib_size": len(calib),
            "calib_split": calib_split,
            "fast_bias_correction": fast_bias_correction,
            "ignored": list(ignore),
        }
        extra: dict[str, Any] = {}
        with quiet(progress):
            model = _run_method(
                method,
                target,
                fp32_path,
                meta,
                calib,
                val,
                fp32_logits,
                preset,
                ignore,
                calib_size,
                fast_bias_correction,
                max_drop,
                checkpoint,
                qat_epochs,
                qat_lr,
                data,
                calib_split,
                seed,
                qat_max_steps,
                progress,
                qinfo,
                extra,
            )
        if method == "wc":
            qinfo.update(format="openvino-weights-int8", calib_size=0)
        qmeta = meta.replace(
            precision="int8", quantization=qinfo, source_onnx_sha256=meta.source_onnx_sha256 or sha256_file(fp32_path)
        )
        if target == "openvino":
            save_ir(model, staged, qmeta)
        else:
            save_onnx(model, staged, qmeta)
        int8_logits = predict(staged, val.x)
        report = _report(meta, qmeta, val, fp32_logits, int8_logits, fp32_path, staged, max_drop, extra)
        report["artifact"] = str(artifact)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        files = [artifact] + ([artifact.with_suffix(".bin")] if target == "openvino" else [])
        report_path = stage.final(write_json(stage.path(f"{stem}.report.json"), report))
    return QuantizeResult(artifact, qmeta, report, report_path, [*files, report_path])


def _check_classes(meta: ModelMetadata, data: Any) -> None:
    """The model must predict the dataset's classes, in its order: checked before any work."""
    from edgefer.labels import CLASS_NAMES

    data_classes = (
        tuple(getattr(data, "class_names", CLASS_NAMES)) if not isinstance(data, (str, os.PathLike)) else CLASS_NAMES
    )
    if tuple(meta.class_names) != data_classes:
        raise QuantizationError(
            f"the model predicts {len(meta.class_names)} classes {list(meta.class_names)} but the dataset has "
            f"{len(data_classes)} {list(data_classes)}: quantize it on data with its own classes"
        )


def _nncf_version() -> str:
    import nncf

    return str(nncf.__version__)


def _run_method(
    method: str,
    target: str,
    fp32_path: Path,
    meta: ModelMetadata,
    calib: ArrayData,
    val: ArrayData,
    fp32_logits: np.ndarray,
    preset: str,
    ignore: Sequence[str],
    calib_size: int,
    fast_bias_correction: bool,
    max_drop: float | None,
    checkpoint: str | os.PathLike | None,
    qat_epochs: int,
    qat_lr: float,
    data: Any,
    calib_split: str,
    seed: int,
    qat_max_steps: int | None,
    progress: bool,
    qinfo: dict[str, Any],
    extra: dict[str, Any],
) -> Any:
    """Run one method; returns the in-memory quantized model (ov.Model or onnx.ModelProto)."""
    from edgefer.quantize import ptq

    kwargs = ptq.nncf_kwargs(target, preset, ignore, (), calib_size, fast_bias_correction)
    if method == "wc":
        return ptq.compress_weights_openvino(_load_fp32(fp32_path, "openvino"), ignore)
    if method == "ptq":
        model = _ptq(target, fp32_path, calib, kwargs)
        if target != "openvino":
            qinfo["qdq_nodes"] = ptq.check_qdq(model)
        return model
    if method == "ptq-acc":
        from edgefer.quantize.accuracy_control import quantize_with_accuracy_control

        model, info = quantize_with_accuracy_control(
            target, _load_fp32(fp32_path, target), calib, val, fp32_logits, float(max_drop or 0.0), kwargs
        )
        qinfo["max_drop_pt"] = max_drop
        qinfo["kept_fp"] = info["kept_fp"]
        extra["accuracy_control"] = info
        return model
    if method == "qat":
        if checkpoint is None:
            raise QuantizationError("QAT fine-tunes the PyTorch model: pass the checkpoint")
        from edgefer.quantize.qat import quantization_aware_training

        model, info = quantization_aware_training(
            checkpoint,
            target,
            meta,
            calib,
            data,
            calib_split,
            kwargs,
            epochs=qat_epochs,
            lr=qat_lr,
            seed=seed,
            max_steps=qat_max_steps,
            progress=progress,
        )
        qinfo.update(qat_epochs=qat_epochs, qat_lr=qat_lr, qat_steps=info.get("steps"))
        extra["qat"] = info
        return model
    raise QuantizationError(f"unknown method {method!r}")  # pragma: no cover - checked above


def _load_fp32(fp32_path: Path, target: str) -> Any:
    if target == "openvino":
        import openvino as ov

        return ov.convert_model(str(fp32_path))
    import onnx

    return onnx.load(str(fp32_path))


def input_name(onnx_model: Any) -> str:
    inits = {t.name for t in onnx_model.graph.initializer}
    return next(i.name for i in onnx_model.graph.input if i.name not in inits)


def _ptq(target: str, fp32_path: Path, calib: ArrayData, kwargs: dict[str, Any]) -> Any:
    from edgefer.quantize import ptq

    model = _load_fp32(fp32_path, target)
    if target == "openvino":
        return ptq.quantize_openvino(model, ptq.nncf_dataset(calib.x), **kwargs)
    return ptq.quantize_onnx(model, ptq.nncf_dataset(calib.x, input_name(model)), **kwargs)


def _report(
    meta: ModelMetadata,
    qmeta: ModelMetadata,
    val: ArrayData,
    fp32_logits: np.ndarray,
    int8_logits: np.ndarray,
    fp32_path: Path,
    artifact: Path,
    max_drop: float | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    cmp = compare(fp32_logits, int8_logits, val.labels, val.ids, meta.class_names)
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
        "budget_met": None if max_drop is None else bool(-cmp["delta_pts"] <= max_drop + 1e-9),
        "comparison": cmp,
    }
    report.update(extra)
    return report
