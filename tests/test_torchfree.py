"""Benchmarking ONNX / OpenVINO artifacts must work where PyTorch cannot be imported (a Jetson or a
camera has numpy, OpenCV and one backend). Run the real CLI in a subprocess whose import system
refuses torch and torchvision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from _bench_artifacts import exported_artifacts

PRELUDE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "torchao"):
                raise ImportError(f"torch is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)


def _run(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_the_blocker_blocks():
    res = _run("import torch\n")
    assert res.returncode != 0 and "torch is blocked" in res.stderr


def test_imports_are_torch_free():
    res = _run(
        """
        import importlib
        mods = ["edgefer", "edgefer.formats", "edgefer.bench", "edgefer.backends", "edgefer.bundle", "edgefer.data",
                "edgefer.metadata", "edgefer.reference", "edgefer.preprocess", "edgefer.cli",
                "edgefer.backends.onnxruntime", "edgefer.backends.openvino", "edgefer.backends.tensorrt",
                "edgefer.backends.cuda_mem", "edgefer.engine_sidecar", "edgefer.data.calibration",
                "edgefer.deploy"]
        for optional in ("edgefer.runtime",):
            if importlib.util.find_spec(optional) is not None:
                mods.append(optional)
        for m in mods:
            importlib.import_module(m)
        from edgefer.backends import available_backends
        available_backends()  # the torch backend module itself must import lazily
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))))
        """
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_benchmark_cli_without_torch(tiny_checkpoint, tmp_path_factory, synth_data, tmp_path):
    arts = exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("bench_artifacts"))
    out = tmp_path / "report"
    res = _run(
        f"""
        from edgefer.cli import main
        sys.argv = ["edgefer", "benchmark", {str(arts["onnx"])!r}, {str(arts["xml"])!r},
                    "--data", {str(synth_data)!r}, "--batch", "1,2", "--warmup", "1", "--iters", "2",
                    "--max-images", "24", "--threads", "1", "--out", {str(out)!r}, "-q",
                    "--gate", "max-drop=100,min-agreement=0"]
        try:
            main()
            rc = 0
        except SystemExit as exc:
            rc = exc.code or 0
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
        print("RESULT", json.dumps({{"rc": rc, "torch_modules": loaded}}))
        """
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.split("RESULT", 1)[1])
    assert result == {"rc": 0, "torch_modules": []}, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["ok", "ok"]


def test_checkpoint_without_torch_is_a_row_not_a_crash(tiny_checkpoint, synth_data):
    res = _run(
        f"""
        from edgefer.bench import run_benchmark
        rep = run_benchmark([{str(tiny_checkpoint)!r}], {str(synth_data)!r}, batches=(1,), warmup=0, iters=1,
                            max_images=8, progress=False, plots=False, e2e=False)
        print("RESULT", json.dumps(rep.rows[0]["status"]))
        """
    )
    assert res.returncode == 0, res.stderr[-3000:]
    status = json.loads(res.stdout.split("RESULT", 1)[1])
    assert status.startswith("error:") and "torch" in status
