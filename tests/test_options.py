"""Options objects: validated on construction, and their command lines parsed back by the real CLI.

``ExportOptions`` / ``QuantizeOptions`` are what the library, the CLI and the pipeline pass. The
pipeline prints, for every stage, the command line that reproduces it; for export and quantize
stages that line is ``options.to_argv()``. These tests run every such line through the real
``edgefer`` command (Typer/Click parsing, the command body building its options) with the library
call replaced by a recorder, and check that the CLI builds exactly the options the line came from
-- so a flag renamed in the CLI, or a field added to the options without its flag, fails here.
The other stages' command lines (data, train, benchmark, bundle) are parsed by the real CLI too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer

from edgefer.bench.options import BenchOptions
from edgefer.errors import EdgeferError, ExportError, QuantizationError
from edgefer.export.options import ExportOptions
from edgefer.quantize.options import DEFAULT_MAX_DROP, DEFAULT_METHOD, ENFORCING_METHODS, QuantizeOptions
from edgefer.utils.options import FLAG, FLAG_FALSE, to_argv

#: CLI options of ``edgefer export`` / ``quantize`` that are not options fields: the source, the
#: data, and how the result is shown or what is run instead.
NOT_FIELDS = {
    "export": {"--checkpoint", "--onnx", "--print-trtexec", "--json"},
    "quantize": {"--checkpoint", "--onnx", "--data", "--sensitivity", "--ignore-from", "--json"},  # adds to --ignore
    "benchmark": {"--suite", "--data", "--reference", "--csv", "--json"},
}


def _command(name: str) -> Any:
    """The parsed-command object (Typer's Click) of ``edgefer <name>``."""
    from edgefer.cli import app

    return typer.main.get_command(app).commands[name]


def _cli_flags(name: str) -> set[str]:
    """The visible long flags of ``edgefer <name>`` (deprecated spellings are hidden)."""
    return {
        o
        for p in _command(name).params
        if not getattr(p, "hidden", False)
        for o in (*p.opts, *p.secondary_opts)
        if o.startswith("--")
    }


def _field_flags(cls: type) -> set[str]:
    return {f.metadata[k] for f in dataclasses.fields(cls) for k in (FLAG, FLAG_FALSE) if f.metadata.get(k)}


@pytest.mark.parametrize(
    ("cls", "command"), [(ExportOptions, "export"), (QuantizeOptions, "quantize"), (BenchOptions, "benchmark")]
)
def test_every_cli_option_is_an_options_field_and_back(cls, command):
    """The CLI and the options class name the same settings: no flag without a field, no field
    flag the CLI lacks."""
    cli = _cli_flags(command) - NOT_FIELDS[command] - {"--quiet", "--help"}
    fields = _field_flags(cls) - {"--quiet"}
    assert cli == fields, f"only in the CLI: {sorted(cli - fields)}; only in {cls.__name__}: {sorted(fields - cli)}"


class _Recorded(Exception):
    """Raised by the recorder: the command got as far as the library call."""


def _record(monkeypatch: pytest.MonkeyPatch, target: str) -> list[Any]:
    """Replace the library call the CLI makes with a recorder that stops the command there."""
    seen: list[Any] = []

    def recorder(*args: Any, **kwargs: Any) -> Any:
        seen.append((args, kwargs))
        raise _Recorded

    module, attr = target.rsplit(".", 1)
    monkeypatch.setattr(f"{module}.{attr}", recorder)
    return seen


def _run_cli(argv: list[str]) -> None:
    from edgefer.cli import app

    assert argv[0] == "edgefer"
    with pytest.raises(_Recorded):  # a usage error or a refused option would raise something else
        app(argv[1:], standalone_mode=False, prog_name="edgefer")


EXPORTS = [
    ExportOptions(),
    ExportOptions(
        target="trt",
        precision="int8",
        out_dir="runs/x y",
        batch=4,
        dynamic=False,
        img_size=96,
        reference_data="data/raf db",
        reference_split="val",
        calib_data="data/raf db",
        calib_size=123,
        device_profile="export/jetson/orin_nano.yaml",
        onnx_only=True,
        workspace_mib=2048,
        dla_core=1,
        trt_version="8.5.2",
        fp16_mode="flag",
        int8_mode="entropy",
        timing_cache="cache/t.cache",
        opset=18,
        name="cam_model",
        progress=False,
        allow_missing_classes=True,
        overwrite=True,
    ),
    ExportOptions(target="openvino", precision="fp16", dynamic=True, max_batch=32, opt_batch=8),
    # calibration and reference data differ: the calibration set keeps its own (older) spelling
    ExportOptions(target="openvino", precision="int8", reference_data="data/a", calib_data="data/b"),
]


@pytest.mark.parametrize("options", EXPORTS, ids=["defaults", "every-flag", "dynamic", "two-datasets"])
def test_export_options_round_trip_through_the_cli(monkeypatch, tmp_path, options):
    seen = _record(monkeypatch, "edgefer.deploy.export")
    _run_cli(options.to_argv(onnx=tmp_path / "m.onnx"))
    ((args, kwargs),) = seen
    assert args[1] == options
    assert kwargs == {"onnx": tmp_path / "m.onnx"}


QUANTIZES = [
    QuantizeOptions(),
    QuantizeOptions(
        target="openvino",
        method="qat",
        calib_size=77,
        max_drop=0.25,
        ignore=("/attn/.*", "classifier"),
        out_dir="runs/q q",
        img_size=96,
        fast_bias_correction=False,
        qat_epochs=3,
        qat_lr=3.3e-5,
        qat_loss="labels",
        qat_temperature=2.5,
        progress=False,
        val_size=50,
        calib_split="val",
        val_split="val",
        seed=7,
        allow_missing_classes=True,
        overwrite=True,
    ),
    QuantizeOptions(method="ptq-acc"),  # the default budget appears on the command line
    QuantizeOptions(method="wc", target="openvino", preset="mixed"),
    QuantizeOptions(method="ptq-acc", target="trt", gate="max-drop=0.3,max-class-drop=2,min-agreement=0.99"),
    QuantizeOptions(method="ptq"),  # plain PTQ is no longer the default: it must appear as --int8-method ptq
    QuantizeOptions(method="ptq", max_drop=1.0),
]


@pytest.mark.parametrize(
    "options", QUANTIZES, ids=["defaults", "every-flag", "ptq-acc", "wc", "gate", "plain-ptq", "plain-ptq-checked"]
)
def test_quantize_options_round_trip_through_the_cli(monkeypatch, tmp_path, options):
    seen = _record(monkeypatch, "edgefer.quantize.quantize")
    _run_cli(options.to_argv(tmp_path, checkpoint=tmp_path / "best.pt"))
    ((args, kwargs),) = seen
    assert args[2] == options
    assert Path(args[0]) == tmp_path / "best.pt" and Path(args[1]) == tmp_path
    assert kwargs == {"onnx_path": None}


BENCHES = [
    BenchOptions(),
    BenchOptions(
        split="val",
        batches=(1, 4, 16),
        warmup=3,
        seconds=2.5,
        mode="throughput",
        cache_dir="cache",
        threads=2,
        device="gpu",
        gate="max-drop=0.5,min-agreement=0.99",
        out_dir="runs/b b",
        e2e=False,
        max_images=20,
        plots=False,
        progress=False,
        allow_partial=True,
        allow_missing_classes=True,
    ),
    BenchOptions(iters=7),
]


@pytest.mark.parametrize("options", BENCHES, ids=["defaults", "every-flag", "iters"])
def test_bench_options_round_trip_through_the_cli(monkeypatch, tmp_path, options):
    """``BenchOptions.to_argv`` (what the pipeline prints for its benchmark stage) gives back the
    same options through ``edgefer benchmark``."""
    seen = _record(monkeypatch, "edgefer.bench.run_benchmark")
    _run_cli(options.to_argv([tmp_path / "m.onnx"], tmp_path, reference=tmp_path / "ref.npz"))
    ((_args, kwargs),) = seen
    models, out_dir = kwargs.pop("models"), kwargs.pop("out_dir", None)
    assert [Path(m) for m in models] == [tmp_path / "m.onnx"]
    assert Path(kwargs.pop("data")) == tmp_path and Path(kwargs.pop("reference")) == tmp_path / "ref.npz"
    assert BenchOptions(out_dir=out_dir, **kwargs) == options


def test_a_setting_without_a_flag_is_refused_not_dropped():
    assert to_argv(QuantizeOptions(method="ptq", seed=0)) == ["--int8-method", "ptq"]
    # the default method's budget is written out, so the line says what the model was held to
    assert to_argv(QuantizeOptions(seed=0)) == ["--max-drop", "0.5"]
    assert to_argv(QuantizeOptions(seed=3))[-2:] == ["--seed", "3"]
    with pytest.raises(EdgeferError, match="qat_max_steps"):
        QuantizeOptions(qat_max_steps=5).to_argv("data")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"target": "coreml"}, "unknown target 'coreml'"),
        ({"precision": "int4"}, "unknown precision 'int4'"),
        ({"batch": 0}, "--batch must be a positive"),
        ({"calib_size": -5}, "--calib-size must be a positive"),
        ({"max_batch": 2.5}, "--max-batch must be a positive"),
        ({"workspace_mib": 0}, "--workspace must be a positive"),
        ({"dla_core": -1}, "--dla-core must be 0 or more"),
        ({"fp16_mode": "half"}, "fp16_mode must be one of"),
        ({"int8_mode": "minmax"}, "int8_mode must be"),
        ({"target": "onnx", "int8_mode": "entropy"}, "entropy calibrator is a TensorRT feature"),
        ({"name": "../evil"}, "--name '../evil' must be a plain file name"),
        ({"opset": 11}, "opset 13 or newer"),
    ],
)
def test_export_options_are_checked_when_made(fields, match):
    with pytest.raises(EdgeferError, match=match):
        ExportOptions(**fields)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"target": "tflite"}, "target must be one of"),
        ({"method": "gptq"}, "method must be one of"),
        ({"method": "wc", "target": "trt"}, "weights-only compression"),
        ({"preset": "fast"}, "preset must be one of"),
        ({"preset": "mixed", "target": "trt"}, "asymmetric activations"),
        ({"max_drop": -1.0}, "max_drop is in accuracy points"),
        ({"calib_size": 0}, "calib_size must be a positive"),
        ({"val_size": 0}, "val_size must be a positive"),
        ({"qat_lr": 0.0}, "qat_lr must be positive"),
        ({"qat_loss": "mse"}, "qat_loss must be one of distill, labels, not 'mse'"),
        ({"qat_temperature": 0.0}, "qat_temperature must be a positive number"),
        ({"qat_temperature": float("nan")}, "qat_temperature must be a positive number"),
        ({"gate": "max-drop=abc"}, "--gate 'max-drop=abc': gate max-drop needs a number"),
        ({"gate": "min-accuracy=0.8"}, "min-accuracy is not a budget against the FP32 model"),
        ({"gate": "max-drop=0.5,max-p99-ms=3"}, "max-p99-ms is not a budget"),
        ({"gate": "max-drop=1.0", "max_drop": 0.5}, "disagree"),
    ],
)
def test_quantize_options_are_checked_when_made(fields, match):
    with pytest.raises(QuantizationError, match=match):
        QuantizeOptions(**fields)


def test_quantize_options_normalise_what_they_are_given():
    assert QuantizeOptions(method="ptq-acc").max_drop == DEFAULT_MAX_DROP
    # the gate is kept in its canonical spelling, so an equal gate spelt differently is equal options
    assert QuantizeOptions(gate=" min_agreement=0.99, max-drop=0.5").gate == "max-drop=0.5,min-agreement=0.99"


def test_the_gate_quantization_is_held_to():
    """ptq-acc and qat (the methods that enforce it) default to the production budget; --max-drop
    is the gate's max-drop term; ptq and wc check what they are given and nothing when given nothing."""
    for method in ("ptq-acc", "qat"):
        assert str(QuantizeOptions(method=method).accuracy_gate()) == (
            "max-drop=0.5,max-class-drop=1,class-alpha=0.05,min-agreement=0.98"
        )
    assert str(QuantizeOptions(method="qat", max_drop=1.0).accuracy_gate()).startswith("max-drop=1,max-class-drop=1")
    assert QuantizeOptions(method="ptq-acc", max_drop=0.3).accuracy_gate().max_drop == 0.3
    given = QuantizeOptions(method="ptq-acc", gate="min-agreement=0.99", max_drop=0.2)
    assert str(given.accuracy_gate()) == "max-drop=0.2,min-agreement=0.99"
    from_gate = QuantizeOptions(method="ptq-acc", gate="max-drop=0.4,min-agreement=0.99")
    assert from_gate.max_drop == 0.4 and from_gate.accuracy_gate().min_agreement == 0.99
    assert QuantizeOptions(method="ptq").accuracy_gate() is None
    assert str(QuantizeOptions(method="ptq", max_drop=1.0).accuracy_gate()) == "max-drop=1"
    assert QuantizeOptions(method="qat", gate="max-class-drop=2").accuracy_gate().max_class_drop == 2.0
    assert QuantizeOptions(ignore="classifier").ignore == ("classifier",)  # one pattern, not its letters
    assert QuantizeOptions(ignore=["a", "b"]).ignore == ("a", "b")


def test_int8_is_held_to_the_production_gate_by_default():
    """Safe INT8 by default (issue 26): with no method named, quantize, its CLI and the pipeline use
    ptq-acc held to the production gate, keeping layers in floating point until it holds; plain PTQ
    is asked for by name and is then only checked."""
    from edgefer.pipeline.flow import PipelineConfig

    default = QuantizeOptions()
    assert default.method == DEFAULT_METHOD == "ptq-acc" and default.method in ENFORCING_METHODS
    assert default.max_drop == DEFAULT_MAX_DROP
    assert str(default.accuracy_gate()) == "max-drop=0.5,max-class-drop=1,class-alpha=0.05,min-agreement=0.98"
    # --max-drop / --gate say otherwise: that budget is the one held
    assert QuantizeOptions(max_drop=1.5).accuracy_gate().max_drop == 1.5
    assert str(QuantizeOptions(gate="max-drop=2,min-agreement=0.9").accuracy_gate()) == "max-drop=2,min-agreement=0.9"
    # the CLI's defaults are the options' (a command line without --int8-method is the default options)
    params = {p.name: p.default for p in _command("quantize").params}
    assert params["method"] == DEFAULT_METHOD
    pipe = {p.name: p.default for p in _command("pipeline").params}
    assert pipe["int8_method"] == PipelineConfig().int8_method == DEFAULT_METHOD


def test_keyword_shorthand_and_unknown_fields(tmp_path):
    """``export(ckpt, target=...)`` is shorthand for the options; a misspelt field is a clear error
    naming the valid ones, raised before anything is read or written."""
    from edgefer.deploy import export
    from edgefer.quantize import quantize

    with pytest.raises(ExportError, match=r"unknown ExportOptions field.*presicion.*valid: target, precision"):
        export(tmp_path / "missing.pt", presicion="fp16")
    with pytest.raises(QuantizationError, match=r"unknown QuantizeOptions field.*calib_sise"):
        quantize(None, tmp_path, calib_sise=10)
    with pytest.raises(ExportError, match="options must be a ExportOptions"):
        export(tmp_path / "missing.pt", QuantizeOptions())
    assert list(tmp_path.iterdir()) == []


def test_a_profile_fills_what_the_options_leave_unset(tmp_path):
    prof = tmp_path / "dev.yaml"
    prof.write_text("precision: int8\nbatch: 2\nworkspace_mib: 512\ndla_core: 0\ntensorrt: '8.5'\n")
    resolved = ExportOptions(target="trt", device_profile=str(prof)).resolved()
    assert (resolved.precision, resolved.batch, resolved.dynamic) == ("int8", 2, False)
    assert (resolved.workspace_mib, resolved.dla_core) == (512, 0)
    explicit = ExportOptions(target="trt", device_profile=str(prof), precision="fp16", workspace_mib=64).resolved()
    assert (explicit.precision, explicit.workspace_mib) == ("fp16", 64)
    plain = ExportOptions().resolved()
    assert (plain.precision, plain.batch, plain.dynamic, plain.workspace_mib) == ("fp32", 1, True, 1024)


def test_every_pipeline_command_line_is_one_the_cli_accepts(tmp_path):
    """Each stage's reproduce command parses with the real CLI (flags exist, values convert); the
    export and quantize lines are ``to_argv`` of the options the stage runs with."""
    from edgefer.pipeline.flow import PipelineConfig, _Flow

    cfg = PipelineConfig(
        data="synthetic",
        targets=("openvino", "onnx", "trt"),
        out=str(tmp_path / "run"),
        int8_method="ptq-acc",
        max_drop=0.5,
        epochs=2,
        progress=False,
    )
    flow = _Flow(cfg, on_event=lambda _msg: None)
    # the benchmark and bundle stages list the artifacts earlier stages made: pretend two were made
    made = [tmp_path / "run" / "export" / "msff_mobilenetv3.onnx", tmp_path / "run" / "openvino" / "m_int8.xml"]
    flow.bench_models = lambda: [flow.checkpoint, *made]  # type: ignore[method-assign]
    stages = [
        flow.data_stage(),
        flow.train_stage(),
        flow.export_stage(),
        flow.openvino_stage("fp16"),
        flow.int8_stage("openvino"),
        flow.int8_stage("onnx"),
        flow.onnx_fp16_stage(),
        flow.trt_stage("int8", lambda: None, "onnx-int8"),
        flow.bench_stage(),
        flow.bundle_stage(),
    ]
    from edgefer.cli import app

    group = typer.main.get_command(app)
    for stage in stages:
        argv = stage.command
        assert argv[0] == "edgefer", stage.name
        names = argv[1:]
        command: Any = group
        while hasattr(command, "commands"):  # `edgefer data synth ...`: walk down the sub-groups
            sub, names = names[0], names[1:]
            command = command.commands[sub]
        with command.make_context(" ".join(argv[:2]), list(names)) as ctx:
            assert ctx.params, stage.name
    quantize_line = flow.int8_stage("onnx").command
    assert quantize_line[quantize_line.index("--max-drop") + 1] == "0.5"
    assert "--onnx" in quantize_line  # PTQ starts from the exported ONNX, as the stage's run does


def test_the_train_command_line_is_spelt_from_the_config_fields(monkeypatch, tmp_path):
    """``train_argv`` (for the pipeline's train stage) writes each override with its field's flag,
    and the real ``edgefer train`` builds the same configuration back from it."""
    from edgefer.training.config import load_config, train_argv

    values = {
        "data": str(tmp_path / "d"),
        "model": "msff_mobilenetv3",
        "out": str(tmp_path / "o"),
        "seed": 3,
        "progress": False,
        "epochs": 2,
        "img_size": 48,
        "batch_size": 16,
        "val_split": 0.1,
    }
    argv = train_argv(values, "synthetic_edge")
    assert "--arch" in argv and "--batch" in argv and "--val-fraction" in argv and "--quiet" in argv
    assert not {"--model", "--batch-size", "--val-split", "--no-progress"} & set(argv)
    seen = _record(monkeypatch, "edgefer.training.train")
    _run_cli(argv)
    ((args, _kwargs),) = seen
    assert args[0] == load_config("synthetic_edge", values)
