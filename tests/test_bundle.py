"""Bundles: pack, verify (sha256), read metadata, tamper detection, archive, and re-benchmark."""

from __future__ import annotations

import json
import tarfile

import pytest
from _bench_artifacts import exported_artifacts

from edgefer.bench import run_benchmark
from edgefer.bundle import BundleError, make_bundle, open_bundle
from edgefer.metadata import read_metadata


@pytest.fixture(scope="module")
def arts(tiny_checkpoint, tmp_path_factory):
    return exported_artifacts(tiny_checkpoint, tmp_path_factory.mktemp("bench_artifacts"))


@pytest.fixture(scope="module")
def reference(arts, synth_data, tmp_path_factory):
    from edgefer.export.reference import make_reference

    out = tmp_path_factory.mktemp("ref") / "reference.npz"
    make_reference(arts["onnx"], synth_data, "test", out=out, progress=False)
    return out


def test_bundle_roundtrip_and_benchmark(arts, reference, synth_data, tmp_path):
    report_dir = tmp_path / "workstation_report"
    run_benchmark(
        [arts["onnx"]],
        synth_data,
        reference=reference,
        batches=(1,),
        warmup=0,
        iters=2,
        e2e=False,
        plots=False,
        progress=False,
        out_dir=report_dir,
        max_images=48,
        gate="max-drop=0.5,min-agreement=1",
    )
    out = make_bundle([arts["onnx"], arts["xml16"]], tmp_path / "bundle", reference=reference, report=report_dir)
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["schema"] == 2 and manifest["kind"] == "edgefer-bundle"
    assert manifest["gate"] == {"rule": "max-drop=0.5,min-agreement=1", "passed": True, "failures": []}
    assert [a["precision"] for a in manifest["artifacts"]] == ["fp32", "fp16"]
    files = {f["path"] for a in manifest["artifacts"] for f in a["files"]}
    assert arts["xml16"].with_suffix(".bin").name in files  # the IR's weights travel with it
    assert manifest["reference"]["path"] == "reference.npz" and manifest["report"]["path"] == "report/report.json"
    assert read_metadata(out).model_name == "msff_resnet18"
    assert read_metadata(out).to_dict() == manifest["metadata"]

    rep = run_benchmark(
        [out], synth_data, batches=(1,), warmup=0, iters=2, e2e=False, plots=False, progress=False, max_images=48
    )
    assert rep.reference["source"] == "bundle"
    assert [r["status"] for r in rep.rows] == ["ok", "ok"]
    assert rep.rows[0]["accuracy"]["agreement"] == 1.0  # the bundled reference is this ONNX's own output
    assert any("verified" in n for n in rep.notes)
    assert f"bundle {out}: workstation gate passed (max-drop=0.5,min-agreement=1)" in rep.notes

    archive = make_bundle([arts["onnx"]], tmp_path / "b2", reference=reference, archive=True)
    assert archive.name == "b2.tar.gz" and tarfile.is_tarfile(archive)
    b = open_bundle(archive)
    try:
        assert b.verify() and b.reference is not None and b.reference.exists()
    finally:
        b.close()


def test_tampered_or_incomplete_bundles_are_refused(arts, reference, tmp_path):
    out = make_bundle([arts["xml"]], tmp_path / "bundle", reference=reference)
    with pytest.raises(BundleError, match="already exists"):
        make_bundle([arts["xml"]], out)
    bin_file = out / arts["xml"].with_suffix(".bin").name
    data = bytearray(bin_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 differs"):
        open_bundle(out).verify()
    (out / "reference.npz").unlink()
    with pytest.raises(BundleError, match=r"reference\.npz: missing"):
        open_bundle(out).verify()
    with pytest.raises(BundleError, match="not an artifact"):
        make_bundle([reference], tmp_path / "x")
    with pytest.raises(BundleError, match="not an edgefer bundle"):
        open_bundle(tmp_path)
    assert not (tmp_path / "x").exists()
