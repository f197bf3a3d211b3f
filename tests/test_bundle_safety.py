"""Bundles that cannot hurt: ``--overwrite`` only replaces a bundle, manifest paths stay inside the
bundle (directory and archive), the manifest itself is checksummed, and the gate's verdict travels
with the bundle (a failed gate is bundled only on request).

Artifacts here are stand-in TensorRT engines (bytes + the JSON sidecar edgefer reads metadata from),
so these tests need no trained model and no backend.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from edgefer.bundle import MANIFEST_SHA, BundleError, gate_line, make_bundle, open_bundle, read_manifest
from edgefer.cli import main
from edgefer.metadata import ModelMetadata


def _engine(folder: Path, name: str = "model_int8.engine", precision: str = "int8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    eng = folder / name
    eng.write_bytes(os.urandom(256))
    meta = ModelMetadata(model_name="msff_mobilenetv3", precision=precision).to_dict()
    (folder / f"{name}.json").write_text(json.dumps({"metadata": meta}))
    return eng


def _report(folder: Path, gate: dict | None, failures: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    failures = failures or []
    data = {
        "schema": 1,
        "kind": "edgefer-benchmark",
        "gate": gate,
        "gate_passed": None if gate is None else not failures,
        "gate_failures": failures,
        "rows": [],
    }
    (folder / "report.json").write_text(json.dumps(data))
    (folder / "report.md").write_text("# edgefer benchmark\n")
    return folder


def _reseal(bundle: Path, manifest: dict) -> None:
    """Rewrite bundle.json and its checksum, as a forger (or a buggy tool) would."""
    raw = json.dumps(manifest).encode()
    (bundle / "bundle.json").write_bytes(raw)
    (bundle / MANIFEST_SHA).write_text(f"{hashlib.sha256(raw).hexdigest()}  bundle.json\n")


GATE = {"max-drop": 0.5, "max-class-drop": 1.0, "class-alpha": 0.05, "min-agreement": 0.98}


# -- overwrite and staging ---------------------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "arts")
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    with pytest.raises(BundleError, match="not an edgefer bundle"):
        make_bundle([eng], work, overwrite=True)
    assert (work / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arts", "work"]  # no staging left behind


def test_overwrite_with_out_dot_leaves_the_current_folder_alone(tmp_path: Path, monkeypatch) -> None:
    eng = _engine(tmp_path / "arts")
    here = tmp_path / "here"
    here.mkdir()
    (here / "keep.txt").write_text("keep")
    monkeypatch.chdir(here)
    with pytest.raises(BundleError, match="refusing to replace"):
        make_bundle([eng], ".", overwrite=True)
    assert sorted(p.name for p in here.iterdir()) == ["keep.txt"]


def test_out_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "arts")
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(BundleError, match="is a file, not a bundle folder"):
            make_bundle([eng], f, overwrite=overwrite)
    assert f.read_text() == "mine"


def test_overwrite_replaces_a_bundle_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "arts")
    out = make_bundle([eng], tmp_path / "bundle")
    first = json.loads((out / "bundle.json").read_text())["created"]
    make_bundle([eng], out, overwrite=True)
    assert json.loads((out / "bundle.json").read_text())["created"] >= first
    (out / "stale.txt").write_text("not listed in bundle.json: the user's")
    with pytest.raises(BundleError, match=r"refusing to replace.*stale\.txt"):
        make_bundle([eng], out, overwrite=True)
    (out / "stale.txt").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arts", "bundle"]
    # a failure while building keeps the old bundle intact and leaves no staging folder
    other = _engine(tmp_path / "other")  # same file name as eng
    with pytest.raises(BundleError, match="share the file name"):
        make_bundle([eng, other], out, overwrite=True)
    assert open_bundle(out).verify()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arts", "bundle", "other"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (make_bundle([eng], empty, overwrite=True) / "bundle.json").is_file()


def test_archive_target_is_checked_too(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "arts")
    (tmp_path / "b.tar.gz").write_text("not an archive")
    with pytest.raises(BundleError, match="already exists"):
        make_bundle([eng], tmp_path / "b", archive=True)
    with pytest.raises(BundleError, match="not an edgefer bundle archive"):
        make_bundle([eng], tmp_path / "b", archive=True, overwrite=True)
    assert not (tmp_path / "b").exists() and (tmp_path / "b.tar.gz").read_text() == "not an archive"


def test_xml_without_its_bin_is_a_clear_error(tmp_path: Path) -> None:
    xml = tmp_path / "model_int8.xml"
    xml.write_text("<net/>")
    with pytest.raises(BundleError, match=r"model_int8\.bin does not exist"):
        make_bundle([xml], tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


# -- confinement and the manifest checksum ----------------------------------------------------


def test_manifest_paths_outside_the_bundle_are_refused(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "arts")
    out = make_bundle([eng], tmp_path / "deep" / "bundle")
    outside = tmp_path / "x.onnx"
    outside.write_bytes(b"not the verified model")
    good = json.loads((out / "bundle.json").read_text())
    sha = hashlib.sha256(outside.read_bytes()).hexdigest()
    for bad_path in ("../../x.onnx", str(outside), "sub/../../../x.onnx", "C:\\x.onnx"):
        m = json.loads(json.dumps(good))
        m["artifacts"][0]["path"] = bad_path
        m["artifacts"][0]["files"][0].update(path=bad_path, sha256=sha)
        _reseal(out, m)
        with pytest.raises(BundleError, match="outside the bundle"):
            open_bundle(out)
    # a symlink inside the bundle that leads out of it
    (out / "link.onnx").symlink_to(outside)
    m = json.loads(json.dumps(good))
    m["artifacts"][0]["path"] = "link.onnx"
    m["artifacts"][0]["files"][0].update(path="link.onnx", sha256=sha)
    _reseal(out, m)
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(out)
    # the reference too
    m = json.loads(json.dumps(good))
    m["reference"] = {"path": "../../x.onnx", "sha256": sha}
    _reseal(out, m)
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(out)
    # an artifact must be one of its own checksummed files
    m = json.loads(json.dumps(good))
    m["artifacts"][0]["path"] = "unlisted.engine"
    _reseal(out, m)
    with pytest.raises(BundleError, match="not among its own checksummed files"):
        open_bundle(out)


def test_manifest_checksum_is_verified(tmp_path: Path) -> None:
    out = make_bundle([_engine(tmp_path / "arts")], tmp_path / "bundle")
    assert (out / MANIFEST_SHA).read_text().split()[1] == "bundle.json"
    m = json.loads((out / "bundle.json").read_text())
    m["artifacts"][0]["precision"] = "fp32"  # edited without resealing
    (out / "bundle.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="does not match"):
        open_bundle(out)
    (out / MANIFEST_SHA).unlink()
    with pytest.raises(BundleError, match=r"no bundle\.json\.sha256"):
        open_bundle(out)


def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_archive_members_that_escape_are_refused(tmp_path: Path) -> None:
    out = make_bundle([_engine(tmp_path / "arts")], tmp_path / "bundle")
    raw, sha = (out / "bundle.json").read_bytes(), (out / MANIFEST_SHA).read_bytes()

    def member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    base = [member("bundle/bundle.json", raw), member("bundle/bundle.json.sha256", sha)]
    evil = _tar_with(tmp_path / "evil.tar.gz", [*base, member("../escaped.txt", b"x")])
    with pytest.raises(BundleError, match="escapes the bundle"):
        open_bundle(evil)
    assert not (tmp_path / "escaped.txt").exists()
    link = tarfile.TarInfo("bundle/model_int8.engine")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(BundleError, match="link or special file"):
        open_bundle(_tar_with(tmp_path / "link.tar.gz", [*base, (link, None)]))
    with pytest.raises(BundleError, match="escapes the bundle"):
        open_bundle(_tar_with(tmp_path / "abs.tar.gz", [*base, member("/tmp/abs.txt", b"x")]))


# -- the gate's verdict -----------------------------------------------------------------------


def test_bundle_records_the_gate_verdict(tmp_path: Path) -> None:
    eng = _engine(tmp_path / "arts")
    passed = make_bundle([eng], tmp_path / "b1", report=_report(tmp_path / "r1", GATE))
    rule = "max-drop=0.5,max-class-drop=1,class-alpha=0.05,min-agreement=0.98"
    assert read_manifest(passed)["gate"] == {"rule": rule, "passed": True, "failures": []}
    assert gate_line(read_manifest(passed)) == f"bundle: workstation gate passed ({rule})"

    failed_report = _report(tmp_path / "r2", GATE, ["int8: agreement 0.9600 < min-agreement 0.98"])
    with pytest.raises(BundleError, match=r"FAILED gate.*--allow-failed-gate"):
        make_bundle([eng], tmp_path / "b2", report=failed_report)
    assert not (tmp_path / "b2").exists()
    b2 = make_bundle([eng], tmp_path / "b2", report=failed_report, allow_failed_gate=True)
    gate = read_manifest(b2)["gate"]
    assert gate["passed"] is False and gate["failures"] == ["int8: agreement 0.9600 < min-agreement 0.98"]
    assert "FAILED" in gate_line(read_manifest(b2))

    none = make_bundle([eng], tmp_path / "b3", report=_report(tmp_path / "r3", None))
    assert read_manifest(none)["gate"] is None and "ran no gate" in gate_line(read_manifest(none))
    plain = make_bundle([eng], tmp_path / "b4")
    assert read_manifest(plain)["gate"] is None and "no workstation report" in gate_line(read_manifest(plain))
    (tmp_path / "r5").mkdir()
    (tmp_path / "r5" / "report.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"not a benchmark report\.json"):
        make_bundle([eng], tmp_path / "b5", report=tmp_path / "r5")


def test_cli_bundle_refuses_a_failed_gate_and_benchmark_prints_the_verdict(tmp_path: Path, capsys) -> None:
    eng = _engine(tmp_path / "arts")
    failed = _report(tmp_path / "failed", GATE, ["int8: class Fear dropped 27.27 pts"])
    with pytest.raises(SystemExit) as exc:
        main(["bundle", str(eng), "--report", str(failed), "--out", str(tmp_path / "b")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--allow-failed-gate" in err and "Fear" in err
    assert not (tmp_path / "b").exists()

    main(["bundle", str(eng), "--report", str(failed), "--out", str(tmp_path / "b"), "--allow-failed-gate"])
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["gate"]["passed"] is False
    assert "workstation gate FAILED" in capsys.readouterr().err

    ok = _report(tmp_path / "ok", GATE)
    main(["bundle", str(eng), "--report", str(ok), "--out", str(tmp_path / "good"), "--archive"])
    capsys.readouterr()
    for target in (tmp_path / "good", tmp_path / "good.tar.gz"):
        with pytest.raises(SystemExit):  # the dataset is missing: the verdict comes before that error
            main(["benchmark", str(target), "--data", str(tmp_path / "no_such_data"), "--quiet"])
        lines = capsys.readouterr().err.splitlines()
        assert (
            lines[0] == f"bundle {target}: workstation gate passed (max-drop=0.5,max-class-drop=1,"
            "class-alpha=0.05,min-agreement=0.98)"
        )
        assert lines[-1].startswith("error:")
