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
:class:`~edgefer.pipeline.config.PipelineConfig`. This module is the stage graph; the options live
in :mod:`edgefer.pipeline.config`, the result and the summary table in :mod:`edgefer.pipeline.summary`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgefer.errors import EdgeferError
from edgefer.export.options import ExportOptions
from edgefer.export.targets import target_named
from edgefer.formats import TARGETS, format_named  # one list for export, quantize and the pipeline
from edgefer.pipeline.config import (  # re-exported: the names callers import from here
    DEFAULT_GATE,
    INT8_METHODS,
    NOT_TRAIN_PARAMS,
    PRODUCTION_GATE,
    PipelineConfig,
    train_overrides,
    train_params,
)
from edgefer.pipeline.stages import Stage, StageRunner
from edgefer.pipeline.summary import SUMMARY_COLUMNS, PipelineResult, int8_summary, summary_rows
from edgefer.quantize.options import ENFORCING_METHODS, QuantizeOptions
from edgefer.utils.io import ensure_writable_dir, write_json

__all__ = [
    "DEFAULT_GATE",
    "INT8_METHODS",
    "NOT_TRAIN_PARAMS",
    "PRODUCTION_GATE",
    "SUMMARY_COLUMNS",
    "TARGETS",
    "PipelineConfig",
    "PipelineResult",
    "int8_summary",
    "run_pipeline",
    "summary_rows",
    "train_overrides",
    "train_params",
]


#: Every artifact stage after the FP32 export, in the order they run, with the format each one writes.
#: A target lists the ones it needs (:attr:`edgefer.export.targets.base.Target.pipeline_stages`).
ARTIFACT_STAGES: dict[str, str] = {
    "openvino-fp32": "openvino",
    "openvino-fp16": "openvino",
    "openvino-int8": "openvino",
    "onnx-fp16": "onnx",
    "onnx-int8": "onnx",
    "trt-fp16": "trt",
    "trt-int8": "trt",
}


def planned_stages(targets: Any) -> list[str]:
    """The artifact stages the chosen ``targets`` need, each once, in :data:`ARTIFACT_STAGES` order."""
    wanted = {s for name in targets for s in target_named(name).pipeline_stages}
    return [s for s in ARTIFACT_STAGES if s in wanted]


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

    def artifact_stage(self, name: str) -> Stage:
        """The artifact stage called ``name`` (one of :data:`ARTIFACT_STAGES`)."""
        builders: dict[str, Callable[[], Stage]] = {
            "openvino-fp32": lambda: self.openvino_stage("fp32"),
            "openvino-fp16": lambda: self.openvino_stage("fp16"),
            "openvino-int8": lambda: self.int8_stage("openvino"),
            "onnx-fp16": self.onnx_fp16_stage,
            "onnx-int8": lambda: self.int8_stage("onnx"),
            "trt-fp16": lambda: self.trt_stage("fp16", lambda: self.artifact("onnx-fp16"), "onnx-fp16"),
            "trt-int8": lambda: self.trt_stage("int8", lambda: self.artifact("onnx-int8"), "onnx-int8"),
        }
        return builders[name]()

    def bench_models(self) -> list[Path]:
        """Every artifact the benchmark compares: the checkpoint (PyTorch FP32) first, then the exports
        whose runtime is installed here (a TensorRT engine is benchmarked on the device)."""
        names = ["export"] + [
            s for s in planned_stages(self.cfg.targets) if format_named(ARTIFACT_STAGES[s]).installed()
        ]
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
            streams=cfg.streams,
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
        if cfg.streams is not None:  # only when set: a run made before --streams existed keeps its benchmark
            params["streams"] = cfg.streams
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
    for name in planned_stages(cfg.targets):  # each target names the stages it needs
        runner.run(flow.artifact_stage(name))
    for target in map(target_named, cfg.targets):
        if target.missing_note and not format_named(target.name).installed():
            flow.notes.append(target.missing_note)
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
