"""The harness end to end on the synthetic set: a suite with two backends writes JSON, Markdown and
PNGs whose numbers agree; a broken artifact is a row; the gate's exit codes; reference handling."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from _bench_artifacts import exported_artifacts

from edgefer.bench import run_benchmark
from edgefer.bench.gate import GATE_EXIT_CODE
from edgefer.bench.report import DASH
from edgefer.bench.suite import expand_models, load_suite
from edgefer.errors import EdgeferError
from edgefer.reference import Reference

FAST = {"batches": (1, 4), "warmup": 1, "iters": 3, "max_images": 48, "progress": False}


@pytest.fixture(scope="module")
def arts(tiny_checkpoint, tmp_path_factory):
    return exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("bench_artifacts"))


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("broken") / "corrupt.onnx"
    p.write_bytes(b"\x08\x07 this is not a protobuf model")
    return p


def _parse_md_table(text: str) -> list[dict[str, str]]:
    """The first Markdown table of ``text`` as dicts keyed by its header."""
    all_lines = text.splitlines()
    start = next(i for i, ln in enumerate(all_lines) if ln.startswith("| "))
    lines = []
    for ln in all_lines[start:]:
        if not ln.startswith("|"):
            break
        lines.append(ln)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [ln for ln in lines[1:] if not set(ln.replace("|", "").strip()) <= {"-"}]
    return [dict(zip(header, [c.strip() for c in ln.strip("|").split("|")], strict=True)) for ln in body]


def _check_cell(cell: str, value, scale: float = 1.0, digits: int = 2):
    if value is None:
        assert cell == DASH
    else:
        assert float(cell.split()[0]) == pytest.approx(round(value * scale, digits), abs=10**-digits)


def test_suite_two_backends_writes_consistent_reports(arts, broken, synth_data, tmp_path):
    suite = {
        "name": "test_suite",
        "data": str(synth_data),
        "split": "test",
        "batches": [1, 4],
        "warmup": 1,
        "iters": 3,
        "threads": 1,
        "max_images": 48,
        "gate": {"max-drop": 100, "min-agreement": 0.0},
        "out": str(tmp_path / "report"),
        "models": [
            {"path": str(arts["onnx"]), "backends": ["onnxruntime", "openvino"]},
            str(arts["xml16"]),
            str(broken),
        ],
    }
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(yaml.safe_dump(suite))
    kwargs = load_suite(suite_file)
    kwargs.pop("name")
    out = kwargs.pop("out")
    report = run_benchmark(out_dir=out, progress=False, **kwargs)

    d = json.loads((tmp_path / "report" / "report.json").read_text())
    assert d["schema"] == 1 and d["machine"]["cpu"] and "onnxruntime" in d["machine"]["packages"]
    assert d["settings"]["images"] == 48
    rows = {r["label"]: r for r in d["rows"]}
    onnx_name = arts["onnx"].name
    ort, ov = rows[f"{onnx_name} [onnxruntime]"], rows[f"{onnx_name} [openvino]"]
    assert ort["backend"] == "onnxruntime" and ov["backend"] == "openvino"
    assert ort["status"] == "ok" and ov["status"] == "ok"
    # the reference was computed from the first FP32 model, and says so
    assert d["reference"]["source"] == "computed" and d["reference"]["artifact"] == ort["label"]
    assert ort["accuracy"]["agreement"] == 1.0 and ort["accuracy"]["delta_pts"] == 0.0
    assert ov["accuracy"]["agreement"] >= 0.9
    assert rows[broken.name]["status"].startswith("error:")
    assert not report.passed and any(broken.name in f for f in report.gate_failures)
    for r in (ort, ov):
        for b in ("1", "4"):
            lat = r["latency"][b]
            assert lat["status"] == "ok"
            assert lat["model"]["n"] == 3 and lat["e2e"]["n"] == 3
            assert lat["model"]["p50_ms"] <= lat["model"]["p99_ms"]
        assert r["size_mb"] > 0 and r["info"]["threads"] == 1
    # Markdown: one line per (row, batch), the numbers are the JSON's
    md = (tmp_path / "report" / "report.md").read_text()
    table = _parse_md_table(md)
    assert len(table) == len(d["rows"]) * 2
    for line in table:
        r = rows[line["Model"]]
        acc = r["accuracy"] or {}
        lat = (r["latency"].get(line["Batch"]) or {}).get("model") or {}
        _check_cell(line["Acc (%)"], acc.get("accuracy"), 100)
        _check_cell(line["Δ (pts)"], acc.get("delta_pts"))
        _check_cell(line["Agree (%)"], acc.get("agreement"), 100)
        _check_cell(line["Worst-class Δ (pts)"], acc.get("worst_class_delta_pts"))
        _check_cell(line["p50 (ms)"], lat.get("p50_ms"))
        _check_cell(line["p99 (ms)"], lat.get("p99_ms"))
        _check_cell(line["CV (%)"], lat.get("cv"), 100, digits=1)
        _check_cell(line["FPS"], lat.get("fps"), digits=1)
        _check_cell(line["Size (MB)"], r.get("size_mb"))
        _check_cell(line["Load (s)"], r.get("load_s"))
        _check_cell(line["1st call (ms)"], r.get("first_infer_ms"), digits=1)
        assert line["Cache"] == (r.get("cache") or DASH)
    assert "Gate" in md and "FAILED" in md
    # the conditions of the run are recorded, and every unstable row is named under the table
    assert d["conditions"]["before"]["load_avg"] and d["conditions"]["after"]["load_avg"]
    unstable = {(r["label"], b) for r in d["rows"] for b, lat in (r.get("latency") or {}).items()
                if lat.get("model", {}).get("cv", 0) > 0.10}  # fmt: skip
    assert len([w for w in d["warnings"] if "coefficient of variation" in w]) == len(unstable)
    assert ("## Can these latencies be trusted?" in md) is bool(d["warnings"])
    for png in ("pareto.png", "per_class_delta.png", "confusion.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_reference_file_is_aligned_by_id_and_checked(arts, synth_data, tmp_path):
    base = run_benchmark([arts["onnx"]], synth_data, e2e=False, plots=False, **FAST)
    row = base.rows[0]
    assert row["status"] == "ok"
    # a reference in another order, with one image's prediction changed
    from edgefer.bench.evalset import load_evalset

    ev = load_evalset(synth_data, "test", max_images=48)
    from edgefer.backends import open_model

    with open_model(arts["onnx"]) as b:
        logits = b.infer(ev.preprocessed(b.metadata.preprocessing))
        names = b.metadata.class_names
    flipped = logits.copy()
    flipped[0] = np.roll(flipped[0], 1)
    order = np.random.default_rng(0).permutation(len(ev))
    ref = Reference(np.asarray(ev.ids)[order], ev.labels[order], flipped[order], names, {"model_name": "x"})
    ref_path = ref.save(tmp_path / "reference.npz")
    rep = run_benchmark([arts["onnx"]], synth_data, reference=ref_path, e2e=False, plots=False, **FAST)
    assert rep.reference["source"] == "argument"
    assert rep.rows[0]["accuracy"]["agreement"] == pytest.approx(1 - 1 / len(ev))
    bad = Reference(ev.ids, (ev.labels + 1) % 7, logits, names)
    with pytest.raises(EdgeferError, match="labels differ"):
        run_benchmark([arts["onnx"]], synth_data, reference=bad, e2e=False, plots=False, **FAST)
    other = Reference([f"x{i}" for i in range(len(ev))], ev.labels, logits, names)
    with pytest.raises(EdgeferError, match="another dataset or split"):
        run_benchmark([arts["onnx"]], synth_data, reference=other, e2e=False, plots=False, **FAST)


def _cli(argv: list[str]) -> int:
    from edgefer.cli import main

    old = sys.argv
    sys.argv = ["edgefer", *argv]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = old
    return 0


def test_cli_gate_exit_codes(arts, synth_data, tmp_path, capsys):
    common = [
        "benchmark",
        str(arts["onnx"]),
        str(arts["xml16"]),
        "--data",
        str(synth_data),
        "--batch",
        "1",
        "--warmup",
        "0",
        "--iters",
        "2",
        "--max-images",
        "32",
        "--no-e2e",
        "--no-plots",
        "-q",
    ]
    assert _cli([*common, "--gate", "max-drop=100,min-agreement=0", "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "report.json").exists()
    assert _cli([*common, "--gate", "min-agreement=1.0,max-kl=0"]) == GATE_EXIT_CODE
    err = capsys.readouterr().err
    assert "gate failed" in err and arts["xml16"].name in err and "max-kl" in err
    assert _cli([*common, "--gate", "bogus=1"]) == 2
    assert _cli(["benchmark", str(arts["onnx"]), "--data", str(tmp_path / "missing")]) == 2
    assert _cli(["benchmark", "--data", str(synth_data)]) == 2  # no models


def test_suite_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFER_TEST_ROOT", "/x")
    f = tmp_path / "s.yaml"
    f.write_text(
        "data: ${EDGEFER_TEST_ROOT}/d\nbatches: 1,8\nmodels:\n  - ${EDGEFER_TEST_ROOT}/m.onnx\n"
        "  - {path: m.xml, devices: [cpu, gpu]}\n"
    )
    s = load_suite(f)
    assert s["data"] == "/x/d" and s["batches"] == [1, 8]
    assert [m["device"] for m in s["models"]] == [None, "cpu", "gpu"]
    assert s["models"][2]["label"] == "m.xml [gpu]"
    f.write_text("models: [a.onnx]\nspeed: 3\n")
    with pytest.raises(EdgeferError, match="unknown keys"):
        load_suite(f)
    with pytest.raises(EdgeferError, match="needs a 'path'"):
        expand_models([{"device": "cpu"}])


def test_shipped_suite_parses(monkeypatch):
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    for suite in sorted(root.glob("*.yaml")):
        s = load_suite(suite)
        assert s["models"] and s["batches"]
