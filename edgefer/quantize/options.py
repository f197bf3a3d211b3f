"""``QuantizeOptions``: how to quantize, as one object validated on construction and passed whole.

What is quantized (a checkpoint or an FP32 ONNX) and on which data are arguments of
:func:`edgefer.quantize.quantize` (and :func:`edgefer.quantize.sensitivity`); everything about
*how* is here. A bad value is a :class:`QuantizationError` when the options are made -- before any
file is opened -- from ``edgefer quantize``, the pipeline or Python alike.
:meth:`QuantizeOptions.to_argv` gives the ``edgefer quantize`` command line that reproduces them.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgefer.errors import EdgeferError, QuantizationError
from edgefer.export.targets import check_method, target_named
from edgefer.formats import TARGETS
from edgefer.utils.limits import MAX_IMG_SIZE, check_at_most
from edgefer.utils.options import as_paths, flag, to_argv

METHODS = ("ptq", "ptq-acc", "qat", "wc")
PRESETS = ("performance", "mixed")
#: QAT fine-tuning losses (see :mod:`edgefer.quantize.qat`): towards the FP32 model's logits, or the labels.
QAT_LOSSES = ("distill", "labels")
#: Budget used by ``ptq-acc`` and ``qat`` when no ``max_drop`` is given (the issue's target: <= 0.5 point).
DEFAULT_MAX_DROP = 0.5
#: The rest of the production budget ``ptq-acc`` and ``qat`` enforce when no ``gate`` is given, beside
#: ``max-drop``: no class significantly worse by more than a point (the gate's McNemar rule, so one
#: flipped image of a small class is not a failure) and >= 98 % of top-1 predictions as FP32.
DEFAULT_GATE_TERMS = "max-class-drop=1.0,min-agreement=0.98"
#: Gate keys that are not a budget against the FP32 model, so quantization cannot enforce them.
_NOT_QUANTIZATION_TERMS = ("min_accuracy", "max_p99_ms")

#: Methods that *enforce* the gate -- put layers back into floating point until it holds, NNCF's
#: accuracy restorer after PTQ (ptq-acc) or after the fine-tune (qat) -- rather than only check it.
ENFORCING_METHODS = ("ptq-acc", "qat")
#: The method used when none is named: ``ptq-acc``, held to the production gate. quantize() always
#: has labelled data at hand -- the dataset it calibrates on is opened by :mod:`edgefer.data`, whose
#: readers all carry labels, and the INT8 model is scored on its labelled ``val_split`` anyway -- so
#: the gate can always be held, and plain PTQ changed 3-6 % of the FP32 decisions on real faces
#: (issue 26). Plain PTQ stays available as ``method="ptq"`` (``--int8-method ptq``).
DEFAULT_METHOD = "ptq-acc"

if TYPE_CHECKING:
    from edgefer.bench.gate import Gate

PathLike = str | os.PathLike


def check_preset(target: str, preset: str) -> None:
    """A :class:`QuantizationError` for an NNCF ``preset`` that is not one of :data:`PRESETS` or that
    ``target``'s INT8 form cannot run (the one check: the options and :func:`edgefer.quantize.ptq.nncf_kwargs`)."""
    if preset not in PRESETS:
        raise QuantizationError(f"preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    target_named(target).check_preset(preset)


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize (see :func:`edgefer.quantize.quantize`); each field's CLI flag is in its metadata.

    Attributes:
        target: "onnx" (the default: explicit Q/DQ ONNX, TensorRT-compatible), "openvino" (INT8 IR) or "trt".
        method: "ptq-acc" (the default, :data:`DEFAULT_METHOD`: PTQ, then layers put back into
            floating point until ``gate`` holds -- the production gate, ``max-drop``
            :data:`DEFAULT_MAX_DROP` + :data:`DEFAULT_GATE_TERMS`, when none is given), "ptq"
            (plain PTQ: every quantizable layer INT8, the gate only checked), "qat" (fine-tuning,
            then the same accuracy control on the fine-tuned model), or "wc" (INT8 weights only,
            OpenVINO).
        calib_size: calibration images (deterministic subset).
        max_drop: accuracy budget in points (absolute); ptq-acc/qat enforce it, ptq/wc check it.
            It is the gate's ``max-drop`` term (giving both with different values is an error).
        gate: the benchmark gate's accuracy rules, in ``edgefer benchmark --gate`` syntax
            (``max-drop``, ``max-class-drop``, ``class-alpha``, ``max-mean-class-drop``,
            ``min-agreement``, ``max-kl``). ``ptq-acc`` and ``qat`` enforce it (default: ``max_drop``
            plus :data:`DEFAULT_GATE_TERMS`); for the other methods it is checked and reported. See
            :meth:`accuracy_gate`.
        preset: "performance" (symmetric) or "mixed" (asymmetric activations; OpenVINO only).
        ignore: regex patterns of graph node names to keep in floating point.
        out_dir: where the artifact and ``<stem>.report.json`` go.
        img_size: export size when starting from a checkpoint (default: the checkpoint's).
        fast_bias_correction: NNCF's fast bias correction (False: the accurate, slower one).
        qat_epochs / qat_lr / qat_max_steps: QAT fine-tuning length and learning rate.
        qat_loss: what QAT fine-tunes towards: "distill" (default), the FP32 model's own logits
            (KL at ``qat_temperature``, no label term), or "labels" (cross-entropy). Distillation
            is the default because the gate scores INT8 against FP32 (agreement, per-class change)
            and label fine-tuning moves decisions away from FP32's (benchmarks/quantization.md).
        qat_temperature: the distillation temperature T (loss T^2 * KL at T; "distill" only).
        progress: progress bars and NNCF's logs.
        val_size: validation images scored (None = the whole ``val_split``).
        calib_split / val_split: the splits calibration and validation images come from.
        seed: the subset draws.
        allow_missing_classes: accept a split that lacks some class.
        overwrite: replace an earlier INT8 model of the same name (refused otherwise, before any work).
    """

    target: str = flag("onnx", "--target", help="onnx (Q/DQ ONNX) | openvino (INT8 IR) | trt.")
    method: str = flag(
        DEFAULT_METHOD,
        "--int8-method",
        aliases=("--method",),
        help="ptq-acc (default: PTQ, then layers kept in floating point until --gate holds, the production "
        "gate unless given) | ptq (plain PTQ, every layer INT8; the gate only checked) | qat | wc (INT8 weights "
        "only).",
    )
    calib_size: int = flag(300, "--calib-size", help="Calibration images (deterministic subset).")
    max_drop: float | None = flag(
        None,
        "--max-drop",
        type=float,
        help="Accuracy budget in points (ptq-acc, qat: enforced, default 0.5; else checked, exit 3).",
    )
    gate: str | None = flag(
        None,
        "--gate",
        help="Accuracy rules as for benchmark --gate (ptq-acc, qat: enforced, default "
        "max-drop=<max-drop>,max-class-drop=1.0,min-agreement=0.98; else checked, exit 3).",
    )
    preset: str = flag("performance", "--preset", help="performance (symmetric) | mixed (OpenVINO).")
    ignore: tuple[str, ...] = flag((), "--ignore", type=str, help="Regex of graph node names to keep in FP (repeat).")
    out_dir: PathLike = flag(Path("runs/quantize"), "--out", help="Output directory.")
    img_size: int | None = flag(None, "--img-size", type=int, help="Export size (default: the checkpoint's).")
    fast_bias_correction: bool = flag(
        True, None, false="--accurate-bias-correction", help="NNCF's slower, more accurate bias correction."
    )
    qat_epochs: int = flag(2, "--qat-epochs", help="QAT fine-tuning epochs.")
    qat_lr: float = flag(1e-4, "--qat-lr", help="QAT learning rate.")
    qat_max_steps: int | None = flag(None, None)
    qat_loss: str = flag(
        "distill", "--qat-loss", help="QAT fine-tunes towards: distill (the FP32 model's logits) | labels."
    )
    qat_temperature: float = flag(1.0, "--qat-temperature", help="QAT distillation temperature.")
    progress: bool = flag(True, None, false="--quiet", help="No progress bars.")
    val_size: int | None = flag(None, "--val-size", type=int, help="Score on N validation images (default all).")
    calib_split: str = flag("train", "--calib-split", help="Split the calibration images come from.")
    val_split: str = flag("test", "--val-split", help="Split INT8 is scored (and controlled) on.")
    seed: int = flag(0, "--seed", help="Seed of the calibration and validation subsets.")
    allow_missing_classes: bool = flag(
        False, "--allow-missing-classes", help="Calibrate on a split that lacks some class (model trained so)."
    )
    overwrite: bool = flag(False, "--overwrite", help="Replace an earlier INT8 model of the same name.")

    def __post_init__(self) -> None:
        as_paths(self, "out_dir")
        if self.target not in TARGETS:
            raise QuantizationError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.method not in METHODS:
            raise QuantizationError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        check_method(self.target, self.method)  # e.g. weights-only compression is OpenVINO's
        check_preset(self.target, self.preset)
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 100.0:
            raise QuantizationError(f"max_drop is in accuracy points (0..100), got {self.max_drop}")
        for what, value in (
            ("calib_size", self.calib_size),
            ("val_size", self.val_size),
            ("img_size", self.img_size),
            ("qat_epochs", self.qat_epochs),
            ("qat_max_steps", self.qat_max_steps),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise QuantizationError(f"{what} must be a positive whole number, got {value!r}")
        check_at_most("img_size", self.img_size, MAX_IMG_SIZE, QuantizationError)
        if not self.qat_lr > 0:
            raise QuantizationError(f"qat_lr must be positive, got {self.qat_lr}")
        if self.qat_loss not in QAT_LOSSES:
            raise QuantizationError(f"qat_loss must be one of {', '.join(QAT_LOSSES)}, not {self.qat_loss!r}")
        if isinstance(self.qat_temperature, bool) or not (
            isinstance(self.qat_temperature, int | float) and 0 < self.qat_temperature < float("inf")
        ):
            raise QuantizationError(f"qat_temperature must be a positive number, got {self.qat_temperature!r}")
        if isinstance(self.ignore, str):  # one pattern given as a string, not its characters
            object.__setattr__(self, "ignore", (self.ignore,))
        object.__setattr__(self, "ignore", tuple(str(p) for p in self.ignore))
        if self.method in ENFORCING_METHODS and self.max_drop is None and self.gate is None:
            object.__setattr__(self, "max_drop", DEFAULT_MAX_DROP)
        if self.gate is not None:
            object.__setattr__(self, "gate", self._checked_gate(str(self.gate)))
            if self.method in ENFORCING_METHODS and self.max_drop is None:
                given = self.accuracy_gate()
                object.__setattr__(self, "max_drop", given.max_drop if given and given.max_drop is not None else None)

    def _checked_gate(self, text: str) -> str:
        """The gate string in its canonical spelling, or a QuantizationError saying what is wrong."""
        from edgefer.bench.gate import Gate

        try:
            gate = Gate.parse(text)
        except EdgeferError as exc:
            raise QuantizationError(f"--gate {text!r}: {exc}") from None
        for attr in _NOT_QUANTIZATION_TERMS:
            if getattr(gate, attr) is not None:
                key = attr.replace("_", "-")
                raise QuantizationError(
                    f"--gate {key} is not a budget against the FP32 model, so quantization cannot hold it; "
                    f"give it to edgefer benchmark --gate (quantize takes max-drop, max-class-drop, class-alpha, "
                    "max-mean-class-drop, min-agreement, max-kl)"
                )
        if self.max_drop is not None and gate.max_drop is not None and gate.max_drop != self.max_drop:
            raise QuantizationError(
                f"--max-drop {self.max_drop:g} and --gate max-drop={gate.max_drop:g} disagree: --max-drop is the "
                "gate's max-drop term, give it once"
            )
        return str(gate)

    def accuracy_gate(self) -> Gate | None:
        """The accuracy rules this quantization is held to (None: none given, nothing to check).

        ``gate`` with ``max_drop`` as its ``max-drop`` term; for ``ptq-acc``/``qat`` without a ``gate``, the
        production budget ``max-drop=<max_drop>`` + :data:`DEFAULT_GATE_TERMS`; for the other
        methods without a ``gate``, ``max-drop=<max_drop>`` alone when a ``max_drop`` is given.
        """
        from edgefer.bench.gate import Gate

        if self.gate is not None:
            gate = Gate.parse(self.gate)
            if self.max_drop is not None and gate.max_drop is None:
                gate = dataclasses.replace(gate, max_drop=self.max_drop)
            return gate
        if self.method in ENFORCING_METHODS:
            return Gate.parse(f"max-drop={self.max_drop},{DEFAULT_GATE_TERMS}")
        return None if self.max_drop is None else Gate(max_drop=self.max_drop)

    def to_argv(self, data: PathLike, *, checkpoint: PathLike | None = None, onnx: PathLike | None = None) -> list[str]:
        """The ``edgefer quantize`` command line that runs these options on ``data`` and the model."""
        source = ["--checkpoint", os.fspath(checkpoint)] if checkpoint is not None else []
        source += ["--onnx", os.fspath(onnx)] if onnx is not None else []
        return ["edgefer", "quantize", *source, "--data", os.fspath(data), *to_argv(self)]
