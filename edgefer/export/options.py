"""``ExportOptions``: how to export, as one object validated on construction and passed whole.

What is exported (a checkpoint or an edgefer ONNX) is an argument of :func:`edgefer.export.export`;
everything about *how* is here. A bad value is an :class:`ExportError` when the options are made
-- before any file is opened -- whether they come from ``edgefer export``, the pipeline or Python.
:meth:`ExportOptions.to_argv` gives the ``edgefer export`` command line that reproduces them
(the pipeline prints it for every export stage; ``tests/test_options.py`` parses it back with
the real CLI).

A device profile (``device_profile``, ``export/jetson/*.yaml``) supplies what the options leave at
``None``; :meth:`ExportOptions.resolved` returns the options with the profile's values filled in.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from edgefer.errors import ExportError
from edgefer.export.profiles import DeviceProfile, load_profile
from edgefer.export.targets import target_named
from edgefer.export.tensorrt import FP16_MODES
from edgefer.formats import PRECISIONS
from edgefer.utils.limits import MAX_BATCH, MAX_IMG_SIZE, check_at_most
from edgefer.utils.options import as_paths, flag, to_argv
from edgefer.utils.outputs import safe_name

INT8_MODES = ("qdq", "entropy")

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class ExportOptions:
    """How to export (see :func:`edgefer.export.export`); each field's CLI flag is in its metadata.

    Attributes:
        target: "onnx", "openvino" or "trt".
        precision: "fp32", "fp16" or "int8"; ``None``: the profile's, else fp32.
        out_dir: the output folder.
        batch / dynamic / max_batch / opt_batch: ``batch=N`` gives a static batch; the default
            (or ``dynamic=True``) a dynamic batch with ``max_batch`` recorded for TensorRT's
            optimisation profile (1, opt, max).
        img_size: input size (default: the checkpoint's).
        reference_data / reference_split: dataset whose split the FP32 ONNX predicts into
            ``reference.npz``.
        calib_data / calib_size: INT8 calibration dataset (required for int8) and image count.
        device_profile: a profile YAML path or a :class:`DeviceProfile`; explicit options win.
        onnx_only: trt only: write the ONNX and the device commands, build no engine.
        workspace_mib / dla_core: TensorRT builder settings (default: the profile's, else 1024 / none).
        trt_version: the device's TensorRT, for the printed ``trtexec`` flags when not building here.
        fp16_mode: "auto", "strongly-typed" or "flag" (FP16 builder flag, TensorRT <= 10).
        int8_mode: "qdq" (Q/DQ ONNX from the INT8 quantizer) or "entropy" (TensorRT's calibrator).
        timing_cache: TensorRT timing cache file (default ``out_dir/trt_timing.cache``).
        opset / name: ONNX opset; the file stem (default: the model name).
        progress: progress bars; allow_missing_classes: calibrate/reference on a split lacking a class.
        overwrite: replace earlier artifacts of the same name (a file edgefer did not write, never).
    """

    target: str = flag("onnx", "--target", help="onnx, openvino or trt.")
    precision: str | None = flag(None, "--precision", help="fp32, fp16 or int8 (default: the profile's, else fp32).")
    out_dir: PathLike = flag(Path("runs/export"), "--out", help="Output directory.")
    batch: int | None = flag(None, "--batch", type=int, help="Static batch size.", aliases=("--batch-size",))
    dynamic: bool | None = flag(None, "--dynamic", false="--static", type=bool, help="Dynamic batch (the default).")
    max_batch: int | None = flag(None, "--max-batch", type=int, help="Largest batch of a dynamic export.")
    opt_batch: int | None = flag(
        None, "--opt-batch", type=int, help="Batch TensorRT optimises for (default min(4, max))."
    )
    img_size: int | None = flag(None, "--img-size", type=int, help="Input size (default: the checkpoint's).")
    reference_data: PathLike | None = flag(
        None, "--data", type=Path, aliases=("--reference-data",), help="Dataset for reference.npz."
    )
    reference_split: str = flag("test", "--reference-split", help="Split reference.npz is predicted on.")
    calib_data: PathLike | None = flag(
        None, "--data", type=Path, aliases=("--calib-data",), help="Dataset for INT8 calibration."
    )
    calib_size: int = flag(300, "--calib-size", help="Calibration images (deterministic subset).")
    device_profile: PathLike | DeviceProfile | None = flag(
        None, "--profile", type=Path, help="Device profile YAML (export/jetson/*.yaml)."
    )
    onnx_only: bool = flag(False, "--onnx-only", help="trt: write the ONNX + device commands only.")
    workspace_mib: int | None = flag(None, "--workspace", type=int, help="TensorRT workspace limit in MiB.")
    dla_core: int | None = flag(None, "--dla-core", type=int, help="Jetson DLA core (GPU fallback on).")
    trt_version: str | None = flag(None, "--trt-version", help="Device TensorRT for printed commands.")
    fp16_mode: str = flag("auto", "--fp16-mode", help="auto, strongly-typed or flag.")
    int8_mode: str = flag("qdq", "--int8-mode", help="qdq (default) or entropy (TensorRT <= 10).")
    timing_cache: PathLike | None = flag(None, "--timing-cache", type=Path, help="TensorRT timing cache file.")
    opset: int = flag(17, "--opset", help="ONNX opset.")
    name: str | None = flag(None, "--name", help="File stem (default: the model name).")
    progress: bool = flag(True, None, false="--quiet", help="No progress bars.")
    allow_missing_classes: bool = flag(
        False, "--allow-missing-classes", help="Calibrate/reference on a split that lacks some class."
    )
    overwrite: bool = flag(False, "--overwrite", help="Replace earlier artifacts of the same name.")

    def __post_init__(self) -> None:
        as_paths(self, "out_dir", "reference_data", "calib_data", "device_profile", "timing_cache")
        target = target_named(self.target)  # an unknown one: ExportError naming the known ones
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ExportError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        for what, value in (
            ("--batch", self.batch),
            ("--max-batch", self.max_batch),
            ("--opt-batch", self.opt_batch),
            ("--calib-size", self.calib_size),
            ("--img-size", self.img_size),
            ("--workspace", self.workspace_mib),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ExportError(f"{what} must be a positive whole number, got {value!r}")
        for what, value in (("--batch", self.batch), ("--max-batch", self.max_batch), ("--opt-batch", self.opt_batch)):
            check_at_most(what, value, MAX_BATCH, ExportError)
        check_at_most("--img-size", self.img_size, MAX_IMG_SIZE, ExportError)
        if self.dla_core is not None and self.dla_core < 0:
            raise ExportError(f"--dla-core must be 0 or more, got {self.dla_core}")
        if self.fp16_mode not in FP16_MODES:
            raise ExportError(f"fp16_mode must be one of {', '.join(FP16_MODES)}, not {self.fp16_mode!r}")
        if self.int8_mode not in INT8_MODES:
            raise ExportError(f"int8_mode must be 'qdq' or 'entropy', not {self.int8_mode!r}")
        if self.int8_mode not in target.int8_modes:  # only TensorRT has its own calibrator
            raise ExportError("the entropy calibrator is a TensorRT feature: use --target trt (or int8_mode='qdq')")
        if self.opset < 13:
            raise ExportError(f"--opset {self.opset}: edgefer exports opset 13 or newer (Q/DQ per channel)")
        if self.name is not None:
            safe_name(self.name, "--name")

    def to_argv(self, *, checkpoint: PathLike | None = None, onnx: PathLike | None = None) -> list[str]:
        """The ``edgefer export`` command line that runs these options on ``checkpoint`` or ``onnx``."""
        source = ["--checkpoint", os.fspath(checkpoint)] if checkpoint is not None else []
        source += ["--onnx", os.fspath(onnx)] if onnx is not None else []
        return ["edgefer", "export", *source, *to_argv(self)]

    def profile(self) -> DeviceProfile | None:
        """The device profile, loaded when given as a path."""
        if self.device_profile is None or isinstance(self.device_profile, DeviceProfile):
            return self.device_profile
        return load_profile(self.device_profile)

    def resolved(self) -> ExportOptions:
        """These options with the profile's (or the built-in) values where they are ``None``:
        precision, batch shape, image size, workspace and DLA core are then all set."""
        prof = self.profile()

        def pick(value: Any, attr: str, default: Any) -> Any:
            if value is not None:
                return value
            if prof is not None and getattr(prof, attr) is not None:
                return getattr(prof, attr)
            return default

        dynamic = self.dynamic
        if dynamic is None:
            dynamic = prof.dynamic if (prof is not None and self.batch is None) else self.batch is None
        return dataclasses.replace(
            self,
            device_profile=prof,
            precision=pick(self.precision, "precision", "fp32"),
            dla_core=pick(self.dla_core, "dla_core", None),
            workspace_mib=int(pick(self.workspace_mib, "workspace_mib", 1024)),
            dynamic=bool(dynamic),
            batch=int(pick(self.batch, "batch", 1)),
            max_batch=pick(self.max_batch, "max_batch", None) if dynamic else None,
            opt_batch=pick(self.opt_batch, "opt_batch", None) if dynamic else None,
            img_size=pick(self.img_size, "img_size", None),
        )

    def out_path(self) -> Path:
        return Path(self.out_dir)
