"""The pipeline's options: what ``edgefer pipeline`` is asked to make, checked when made.

:class:`PipelineConfig` lists which option is a parameter of which stage (so a changed option
reruns only what it affects); the training options it passes over the recipe's, and the ones that
do not change the weights, live beside it. The stage graph is :mod:`edgefer.pipeline.flow`; what
the run prints at the end is :mod:`edgefer.pipeline.summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgefer.backends.base import check_streams
from edgefer.bench.options import DEFAULT_ITERS, DEFAULT_WARMUP
from edgefer.errors import EdgeferError
from edgefer.formats import TARGETS  # one list for export, quantize and the pipeline
from edgefer.pipeline.stages import canonical_params
from edgefer.quantize.options import DEFAULT_METHOD

#: Default gate of the pipeline, sized for the demo: a 750-image synthetic test split (one image of a
#: rare class is several points of that class) and a 64 px MobileNetV3, whose INT8 flips near-tied
#: predictions (measured: OpenVINO INT8 agrees 96.8 % with FP32 at -0.13 pt accuracy). The
#: production gate for RAF-DB is ``PRODUCTION_GATE``; pass it with ``--gate`` on real data.
PRODUCTION_GATE = "max-drop=0.5,max-class-drop=1.0,min-agreement=0.98"
DEFAULT_GATE = "max-drop=1.0,max-class-drop=5.0,min-agreement=0.95"


@dataclass
class PipelineConfig:
    """Options of ``edgefer pipeline`` (the CLI flags map one to one), validated on construction.

    Every option that changes a result is a parameter of the stages it affects, so changing it
    between two runs reruns them (and what depends on them):

    * data (synthetic): ``synthetic_train``, ``synthetic_test``, ``synthetic_difficulty``, ``seed``;
    * train: the resolved training configuration (``recipe`` and its contents, ``model``,
      ``epochs``, ``img_size``, ``batch_size``, ``lr``, ``pretrained``, ``seed``, ``data``);
    * export: ``model``, ``checkpoint``, ``data`` (the FP32 reference's images);
    * INT8 stages: ``int8_method``, ``calib_size``, ``max_drop`` and the INT8 gate
      (:meth:`_Flow.int8_gate`: ``gate``'s accuracy rules with ``max_drop`` as the overall term when
      tighter; for ``ptq-acc`` and ``qat`` only, which enforce it on every target -- plain ptq's
      artifacts do not depend on the gate, which the benchmark checks),
      ``checkpoint``, ``data``; FP16/TensorRT stages: the precision and ``model``;
    * benchmark: the compared artifacts (``targets``), ``data``, ``gate`` (as parsed, so a
      re-spelled equal gate is no change), ``batches``, ``warmup``, ``iters`` and ``threads`` (the
      latencies it reports depend on the thread count); bundle: the bundled artifacts.

    Not parameters: ``progress`` and ``force`` (how a run reports, not what it makes), ``workers``
    (training augmentations are functions of (seed, epoch, sample), not of the worker count) and
    ``out`` (the run directory itself).
    """

    data: str = "synthetic"
    model: str = "msff_mobilenetv3"
    targets: tuple[str, ...] = ("openvino", "onnx")
    out: str = "runs/pipeline"
    checkpoint: str | None = None
    recipe: str | None = None  # training recipe name or path; default: synthetic_edge for synthetic data
    epochs: int | None = None
    img_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    pretrained: str | None = None
    workers: int | None = None
    synthetic_train: int = 3000
    synthetic_test: int = 750
    synthetic_difficulty: float = 0.6  # edgefer.data.synth.DEFAULT_DIFFICULTY (see there for why)
    seed: int = 0
    calib_size: int = 300
    int8_method: str = DEFAULT_METHOD  # ptq-acc (held to the gate) | ptq (plain) | qat
    max_drop: float | None = None
    gate: str = DEFAULT_GATE
    batches: tuple[int, ...] = (1, 8)
    warmup: int = DEFAULT_WARMUP  # the timing defaults are edgefer benchmark's (one vocabulary, issue 24)
    iters: int = DEFAULT_ITERS
    seconds: float | None = None  # a time budget per measurement instead of iters
    mode: str = "latency"  # latency | throughput, as edgefer benchmark --mode
    streams: int | None = None  # requests in flight in throughput mode, as edgefer benchmark --streams
    threads: int | None = None
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.targets = tuple(t.strip().lower() for t in self.targets if t.strip())
        self.batches = tuple(self.batches)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`EdgeferError` for any option that cannot work, before a stage runs or a file
        is written (a typo in ``--gate`` must not cost a training run first)."""
        from edgefer.bench.gate import Gate
        from edgefer.data.calibration import MIN_CALIB_SIZE
        from edgefer.labels import NUM_CLASSES

        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise EdgeferError(msg)

        unknown = [t for t in self.targets if t not in TARGETS]
        check(
            not unknown and bool(self.targets),
            f"unknown target(s) {unknown or '(none)'}; choose from {', '.join(TARGETS)}",
        )
        check(
            self.int8_method in INT8_METHODS, f"int8 method must be {', '.join(INT8_METHODS)}, not {self.int8_method!r}"
        )
        try:
            Gate.parse(self.gate)
        except EdgeferError as exc:
            raise EdgeferError(f"--gate {self.gate!r}: {exc}") from None
        check(bool(str(self.data).strip()), "data is required: a dataset path or 'synthetic'")
        check(bool(str(self.out).strip()), "out is required: the run directory")
        for name in ("synthetic_train", "synthetic_test"):
            value = getattr(self, name)
            check(value >= NUM_CLASSES, f"{name} must be >= {NUM_CLASSES} (one image per class), got {value}")
        check(
            0.0 <= self.synthetic_difficulty <= 1.0,
            f"synthetic_difficulty must be in [0, 1], got {self.synthetic_difficulty}",
        )
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.calib_size >= MIN_CALIB_SIZE, f"calib_size must be >= {MIN_CALIB_SIZE}, got {self.calib_size}")
        if self.data.lower() == "synthetic":
            check(
                self.calib_size <= self.synthetic_train,
                f"calib_size {self.calib_size} is more than the {self.synthetic_train} synthetic train images",
            )
        check(
            self.max_drop is None or 0.0 <= self.max_drop <= 100.0,
            f"max_drop is in accuracy points (0..100), got {self.max_drop}",
        )
        check(
            bool(self.batches) and all(isinstance(b, int) and b >= 1 for b in self.batches),
            f"batches must be positive integers, got {list(self.batches)}",
        )
        check(self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}")
        check(self.iters >= 1, f"iters must be >= 1, got {self.iters}")
        check(self.mode in ("latency", "throughput"), f"mode must be latency or throughput, got {self.mode!r}")
        check_streams(self.streams, self.mode, EdgeferError)
        check(self.seconds is None or self.seconds > 0, f"seconds must be positive, got {self.seconds}")
        check(self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        if self.checkpoint is None:
            from edgefer.models import get_entry
            from edgefer.training.config import load_config

            # The training options as train() will see them (recipe found and valid, epochs >= 1, ...).
            load_config(self.training_recipe(), train_overrides(self, data="data", out="out"))
            get_entry(self.model)

    def training_recipe(self) -> str | None:
        """The recipe train() reads: ``recipe``, else ``synthetic_edge`` for synthetic data."""
        if self.recipe:
            return self.recipe
        return "synthetic_edge" if self.data.lower() == "synthetic" else None


INT8_METHODS = ("ptq", "ptq-acc", "qat")
#: Training options that do not change the trained weights (see PipelineConfig).
NOT_TRAIN_PARAMS = ("out", "progress", "workers", "resume", "overwrite")


def train_overrides(cfg: PipelineConfig, data: str, out: str) -> dict[str, Any]:
    """The training options the pipeline passes over the recipe's (None: the recipe's value)."""
    values: dict[str, Any] = {"data": data, "model": cfg.model, "out": out, "seed": cfg.seed, "progress": cfg.progress}
    for key in ("epochs", "img_size", "batch_size", "lr", "pretrained", "workers"):
        value = getattr(cfg, key)
        if value is not None:
            values[key] = value
    return values


def train_params(train_config: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the train stage: a resolved training configuration (``TrainConfig.to_dict()``,
    or the one stored in a checkpoint) without the options that do not change the weights."""
    return canonical_params({k: v for k, v in train_config.items() if k not in NOT_TRAIN_PARAMS})
