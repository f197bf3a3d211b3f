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

from edgefer.pipeline.flow import PipelineConfig, run_pipeline, summary_rows

# Tiny but real: every stage runs its real code on 64 px images.
ARGS = dict(data="synthetic", model="msff_mobilenetv3", targets=("openvino", "onnx", "trt"), synthetic_train=300,
            synthetic_test=100, epochs=3, img_size=64, batch_size=32, workers=0, calib_size=40, batches=(1,),
            warmup=1, iters=3, progress=False,
            # 100 test images: one flipped prediction is 1 pt overall and up to 25 pt in a rare class.
            gate="max-drop=5.0,min-agreement=0.9")


def _cli_args(out: Path) -> list[str]:
    return [sys.executable, "-m", "edgefer.cli", "pipeline", "--out", str(out), "--targets", "openvino,onnx,trt",
            "--synthetic-train", "300", "--synthetic-test", "100", "--epochs", "3", "--img-size", "64",
            "--batch-size", "32", "--workers", "0", "--calib-size", "40", "--batch", "1", "--iters", "3", "-q",
            "--gate", ARGS["gate"]]


@pytest.mark.slow
def test_pipeline_interrupt_resume_skip_and_partial_rerun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # 1. start the pipeline in a subprocess and kill it hard once the first epoch's checkpoint exists
    proc = subprocess.Popen(_cli_args(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "200"}, start_new_session=True)
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
    assert rows >= {("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "fp16"),
                    ("openvino", "int8"), ("onnxruntime", "fp16"), ("onnxruntime", "int8")}
    assert (result.report_dir / "report.md").exists()
    assert (result.bundle / "bundle.json").exists() and (result.bundle / "reference.npz").exists()
    assert any("tensorrt is not installed" in n for n in result.notes) or _has_tensorrt()
    trt_manifest = json.loads((out / "stages" / "trt-int8.json").read_text())
    assert trt_manifest["commands"] and Path(trt_manifest["artifact"]).exists()
    assert len(summary_rows(report)) == len(report["rows"])

    # 3. a re-run does nothing
    events.clear()
    run_pipeline(PipelineConfig(out=str(out), **ARGS), on_event=events.append)
    assert not [e for e in events if e.startswith("[run]")], events

    # 4. deleting the OpenVINO INT8 IR reruns exactly that stage and what depends on it
    int8 = Path(json.loads((out / "stages" / "openvino-int8.json").read_text())["artifact"])
    int8.unlink()
    events.clear()
    run_pipeline(PipelineConfig(out=str(out), **ARGS), on_event=events.append)
    ran = [e.split()[1] for e in events if e.startswith("[run]")]
    assert ran == ["openvino-int8", "benchmark", "bundle"], events
    assert int8.exists()


def _has_tensorrt() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def test_pipeline_rejects_bad_options(tmp_path: Path) -> None:
    from edgefer.errors import EdgeferError

    with pytest.raises(EdgeferError, match="unknown target"):
        PipelineConfig(targets=("openvino", "coreml"))
    with pytest.raises(EdgeferError, match="does not exist"):
        run_pipeline(PipelineConfig(data=str(tmp_path / "missing"), out=str(tmp_path / "o")), on_event=lambda _: None)
