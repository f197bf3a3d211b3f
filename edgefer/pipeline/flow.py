"""``edgefer pipeline``: the whole flow as one resumable command.

data -> train (or ``--checkpoint``) -> ONNX + FP32 reference -> FP16 / INT8 per target ->
benchmark with the gate -> bundle -> summary. Every stage is an ordinary library call (the same
one its CLI command makes), declared as a :class:`~edgefer.pipeline.stages.Stage` with the files
it reads and writes, so a re-run skips what is up to date and ``--overwrite`` redoes everything.

Each artifact stage writes ``<out>/stages/<stage>.json`` listing the files it produced; those
files are the stage's outputs, so deleting any one of them reruns that stage and everything
downstream of it. The runner adds to the same file (one for every stage) the stage's parameters
and their hash: the options that determine that stage's result (``--calib-size`` for the INT8
stages, ``--gate`` for the benchmark, the resolved training recipe for train, ...). Changing one
reruns the stages that depend on it and, through the files they rewrite, everything downstream;
the other stages stay skipped. Which options are parameters of which stage is listed in
:class:`PipelineConfig`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefer.bench.options import DEFAULT_ITERS, DEFAULT_WARMUP
from edgefer.bench.report import COMPACT_COLUMNS, table_rows
from edgefer.errors import EdgeferError
from edgefer.export.options import ExportOptions
from edgefer.formats import TARGETS, format_named  # one list for export, quantize and the pipeline
from edgefer.pipeline.stages import Stage, StageOutcome, StageRunner, canonical_params
from edgefer.quantize.options import DEFAULT_METHOD, ENFORCING_METHODS, QuantizeOptions
from edgefer.utils.io import ensure_writable_dir, write_json

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


def int8_summary(report: dict[str, Any]) -> str:
    """One line on what an INT8 stage made: the layers accuracy control kept in floating point (or
    that plain PTQ kept none and was not held to the gate), and the result against FP32."""
    acc = report.get("accuracy_control")
    if acc:
        kept = acc.get("kept_fp") or []
        what = f"held to {report.get('gate')}, kept {len(kept)} layer(s) in FP" + (
            f" ({', '.join(kept)})" if kept else ""
        )
    else:
        method = (report.get("quantization") or {}).get("method", "ptq")
        what = f"{method}: every quantizable layer INT8, not held to a gate"
    agreement = report.get("agreement")
    agreed = f", agreement {100 * agreement:.1f} %" if isinstance(agreement, (int, float)) else ""
    delta = report.get("delta_pts")
    return what + (f", delta {delta:+.2f} pt" if isinstance(delta, (int, float)) else "") + agreed


def train_params(train_config: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the train stage: a resolved training configuration (``TrainConfig.to_dict()``,
    or the one stored in a checkpoint) without the options that do not change the weights."""
    return canonical_params({k: v for k, v in train_config.items() if k not in NOT_TRAIN_PARAMS})


@dataclass
class PipelineResult:
    out: Path
    checkpoint: Path
    artifacts: dict[str, Path]
    report_dir: Path
    bundle: Path
    gate_passed: bool
    gate_failures: list[str]
    report: dict[str, Any]  # report.json of the benchmark stage
    outcomes: list[StageOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Flow:
    """Builds the stage list for one :class:`PipelineConfig` and keeps the paths in one place."""

    def __init__(self, cfg: PipelineConfig, on_event: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.out = ensure_writable_dir(cfg.out)
        self.on_event = on_event
        self.stage_dir = self.out / "stages"
        self.synthetic = cfg.data.lower() == "synthetic"
        self.data = self.out / "data" / "synthetic" if self.synthetic else Path(cfg.data)
        self.train_dir = self.out / "train"
        self.checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else self.train_dir / "best.pt"
        self.export_dir = self.out / "export"
        self.onnx = self.export_dir / f"{cfg.model}.onnx"
        self.reference = self.export_dir / "reference.npz"
        self.report_dir = self.out / "report"
        self.bundle_dir = self.out / "bundle"
        self.notes: list[str] = []

    # -- bookkeeping -------------------------------------------------------------------------

    def manifest(self, name: str) -> Path:
        return self.stage_dir / f"{name}.json"

    def produced(self, name: str) -> list[Path]:
        """Files a finished stage wrote (from its manifest), [] when it has not run."""
        m = self.manifest(name)
        if not m.exists():
            return []
        try:
            return [Path(p) for p in json.loads(m.read_text())["files"]]
        except (OSError, ValueError, KeyError):
            return []

    def artifact(self, name: str) -> Path | None:
        try:
            return Path(json.loads(self.manifest(name).read_text())["artifact"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not run yet, or a failed run left only the runner's record

    def record(self, name: str, artifact: Path, files: list[Path], **extra: Any) -> None:
        write_json(self.manifest(name), {"artifact": str(artifact), "files": [str(f) for f in files], **extra})

    def stage(
        self,
        name: str,
        run: Callable[[], Any],
        inputs: list[Path],
        command: list[str],
        params: dict[str, Any],
        **kw: Any,
    ) -> Stage:
        """An artifact stage whose outputs are its manifest plus the files the manifest lists."""
        return Stage(
            name,
            run,
            outputs=[self.manifest(name), *self.produced(name)],
            inputs=inputs,
            command=command,
            params=params,
            **kw,
        )

    # -- the flow ----------------------------------------------------------------------------

    def data_label_file(self) -> Path:
        return self.data / "basic" / "EmoLabel" / "list_patition_label.txt"

    def data_stage(self) -> Stage:
        cfg = self.cfg

        def run() -> None:
            from edgefer.data.synth import generate_synthetic

            # overwrite: the set under <out>/data is the pipeline's own; a set made with other
            # parameters is replaced (one made with the same parameters is reused as it is).
            generate_synthetic(
                self.data,
                n_train=cfg.synthetic_train,
                n_test=cfg.synthetic_test,
                seed=cfg.seed,
                progress=cfg.progress,
                overwrite=True,
                difficulty=cfg.synthetic_difficulty,
            )

        params = {
            "n_train": cfg.synthetic_train,
            "n_test": cfg.synthetic_test,
            "seed": cfg.seed,
            "difficulty": cfg.synthetic_difficulty,
        }
        return Stage(
            "data",
            run,
            outputs=[self.data_label_file()],
            params=params,
            command=[
                "edgefer",
                "data",
                "synth",
                "--out",
                str(self.data),
                "--n-train",
                str(cfg.synthetic_train),
                "--n-test",
                str(cfg.synthetic_test),
                "--seed",
                str(cfg.seed),
                "--difficulty",
                f"{cfg.synthetic_difficulty:g}",
            ],
        )

    def data_inputs(self) -> list[Path]:
        return [self.data_label_file()] if self.synthetic else []

    def train_overrides(self) -> dict[str, Any]:
        return train_overrides(self.cfg, data=str(self.data), out=str(self.train_dir))

    def recipe(self) -> str | None:
        return self.cfg.training_recipe()

    def resumable(self, last: Path, params: dict[str, Any]) -> bool:
        """Whether ``last.pt`` of an interrupted training can be continued: it was trained with the
        same parameters, on the data as it is now (not on a set regenerated since)."""
        from edgefer.training.checkpoint import load_checkpoint

        if not last.exists():
            return False
        if any(p.exists() and p.stat().st_mtime > last.stat().st_mtime for p in self.data_inputs()):
            self.on_event(f"  not resuming {last}: the dataset changed since")
            return False
        try:
            stored = load_checkpoint(last).get("train_config") or {}
        except EdgeferError as exc:
            self.on_event(f"  not resuming {last}: {exc}")
            return False
        if train_params(stored) != params:
            self.on_event(f"  not resuming {last}: it was trained with other parameters")
            return False
        return True

    def train_stage(self) -> Stage:
        from edgefer.training.config import load_config, train_argv

        done = self.train_dir / "complete.json"
        params = train_params(load_config(self.recipe(), self.train_overrides()).to_dict())

        def run() -> None:
            from edgefer.training import train

            overrides = self.train_overrides()
            last = self.train_dir / "last.pt"
            if not done.exists() and self.resumable(last, params):
                overrides["resume"] = str(last)
                self.on_event(f"  resuming the interrupted training from {last}")
            else:  # the run directory is the pipeline's own: a training with other parameters replaces it
                overrides["overwrite"] = True
            # An earlier, complete training is being replaced: if this one is interrupted, the
            # next run must see an interrupted training (and resume it), not a complete one.
            done.unlink(missing_ok=True)
            result = train(load_config(self.recipe(), overrides))
            write_json(done, {"best": str(result.best_checkpoint), "metrics": result.metrics})

        # spelt from TrainConfig's field flags, like every other stage's command
        command = train_argv(self.train_overrides(), self.recipe())
        return Stage(
            "train", run, outputs=[done, self.checkpoint], inputs=self.data_inputs(), command=command, params=params
        )

    def export_options(self, out: Path, **fields: Any) -> ExportOptions:
        """Options of an export stage: the model's name, the pipeline's progress setting, and
        ``overwrite`` (a stage's folder is the pipeline's own: a re-run replaces its artifact)."""
        return ExportOptions(
            out_dir=str(out), name=self.cfg.model, progress=self.cfg.progress, overwrite=True, **fields
        )

    def export_run(
        self, name: str, options: ExportOptions, *, checkpoint: Path | None = None, onnx: Path | None = None
    ) -> Callable[[], Any]:
        """The run of an export stage: :func:`edgefer.deploy.export` with ``options`` -- the call
        ``options.to_argv()`` (the stage's command) makes -- recording what it wrote."""

        def run() -> Any:
            from edgefer.deploy import export

            res = export(checkpoint, options, onnx=onnx)
            files = [Path(f) for f in res.files if Path(f).exists()]
            self.record(
                name,
                res.artifact,
                files or [res.artifact],
                parity=res.parity,
                engine_built=res.engine_built,
                commands=res.commands,
            )
            return res

        return run

    def export_stage(self) -> Stage:
        opts = self.export_options(self.export_dir, target="onnx", reference_data=str(self.data))
        params = {"model": self.cfg.model, "checkpoint": str(self.checkpoint), "data": str(self.data)}
        return self.stage(
            "export",
            self.export_run("export", opts, checkpoint=self.checkpoint),
            [self.checkpoint, *self.data_inputs()],
            opts.to_argv(checkpoint=self.checkpoint),
            params,
        )

    def openvino_stage(self, precision: str) -> Stage:
        name = f"openvino-{precision}"
        opts = self.export_options(self.out / "openvino", target="openvino", precision=precision)
        return self.stage(
            name,
            self.export_run(name, opts, onnx=self.onnx),
            [self.onnx],
            opts.to_argv(onnx=self.onnx),
            {"model": self.cfg.model, "precision": precision},
        )

    def int8_gate(self) -> str | None:
        """The accuracy rules every INT8 stage is held to: the benchmark gate's (``ptq-acc`` and ``qat`` enforce
        them, so their models pass the benchmark on the same images; other methods report them),
        with ``max_drop`` as the overall term when it is tighter. Latency and absolute-accuracy
        terms are the benchmark's alone. None when nothing is left (then ``max_drop`` alone)."""
        import dataclasses

        from edgefer.bench.gate import Gate

        gate = dataclasses.replace(Gate.parse(self.cfg.gate), min_accuracy=None, max_p99_ms=None)
        if self.cfg.max_drop is not None:
            tighter = self.cfg.max_drop if gate.max_drop is None else min(self.cfg.max_drop, gate.max_drop)
            gate = dataclasses.replace(gate, max_drop=tighter)
        return str(gate) if gate.to_dict() else None

    def int8_stage(self, target: str) -> Stage:
        name = f"{target}-int8"
        cfg = self.cfg
        # ptq-acc and qat search for the model that passes the gate, so the gate shapes their artifact
        # (and a changed gate reruns it); plain ptq's does not depend on it: the benchmark checks the
        # gate, and a changed gate reruns only the benchmark and the bundle.
        gate = self.int8_gate() if cfg.int8_method in ENFORCING_METHODS else None
        opts = QuantizeOptions(
            target=target,
            method=cfg.int8_method,
            calib_size=cfg.calib_size,
            max_drop=cfg.max_drop if gate is None else None,  # else it is the gate's max-drop term
            gate=gate,
            out_dir=str(self.out / target),
            progress=cfg.progress,
            overwrite=True,  # the stage's folder is the pipeline's own
        )
        # QAT fine-tunes the PyTorch model; every other method starts from the exported FP32 ONNX
        source = {"checkpoint": self.checkpoint} if cfg.int8_method == "qat" else {"onnx": self.onnx}

        def run() -> None:
            from edgefer.bundle import artifact_files
            from edgefer.quantize import quantize

            res = quantize(source.get("checkpoint"), self.data, opts, onnx_path=source.get("onnx"))
            self.on_event(f"  {name}: {int8_summary(res.report)}")
            files = artifact_files(res.artifact) + ([res.report_path] if res.report_path else [])
            self.record(name, res.artifact, files, report=res.report)

        params = {
            "target": target,
            "method": cfg.int8_method,
            "calib_size": cfg.calib_size,
            "max_drop": cfg.max_drop,
            "gate": gate,
            "checkpoint": str(self.checkpoint),
            "data": str(self.data),
        }
        return self.stage(name, run, [self.onnx, *self.data_inputs()], opts.to_argv(self.data, **source), params)

    def onnx_fp16_stage(self) -> Stage:
        opts = self.export_options(self.out / "onnx", target="onnx", precision="fp16")
        return self.stage(
            "onnx-fp16",
            self.export_run("onnx-fp16", opts, onnx=self.onnx),
            [self.onnx],
            opts.to_argv(onnx=self.onnx),
            {"model": self.cfg.model},
        )

    def trt_stage(self, precision: str, source: Callable[[], Path | None], source_stage: str) -> Stage:
        """Build a TensorRT engine where tensorrt imports; else prepare the device's ONNX and command."""
        from edgefer.export.targets import target_named

        trt = target_named("trt")
        name = trt.stage_name(precision)
        build = format_named(trt.name).installed()
        opts = self.export_options(self.out / trt.name, target=trt.name, precision=precision, onnx_only=not build)
        inputs = self.produced(source_stage)[:1] or [self.onnx]

        def run() -> None:
            src = source()
            res = self.export_run(name, opts, onnx=src)()
            if not res.engine_built:
                self.notes.append(
                    f"TensorRT {precision}: no engine built here (tensorrt not installed); "
                    f"on the device run: {res.commands[0] if res.commands else 'edgefer export --target trt'}"
                )

        return self.stage(
            name,
            run,
            inputs,
            opts.to_argv(onnx=inputs[0]),
            {"model": self.cfg.model, "precision": precision, "source": str(inputs[0]), "engine": build},
        )

    def bench_models(self) -> list[Path]:
        """Every artifact the benchmark compares: the checkpoint (PyTorch FP32) first, then the exports."""
        names = ["export"]
        if "openvino" in self.cfg.targets:
            names += ["openvino-fp32", "openvino-fp16", "openvino-int8"]
        if "onnx" in self.cfg.targets or "trt" in self.cfg.targets:
            names += ["onnx-fp16", "onnx-int8"]
        if "trt" in self.cfg.targets and format_named("trt").installed():
            names += ["trt-fp16", "trt-int8"]
        arts = [a for a in (self.artifact(n) for n in names) if a is not None]
        return [self.checkpoint, *arts]

    def bench_stage(self) -> Stage:
        import dataclasses

        from edgefer.bench.gate import Gate
        from edgefer.bench.options import BenchOptions

        report_json = self.report_dir / "report.json"
        cfg = self.cfg
        opts = BenchOptions(
            split="test",
            batches=cfg.batches,
            warmup=cfg.warmup,
            iters=cfg.iters,
            seconds=cfg.seconds,
            mode=cfg.mode,
            threads=cfg.threads,
            gate=cfg.gate,
            out_dir=self.report_dir,
            progress=cfg.progress,
        )

        def run() -> None:
            from edgefer.bench.harness import run_benchmark

            # the report is saved below, with the pipeline's notes added
            report = run_benchmark(
                self.bench_models(), self.data, dataclasses.replace(opts, out_dir=None), reference=self.reference
            )
            report.notes.extend(self.notes)
            report.save(self.report_dir)

        models = [str(p) for p in self.bench_models()]
        command = opts.to_argv(models, self.data, reference=self.reference)
        inputs = [Path(p) for p in models] + [self.reference]
        params = {
            "models": models,
            "data": str(self.data),
            "reference": str(self.reference),
            "gate": Gate.parse(cfg.gate).to_dict(),
            "batches": list(cfg.batches),
            "warmup": cfg.warmup,
            "iters": cfg.iters,
            "seconds": cfg.seconds,
            "mode": cfg.mode,
            "threads": cfg.threads,
        }
        return Stage(
            "benchmark",
            run,
            outputs=[report_json, self.report_dir / "report.md"],
            inputs=inputs,
            command=command,
            params=params,
        )

    def bundle_stage(self) -> Stage:
        def run() -> None:
            from edgefer.bundle import make_bundle

            # the pipeline reports a failed gate itself (exit 3); its bundle records the verdict as failed
            make_bundle(
                self.bench_models()[1:],
                self.bundle_dir,
                reference=self.reference,
                report=self.report_dir,
                overwrite=True,
                allow_failed_gate=True,
            )

        arts = [str(p) for p in self.bench_models()[1:]]
        return Stage(
            "bundle",
            run,
            outputs=[self.bundle_dir / "bundle.json"],
            inputs=[Path(a) for a in arts] + [self.report_dir / "report.json"],
            command=[
                "edgefer",
                "bundle",
                *arts,
                "--reference",
                str(self.reference),
                "--report",
                str(self.report_dir),
                "--out",
                str(self.bundle_dir),
                "--overwrite",
                "--allow-failed-gate",
            ],
            params={"artifacts": arts, "reference": str(self.reference)},
        )


def run_pipeline(cfg: PipelineConfig, on_event: Callable[[str], None] = print) -> PipelineResult:
    """Run (or continue) the pipeline; raises :class:`~edgefer.pipeline.stages.StageError` naming the
    failed stage and the command that reproduces it."""
    cfg.validate()  # again: the fields may have been changed since construction
    # Checked before _Flow creates the run directory: a bad option leaves nothing behind.
    if cfg.data.lower() != "synthetic" and not Path(cfg.data).exists():
        raise EdgeferError(f"dataset {cfg.data} does not exist (or pass --data synthetic)")
    if cfg.checkpoint and not Path(cfg.checkpoint).exists():
        raise EdgeferError(f"checkpoint {cfg.checkpoint} does not exist")
    flow = _Flow(cfg, on_event)
    runner = StageRunner(force=cfg.force, on_event=on_event, state_dir=flow.stage_dir)
    write_json(flow.out / "pipeline.json", asdict(cfg))
    if flow.synthetic:
        runner.run(flow.data_stage())
    if cfg.checkpoint:
        on_event(f"[skip] train: using --checkpoint {flow.checkpoint}")
    else:
        runner.run(flow.train_stage())
    # Stages are built just before they run: their inputs are the outputs of the stages before.
    runner.run(flow.export_stage())
    if "openvino" in cfg.targets:
        for precision in ("fp32", "fp16"):
            runner.run(flow.openvino_stage(precision))
        runner.run(flow.int8_stage("openvino"))
    if "onnx" in cfg.targets or "trt" in cfg.targets:
        runner.run(flow.onnx_fp16_stage())
        runner.run(flow.int8_stage("onnx"))
    if "trt" in cfg.targets:
        runner.run(flow.trt_stage("fp16", lambda: flow.artifact("onnx-fp16"), "onnx-fp16"))
        runner.run(flow.trt_stage("int8", lambda: flow.artifact("onnx-int8"), "onnx-int8"))
    if not format_named("trt").installed() and "trt" in cfg.targets:
        flow.notes.append(
            "TensorRT engines were not built or benchmarked here: tensorrt is not installed. "
            "The FP16 and Q/DQ INT8 ONNX rows run the numerics TensorRT will execute on ONNX Runtime."
        )
    runner.run(flow.bench_stage())
    runner.run(flow.bundle_stage())
    report = json.loads((flow.report_dir / "report.json").read_text())
    return PipelineResult(
        out=flow.out,
        checkpoint=flow.checkpoint,
        artifacts={p.name: p for p in flow.bench_models()},
        report_dir=flow.report_dir,
        bundle=flow.bundle_dir,
        gate_passed=bool(report.get("gate_passed", True) is not False),
        gate_failures=list(report.get("gate_failures", [])),
        report=report,
        outcomes=runner.outcomes,
        notes=list(report.get("notes", [])),
    )


#: The pipeline's terminal summary: the benchmark report's own compact columns.
SUMMARY_COLUMNS = COMPACT_COLUMNS


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """The terminal summary's lines, one per artifact and batch size (``report.md`` has every
    column): the benchmark report's formatter asked for :data:`SUMMARY_COLUMNS`, so the pipeline and
    ``edgefer benchmark`` cannot print one number two ways."""
    return table_rows(report, SUMMARY_COLUMNS)
