"""Benchmarking ONNX / OpenVINO artifacts must work where PyTorch cannot be imported (a Jetson or a
camera has numpy, OpenCV and one backend: ``pip install edgefer[runtime]``). Run the real CLI in a
subprocess whose import system refuses what the runtime extra leaves out (torch, torchvision,
torchao, matplotlib, nncf) as if it were not installed. test_lean_install.py does the same in a
real venv built with pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from _bench_artifacts import exported_artifacts

#: top-level modules a device install (core + runtime extra) does not have
DEVICE_ABSENT = ("torch", "torchvision", "torchao", "matplotlib", "nncf")

PRELUDE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = {blocked!r}

    class Absent(importlib.abc.MetaPathFinder):
        # raises what a missing package raises (ModuleNotFoundError with .name), which the CLI maps to an extra
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} ({{top}} is blocked in this test)", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    """
)


def _run(code: str, timeout: int = 300, blocked: tuple[str, ...] = DEVICE_ABSENT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE.format(blocked=blocked) + textwrap.dedent(code)],
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
        import importlib, importlib.util
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
    # matplotlib is not on a device either: the plots are skipped with a note, the report is complete
    assert not list(out.glob("*.png"))
    assert any("matplotlib is not installed" in n for n in report["notes"])
    assert "matplotlib is not installed" in (out / "report.md").read_text()


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


def _cli_calls(calls: list[list[str]], blocked: tuple[str, ...] = DEVICE_ABSENT, setup: str = "") -> list[dict]:
    """Run ``edgefer.cli.main`` once per argv in one subprocess; each call's exit code and output."""
    res = _run(
        f"""
        import contextlib, io
        from edgefer.cli import app, main
        {setup}
        out = []
        for argv in {calls!r}:
            so, se = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
                try:
                    main(argv)
                    rc = 0
                except SystemExit as exc:
                    rc = exc.code or 0
            out.append({{"argv": argv, "rc": rc, "stdout": so.getvalue(), "stderr": se.getvalue()}})
        print("RESULT", json.dumps(out))
        """,
        blocked=blocked,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.split("RESULT", 1)[1])


def test_the_whole_cli_starts_and_torch_commands_name_the_train_extra(tiny_checkpoint, synth_data, tmp_path):
    import typer

    from edgefer.cli import app

    commands = sorted(typer.main.get_command(app).commands)
    assert {"train", "export", "quantize", "pipeline", "benchmark", "predict", "run"} <= set(commands)
    ckpt, data = str(tiny_checkpoint), str(synth_data)
    needs_torch = [
        ["models"],
        ["train", "--config", "synthetic_edge", "--data", data, "--out", str(tmp_path / "train")],
        ["evaluate", "--checkpoint", ckpt, "--data", data],
        ["export", "--checkpoint", ckpt, "--out", str(tmp_path / "export")],
        ["quantize", "--checkpoint", ckpt, "--data", data, "--out", str(tmp_path / "quantize")],
        ["pipeline", "--data", data, "--out", str(tmp_path / "pipeline")],
    ]
    results = _cli_calls([["--help"], *[[c, "--help"] for c in commands], *needs_torch])
    for r in results[: len(commands) + 1]:
        assert r["rc"] == 0 and "Usage" in r["stdout"], r
    for r in results[len(commands) + 1 :]:
        lines = r["stderr"].strip().splitlines()
        assert r["rc"] == 2 and len(lines) == 1, r
        if r["argv"][0] == "quantize" and "'nncf'" in lines[0]:  # its own up-front check: NNCF's extra has torch
            assert lines[0].startswith("error: 'nncf' is needed for INT8 quantization"), r
            assert lines[0].endswith("pip install 'edgefer[openvino]'"), r
        else:
            assert lines[0].startswith(f"error: 'torch' is needed for `edgefer {r['argv'][0]}` but is not installed"), r
            assert lines[0].endswith("pip install 'edgefer[train]'"), r
    assert not any((tmp_path / name).exists() for name in ("train", "export", "quantize")), "work before the error"


def test_missing_opencv_says_how_to_get_one_and_a_bug_stays_a_bug(tiny_checkpoint, tmp_path_factory, synth_data):
    arts = exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("bench_artifacts"))
    image = str(sorted(synth_data.rglob("*.jpg"))[0])
    setup = """
        @app.command("boom")
        def boom():
            raise ModuleNotFoundError("No module named 'edgefer.gone'", name="edgefer.gone")
        """
    bench = ["benchmark", str(arts["onnx"]), "--data", str(synth_data), "--batch", "1", "--warmup", "0"]
    bench += ["--iters", "1", "--max-images", "8", "--threads", "1", "--no-plots", "-q"]
    predict, benchmark, bug = _cli_calls(
        [["predict", image, "--model", str(arts["onnx"]), "--aligned"], bench, ["boom"]],
        blocked=(*DEVICE_ABSENT, "cv2"),
        setup=textwrap.indent(textwrap.dedent(setup), " " * 8).strip(),
    )
    assert predict["rc"] == 2, predict
    assert "'cv2' is needed for `edgefer predict`" in predict["stderr"], predict
    assert "edgefer[opencv]" in predict["stderr"] and "--system-site-packages" in predict["stderr"], predict
    # the benchmark turns a failed model into a row: that row, and the final error, name the extra too
    assert benchmark["rc"] == 2 and "'cv2' is needed but is not installed" in benchmark["stderr"], benchmark
    assert "edgefer[opencv]" in benchmark["stderr"].strip().splitlines()[-1], benchmark
    # a missing module no extra provides is edgefer's bug: exit 1 and "internal error", never advice
    assert bug["rc"] == 1 and "internal error: ModuleNotFoundError" in bug["stderr"], bug


def test_missing_extra_maps_modules_to_extras():
    from edgefer.extras import missing_extra

    assert missing_extra(ModuleNotFoundError("x", name="torch.nn")).extra == "train"
    assert missing_extra(ModuleNotFoundError("x", name="nncf")).extra == "openvino"
    assert missing_extra(ModuleNotFoundError("x", name="edgefer.training")) is None
    assert missing_extra(ModuleNotFoundError("x")) is None
    assert "pip install 'edgefer[opencv]'" in str(missing_extra(ModuleNotFoundError("x", name="cv2"), "`edgefer run`"))
