"""Device facts in benchmark reports and the device-side defaults.

Jetson probes run against a fake ``/etc``/``/proc``/``/sys`` tree and fake command output (the
formats of ``nvpmodel -q``, ``jetson_clocks --show`` and ``/etc/nv_tegra_release`` on L4T); the
OpenVINO facts and model cache against the session's tiny IR on this machine's CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgefer.backends import open_model
from edgefer.bench import BenchOptions, run_benchmark
from edgefer.bench import jetson as jet
from edgefer.bench import options as bench_options
from edgefer.bench.report import to_markdown
from edgefer.errors import EdgeferError

FAST = {"batches": (1,), "warmup": 0, "max_images": 16, "progress": False, "e2e": False, "plots": False}

NVPMODEL_Q = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n"
TEGRA_RELEASE = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13\n"
CLOCKS_LOCKED = (
    "SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit\nOnline CPUs: 0-1\n"
    "cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0\n"
    "cpu1: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0\n"
)
CLOCKS_FREE = CLOCKS_LOCKED.replace("MinFreq=2201600", "MinFreq=729600", 1)  # cpu0 free to scale down


def _fake_jetson(root: Path, release: bool = True) -> Path:
    if release:
        (root / "etc").mkdir(parents=True)
        (root / "etc/nv_tegra_release").write_text(TEGRA_RELEASE)
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("NVIDIA Jetson AGX Orin Developer Kit\x00")
    for i, (kind, milli) in enumerate((("cpu-thermal", "45500"), ("gpu-thermal", "43000"), ("bad", "n/a"))):
        zone = root / f"sys/devices/virtual/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    return root


def _runner(outputs: dict[str, tuple[int, str] | BaseException]):
    def run(argv: list[str]) -> tuple[int, str]:
        out = outputs.get(argv[0], (127, f"{argv[0]} not found"))
        if isinstance(out, BaseException):
            raise out
        return out

    return run


def test_jetson_facts_from_fake_tree_and_commands(tmp_path):
    root = _fake_jetson(tmp_path)
    run = _runner({"nvpmodel": (0, NVPMODEL_Q), "jetson_clocks": (0, CLOCKS_LOCKED)})
    info = jet.jetson_info(root, run, jtop=lambda: "unavailable: test")
    assert info == {
        "model": "NVIDIA Jetson AGX Orin Developer Kit",
        "l4t": "R36.4.0",
        "power_mode": "MAXN (0)",
        "clocks": "locked",
        "temperatures_c": {"cpu-thermal": 45.5, "gpu-thermal": 43.0},
        "jtop": "unavailable: test",
    }
    assert jet.clocks_locked(_runner({"jetson_clocks": (0, CLOCKS_FREE)})) == "not locked"


def test_jetson_probes_say_why_and_never_raise(tmp_path):
    root = _fake_jetson(tmp_path, release=False)  # model file only: L4T from the dpkg package
    refused = (1, "Error: Run this script(/usr/bin/jetson_clocks) as a root user\n")
    run = _runner(
        {
            "nvpmodel": subprocess.TimeoutExpired(["nvpmodel"], jet.PROBE_TIMEOUT_S),
            "jetson_clocks": refused,
            "dpkg-query": (0, "36.4.0-20240912212859"),
        }
    )
    info = jet.jetson_info(root, run, jtop=None)
    assert info["l4t"] == "36.4.0-20240912212859"
    assert info["power_mode"].startswith("unavailable: nvpmodel timed out")
    assert info["clocks"].startswith("unknown: Error: Run this script") and "root" in info["clocks"]
    assert "jtop" not in info
    assert jet.l4t_version(root, _runner({})).startswith("unavailable: no /etc/nv_tegra_release")
    assert jet.power_mode(_runner({"nvpmodel": (0, "garbage")})).startswith("unavailable: unrecognised")
    assert jet.temperatures(tmp_path / "nothing").startswith("unavailable: no readable thermal zone")

    def broken(argv: list[str]) -> tuple[int, str]:
        raise RuntimeError("boom")

    assert jet.jetson_info(root, broken, jtop=None) == {"error": "unavailable: RuntimeError: boom"}


def test_not_a_jetson_has_no_section(tmp_path):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("Raspberry Pi 5 Model B\x00")
    assert jet.jetson_info(tmp_path, _runner({})) is None
    assert jet.jetson_info(tmp_path / "empty", _runner({})) is None


def _report_dict(machine: dict) -> dict:
    settings = {"data": "d", "split": "test", "images": 1, "warmup": 0, "iters": 1, "device": "cpu", "batches": [1]}
    return {"settings": settings, "machine": machine, "rows": [], "created": "now", "edgefer_version": "x", "schema": 1}


def test_markdown_jetson_line_only_on_a_jetson(tmp_path):
    machine = {"cpu": "ARMv8", "packages": {}}
    assert "Jetson" not in to_markdown(_report_dict(machine))
    info = jet.jetson_info(_fake_jetson(tmp_path), _runner({"nvpmodel": (0, NVPMODEL_Q)}), jtop=None)
    md = to_markdown(_report_dict({**machine, "jetson": info}))
    line = next(ln for ln in md.splitlines() if ln.startswith("- **Jetson**"))
    assert "L4T R36.4.0" in line and "power mode MAXN (0)" in line and "cpu-thermal 45.5 °C" in line
    assert "clocks unknown: jetson_clocks not found" in line


def test_timing_defaults_workstation_and_device():
    assert BenchOptions().timing(on_device=False)[:2] == (bench_options.DEFAULT_ITERS, None)
    assert BenchOptions().timing(on_device=True)[:2] == (None, bench_options.DEVICE_SECONDS)
    assert BenchOptions(iters=7).timing(on_device=True)[:2] == (7, None)  # what is given wins
    assert BenchOptions(seconds=0.5).timing(on_device=False)[:2] == (None, 0.5)
    with pytest.raises(EdgeferError, match="--seconds must be positive"):
        BenchOptions(seconds=0)


@pytest.fixture(scope="module")
def arts(tmp_path_factory) -> dict[str, Path]:
    """A tiny FP32 OpenVINO IR with edgefer metadata (pool + linear), built without torch in a second."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    from edgefer.metadata import PROPS_KEY, ModelMetadata
    from edgefer.preprocess import Preprocessing

    meta = ModelMetadata(model_name="tiny_ir", preprocessing=Preprocessing(input_size=32))
    x = ops.parameter([-1, 3, 32, 32], np.float32, name="image")
    pooled = ops.reduce_mean(x, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    w = np.random.default_rng(0).normal(size=(3, len(meta.class_names))).astype(np.float32)
    model = ov.Model([ops.matmul(pooled, ops.constant(w), False, False)], [x], "tiny_ir")
    model.set_rt_info(meta.to_props()[PROPS_KEY], ["framework", PROPS_KEY])
    path = tmp_path_factory.mktemp("tiny_ir") / "tiny_fp32.xml"
    ov.save_model(model, str(path))
    return {"xml": path}


def test_openvino_cache_dir_is_written_then_read(arts, tmp_path):
    cache = tmp_path / "ov-cache"
    with open_model(arts["xml"]) as b:
        assert b.info()["cache_dir"] is None and not b.info()["loaded_from_cache"]
    assert not cache.exists()
    with open_model(arts["xml"], cache_dir=cache) as b:
        first = b.info()
    blobs = sorted(p.name for p in cache.iterdir())
    assert blobs and first["cache_dir"] == str(cache) and first["loaded_from_cache"] is False
    with open_model(arts["xml"], cache_dir=cache) as b:
        assert b.info()["loaded_from_cache"] is True
    assert sorted(p.name for p in cache.iterdir()) == blobs  # read back, nothing compiled again
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(EdgeferError, match="cannot create output directory"):
        open_model(arts["xml"], cache_dir=tmp_path / "a-file" / "cache")


def test_report_records_openvino_facts(arts, synth_data, tmp_path):
    import openvino as ov

    out = tmp_path / "report"
    run_benchmark([arts["xml"]], synth_data, iters=2, out_dir=out, cache_dir=tmp_path / "c", **FAST)
    d = json.loads((out / "report.json").read_text())
    assert d["settings"]["timing"] == "given" and d["settings"]["cache_dir"] == str(tmp_path / "c")
    row = next(r for r in d["rows"] if r["backend"] == "openvino")
    info = row["info"]
    assert info["full_device_name"] == str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    assert info["performance_hint"] == "LATENCY"
    assert info["inference_precision"] == "f32"  # an FP32 IR is pinned to f32 (not bf16)
    assert int(info["num_streams"]) >= 1
    # start-up: a cold cache is a miss, the second open of the same IR reads the compiled model back
    assert row["cache"] == "miss" and row["load_s"] > 0 and row["first_infer_ms"] > 0
    again = run_benchmark([arts["xml"]], synth_data, iters=2, cache_dir=tmp_path / "c", **FAST)
    assert next(r for r in again.rows if r["backend"] == "openvino")["cache"] == "hit"
    md = (out / "report.md").read_text()
    section = md.split("## OpenVINO: what each compiled model uses", 1)[1]
    ov_line = next(ln for ln in section.splitlines() if ln.startswith(f"| {row['label']} "))
    assert info["full_device_name"] in ov_line and "LATENCY" in ov_line and "f32" in ov_line
    assert ov_line.rstrip(" |").endswith("written")


def test_device_default_is_a_time_budget(arts, synth_data, tmp_path, monkeypatch):
    """On a Jetson (a faked one) with neither --iters nor --seconds, each measurement is timed by budget."""
    monkeypatch.setattr(bench_options, "DEVICE_SECONDS", 0.05)
    monkeypatch.setattr(jet, "jetson_info", lambda *a, **k: None)  # a workstation, whatever runs the test
    run = run_benchmark([arts["xml"]], synth_data, **FAST)
    assert (run.settings["iters"], run.settings["seconds"]) == (bench_options.DEFAULT_ITERS, None)
    assert "jetson" not in run.machine
    fake = {"model": "NVIDIA Jetson (fake)", "l4t": "R36.4.0", "power_mode": "MAXN (0)", "clocks": "locked"}
    monkeypatch.setattr(jet, "jetson_info", lambda *a, **k: dict(fake, temperatures_c={"cpu-thermal": 40.0}))
    report = run_benchmark([arts["xml"]], synth_data, out_dir=tmp_path / "r", **FAST)
    assert report.machine["jetson"]["power_mode"] == "MAXN (0)"
    assert (report.settings["iters"], report.settings["seconds"]) == (None, 0.05)
    assert report.settings["timing"].startswith("device default")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "- **Jetson**: NVIDIA Jetson (fake), L4T R36.4.0, power mode MAXN (0), clocks locked" in md
    assert "0.05 s per measurement (device default" in md


def test_cli_cache_dir(arts, synth_data, tmp_path):
    from edgefer.cli import main

    cache = tmp_path / "cache"
    argv = ["edgefer", "benchmark", str(arts["xml"]), "--data", str(synth_data), "--batch", "1", "--warmup", "0"]
    argv += ["--iters", "1", "--max-images", "8", "--no-e2e", "--no-plots", "-q", "--cache-dir", str(cache)]
    old, code = sys.argv, 0
    sys.argv = argv
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    assert code == 0 and any(cache.iterdir())
