"""`edgefer pipeline` end to end on a tiny synthetic set: artifacts, gate, skipping, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HAS_TRT

from edgefer.pipeline.flow import PipelineConfig, run_pipeline, summary_rows

# Tiny but real: every stage runs its real code on 64 px images.
ARGS = dict(
    data="synthetic",
    model="msff_mobilenetv3",
    targets=("openvino", "onnx", "trt"),
    synthetic_train=300,
    synthetic_test=100,
    epochs=3,
    img_size=64,
    batch_size=32,
    workers=0,
    calib_size=40,
    batches=(1,),
    warmup=1,
    iters=3,
    progress=False,
    # 100 test images: one flipped prediction is 1 pt overall and up to 25 pt in a rare class.
    gate="max-drop=5.0,min-agreement=0.9",
)


def _cli_args(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edgefer.cli",
        "pipeline",
        "--out",
        str(out),
        "--targets",
        "openvino,onnx,trt",
        "--synthetic-train",
        "300",
        "--synthetic-test",
        "100",
        "--epochs",
        "3",
        "--img-size",
        "64",
        "--train-batch",
        "32",
        "--workers",
        "0",
        "--calib-size",
        "40",
        "--batch",
        "1",
        "--iters",
        "3",
        "-q",
        "--gate",
        ARGS["gate"],
    ]


@pytest.mark.slow
def test_pipeline_interrupt_resume_skip_and_partial_rerun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # 1. start the pipeline in a subprocess and kill it hard once the first epoch's checkpoint exists
    proc = subprocess.Popen(
        _cli_args(out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
    )
    last = out / "train" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists(), proc.communicate()[0].decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "train" / "complete.json").exists(), "training finished before it could be interrupted"

    # 2. the same command continues: training resumes from last.pt, every later stage runs
    events: list[str] = []
    result = run_pipeline(PipelineConfig(out=str(out), **ARGS), on_event=events.append)
    assert any("resuming the interrupted training" in e for e in events), events
    import torch

    ckpt = torch.load(out / "train" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == ARGS["epochs"] - 1
    assert result.gate_passed, result.gate_failures
    report = json.loads((result.report_dir / "report.json").read_text())
    assert result.report == report
    rows = {(r["backend"], r["precision"]) for r in report["rows"] if r["status"] == "ok"}
    assert rows >= {
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("openvino", "fp32"),
        ("openvino", "fp16"),
        ("openvino", "int8"),
        ("onnxruntime", "fp16"),
        ("onnxruntime", "int8"),
    }
    assert (result.report_dir / "report.md").exists()
    assert (result.bundle / "bundle.json").exists() and (result.bundle / "reference.npz").exists()
    assert any("tensorrt is not installed" in n for n in result.notes) or HAS_TRT
    trt_manifest = json.loads((out / "stages" / "trt-int8.json").read_text())
    assert trt_manifest["commands"] and Path(trt_manifest["artifact"]).exists()
    assert len(summary_rows(report)) == len(report["rows"]) * len(report["settings"]["batches"])

    # 3. a re-run does nothing
    events.clear()
    run_pipeline(PipelineConfig(out=str(out), **ARGS), on_event=events.append)
    assert not [e for e in events if e.startswith("[run]")], events

    # 4. deleting the OpenVINO INT8 IR reruns exactly that stage and what depends on it
    int8 = Path(json.loads((out / "stages" / "openvino-int8.json").read_text())["artifact"])
    int8.unlink()
    events.clear()
    run_pipeline(PipelineConfig(out=str(out), **ARGS), on_event=events.append)
    ran = [e.split()[1].rstrip(":") for e in events if e.startswith("[run]")]
    assert ran == ["openvino-int8", "benchmark", "bundle"], events
    assert int8.exists()


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"targets": ("openvino", "coreml")}, "unknown target"),
        ({"gate": "max-drop=abc"}, "gate max-drop needs a number"),
        ({"gate": "max-dorp=1"}, "bad gate term"),
        ({"gate": "min-agreement=98"}, "fraction"),
        ({"int8_method": "fp8"}, "int8 method"),
        ({"calib_size": 0}, "calib_size must be >= "),
        ({"calib_size": 400, "synthetic_train": 300}, "more than the 300 synthetic train images"),
        ({"synthetic_train": 0}, "synthetic_train must be >= 7"),
        ({"synthetic_test": -5}, "synthetic_test must be >= 7"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"img_size": 0}, "img_size must be >= 16"),
        ({"batch_size": -1}, "batch_size must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"max_drop": -1.0}, "max_drop is in accuracy points"),
        ({"batches": (1, 0)}, "batches must be positive integers"),
        ({"iters": 0}, "iters must be >= 1"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"recipe": "no_such_recipe"}, "neither a file nor a shipped recipe"),
        ({"model": "no_such_model"}, "unknown model"),
    ],
)
def test_pipeline_config_rejects_bad_options(changes: dict, needle: str) -> None:
    from edgefer.errors import EdgeferError

    with pytest.raises(EdgeferError, match=needle):
        PipelineConfig(**changes)


def test_pipeline_checks_paths_before_writing(tmp_path: Path) -> None:
    from edgefer.errors import EdgeferError

    with pytest.raises(EdgeferError, match="does not exist"):
        run_pipeline(PipelineConfig(data=str(tmp_path / "missing"), out=str(tmp_path / "o")), on_event=lambda _: None)
    with pytest.raises(EdgeferError, match="does not exist"):
        run_pipeline(
            PipelineConfig(checkpoint=str(tmp_path / "no.pt"), out=str(tmp_path / "o")), on_event=lambda _: None
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [("--gate", "max-drop=abc", "gate"), ("--batch", "1,x", "--batch"), ("--calib-size", "0", "calib_size")],
)
def test_cli_rejects_bad_option_before_any_stage(tmp_path: Path, flag: str, value: str, needle: str) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "edgefer.cli", "pipeline", "--out", str(out), "-q", flag, value],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "[run]" not in proc.stdout
    assert not out.exists()


#: The cheapest real pipeline: one target, one epoch, small sets (the stage logic is what is tested).
SMALL = {
    **ARGS,
    "targets": ("onnx",),
    "epochs": 1,
    "img_size": 48,
    "synthetic_train": 96,
    "synthetic_test": 28,
    "calib_size": 20,
}


def _rerun(out: Path, **changes) -> tuple[list[str], list[str]]:
    """Run the small pipeline in ``out`` with ``changes``; the stages that ran, and the progress lines."""
    events: list[str] = []
    result = run_pipeline(PipelineConfig(out=str(out), **{**SMALL, **changes}), on_event=events.append)
    return [o.name for o in result.outcomes if o.status == "ran"], events


def test_changed_options_rerun_exactly_the_stages_they_affect(tmp_path: Path) -> None:
    from edgefer.pipeline.flow import _Flow
    from edgefer.pipeline.stages import StageRunner

    out = tmp_path / "run"
    ran, _ = _rerun(out)
    assert ran == ["data", "train", "export", "onnx-fp16", "onnx-int8", "benchmark", "bundle"]
    assert _rerun(out)[0] == []
    # options that change no result: nothing reruns
    assert _rerun(out, workers=1, progress=True, force=False)[0] == []

    # another calibration size: the INT8 stage and what reads its artifact, not train or export
    ran, events = _rerun(out, calib_size=10)
    assert ran == ["onnx-int8", "benchmark", "bundle"], events
    assert "[run] onnx-int8: parameters changed (calib_size 20 -> 10)" in events, events
    assert any(e.startswith("[up to date] train") for e in events)
    manifest = json.loads((out / "stages" / "onnx-int8.json").read_text())
    assert manifest["params"]["calib_size"] == 10 and manifest["artifact"] and manifest["params_hash"]

    # another gate reruns the INT8 stage (ptq-acc, the default, searches for the model that passes
    # it), the benchmark and the bundle (which holds its report); at the same time a manifest from
    # before parameters were recorded counts as stale (rerun), not as an error
    fp16 = out / "stages" / "onnx-fp16.json"
    fp16.write_text(
        json.dumps({k: v for k, v in json.loads(fp16.read_text()).items() if k not in ("params", "params_hash")})
    )
    ran, events = _rerun(out, calib_size=10, gate="max-drop=4.0,min-agreement=0.9")
    assert ran == ["onnx-fp16", "onnx-int8", "benchmark", "bundle"], events
    assert "[run] onnx-fp16: no record of its parameters (an older edgefer ran it)" in events, events
    assert any(e.startswith("[run] onnx-int8: parameters changed (gate") for e in events), events
    assert any(e.startswith("  onnx-int8: held to max-drop=4,min-agreement=0.9, kept") for e in events), events
    assert any(e.startswith("[run] benchmark: parameters changed (gate") for e in events), events
    assert json.loads((out / "report" / "report.json").read_text())["gate"]["max-drop"] == 4.0
    # the same gate spelled differently is no change
    assert _rerun(out, calib_size=10, gate=" min-agreement=0.90, max-drop=4")[0] == []

    # training options: train is stale (without training again here), and an interrupted training
    # with other parameters is not resumed
    flow = _Flow(PipelineConfig(out=str(out), **{**SMALL, "epochs": 2}), on_event=lambda _: None)
    train = flow.train_stage()
    reason = StageRunner(state_dir=out / "stages").stale_reason(train)
    assert reason == "parameters changed (epochs 1 -> 2)"
    assert not flow.resumable(out / "train" / "last.pt", dict(train.params))
    same = _Flow(PipelineConfig(out=str(out), **{**SMALL, "workers": 1}), on_event=lambda _: None).train_stage()
    assert StageRunner(state_dir=out / "stages").stale_reason(same) is None
    assert flow.resumable(out / "train" / "last.pt", dict(same.params))

    # the CLI maps its flags to the same parameters (nothing reruns) and prints the progress lines
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgefer.cli",
            "pipeline",
            "--out",
            str(out),
            "--targets",
            "onnx",
            "--synthetic-train",
            "96",
            "--synthetic-test",
            "28",
            "--epochs",
            "1",
            "--img-size",
            "48",
            "--train-batch",
            "32",
            "--workers",
            "0",
            "--calib-size",
            "10",
            "--batch",
            "1",
            "--warmup",
            "1",
            "--iters",
            "3",
            "-q",
            "--gate",
            "max-drop=4,min-agreement=0.9",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode in (0, 3), proc.stderr  # 3: the gate failed, which this tiny model may do
    assert "[up to date] train" in proc.stdout and "[run]" not in proc.stdout, proc.stdout
