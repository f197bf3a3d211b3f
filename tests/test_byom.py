"""Bring your own model (issue 23): foreign ONNX models imported and taken through every command.

The models are built here with torch (tests/_byom_models.py: a closed-form linear classifier on
pooled pixels, well above chance on the synthetic set), exported the way models made outside
edgefer are: a Keras-style one (NHWC, one grey channel, 64 px, final Softmax, FER2013's class
order) and an AffectNet-style 8-class RGB one (logits, Contempt included).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _byom_models import AFFECTNET_ORDER, FER2013_ORDER, accuracy_by, fit_linear, foreign_model

from edgefer.errors import EdgeferError
from edgefer.labels import CLASS_NAMES, class_map
from edgefer.metadata import ModelMetadata, read_metadata
from edgefer.preprocess import Preprocessing, preprocess_batch

pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
torch = pytest.importorskip("torch", reason="torch not installed (the test models are built with it)")

KERAS_PP = Preprocessing(input_size=64, mean=(0.5,), std=(0.5,), color_order="GRAY", layout="NHWC")
RGB_PP = Preprocessing(input_size=48, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), color_order="RGB")
#: a derangement of RAF-DB's order: no class keeps its position, so by-position scoring is wrong everywhere
SHIFTED = ("neutral", "surprise", "fear", "disgust", "happy", "sad", "angry")


@pytest.fixture(scope="module")
def byom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefer.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("byom")
    return generate_synthetic(root / "data", n_train=210, n_test=70, image_size=64, seed=0, difficulty=0.3)


@pytest.fixture(scope="module")
def keras_onnx(byom_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    fit = fit_linear(byom_data, KERAS_PP)
    return foreign_model(fit, FER2013_ORDER, KERAS_PP, True, tmp_path_factory.mktemp("keras") / "fer_keras.onnx")


class _Result:
    def __init__(self, exit_code: int, output: str, stdout: str) -> None:
        self.exit_code, self.output, self.stdout = exit_code, output, stdout


def _cli(*args: object) -> _Result:
    """Run the CLI through its real entry point (:func:`edgefer.cli.main`: errors -> one line, exit 2)."""
    import contextlib
    import io

    from edgefer.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return _Result(code, out.getvalue() + err.getvalue(), out.getvalue())


# -- preprocessing --------------------------------------------------------------------------------


def test_old_metadata_loads_unchanged_and_gives_identical_arrays() -> None:
    old = {  # a record written before GRAY/NHWC/outputs existed
        "schema": 1,
        "model_name": "msff_mobilenetv3",
        "class_names": list(CLASS_NAMES),
        "preprocessing": {
            "input_size": 32,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "color_order": "RGB",
            "resize": "stretch",
            "interpolation": "linear",
            "layout": "NCHW",
        },
        "precision": "fp32",
    }
    meta = ModelMetadata.from_dict(old)
    assert meta.outputs == "logits" and meta.preprocessing.input_shape == (3, 32, 32)
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = preprocess_batch([img], meta.preprocessing)
    # the arithmetic preprocess_image did before GRAY/NHWC existed, step for step: bit-identical arrays
    expected = img.astype(np.float32) * (1.0 / 255.0)
    expected -= np.asarray(old["preprocessing"]["mean"], dtype=np.float32)
    expected /= np.asarray(old["preprocessing"]["std"], dtype=np.float32)
    assert np.array_equal(x, expected.transpose(2, 0, 1)[None])
    assert ModelMetadata.from_dict(meta.to_dict()).to_dict() == meta.to_dict()


def test_grey_nhwc_and_scalar_normalisation() -> None:
    import cv2

    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = preprocess_batch([img, img], KERAS_PP)
    assert x.shape == (2, 64, 64, 1) and x.dtype == np.float32
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    np.testing.assert_allclose(x[0, :, :, 0], (grey - 0.5) / 0.5, atol=1e-6)
    # a BGR frame (the runtime's) gives the same grey input
    np.testing.assert_allclose(preprocess_batch([img[..., ::-1].copy()], KERAS_PP, input_color="BGR")[0], x[0])
    assert preprocess_batch([], KERAS_PP).shape == (0, 64, 64, 1)
    rgb_nhwc = Preprocessing(input_size=16, mean=(0.5,), std=(0.5,), layout="NHWC")
    assert preprocess_batch([img], rgb_nhwc).shape == (1, 16, 16, 3)
    with pytest.raises(EdgeferError, match="mean needs 1 value for a GRAY model, got 3"):
        Preprocessing(color_order="GRAY", mean=(0.1, 0.2, 0.3), std=(1.0,))
    with pytest.raises(EdgeferError, match="layout"):
        Preprocessing(layout="CHWN")


# -- classes by name ------------------------------------------------------------------------------


def test_class_map_by_name_superset_and_missing() -> None:
    cmap = class_map(AFFECTNET_ORDER)
    scores = np.arange(16, dtype=np.float32).reshape(2, 8)
    out = cmap(scores)
    assert out.shape == (2, 7)
    for i, name in enumerate(CLASS_NAMES):  # each dataset class reads its own model column
        assert (
            out[0, i]
            == scores[
                0,
                [n.lower() for n in ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")].index(
                    name.lower()
                ),
            ]
        )
    assert "Contempt ignored" in cmap.note
    with pytest.raises(EdgeferError, match="Disgust"):
        class_map(("angry", "fear", "happy", "sad", "surprise", "neutral"))


def test_probabilities_are_not_softmaxed_twice() -> None:
    from edgefer.bench.metrics import probability_divergence
    from edgefer.metrics import softmax

    logits = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32) * 3
    probs = softmax(logits).astype(np.float32)
    meta = ModelMetadata("m", outputs="probabilities")
    as_logits = meta.logits(probs)
    np.testing.assert_allclose(softmax(as_logits), probs, atol=1e-5)  # softmax(log p) = p
    assert (as_logits.argmax(1) == logits.argmax(1)).all()
    assert probability_divergence(as_logits, logits)["mean_kl"] < 1e-6  # same distribution, not a softmax of one


# -- import ---------------------------------------------------------------------------------------


def test_import_reads_the_graph_and_changes_nothing_else(keras_onnx: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    res = _cli(
        "import",
        keras_onnx,
        "--out",
        tmp_path / "imp",
        "--color",
        "gray",
        "--mean",
        "0.5",
        "--std",
        "0.5",
        "--classes",
        ",".join(FER2013_ORDER),
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "imp" / "fer_keras.onnx"
    meta = read_metadata(out)
    pp = meta.preprocessing
    assert (pp.layout, pp.color_order, pp.input_size, pp.mean, pp.std) == ("NHWC", "GRAY", 64, (0.5,), (0.5,))
    assert meta.class_names == ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral")
    assert meta.outputs == "probabilities"  # the final Softmax was found
    a, b = onnx.load(str(keras_onnx)), onnx.load(str(out))
    assert a.graph.SerializeToString() == b.graph.SerializeToString()  # the graph itself is untouched
    x = np.random.default_rng(3).standard_normal((3, 64, 64, 1), dtype=np.float32)
    ya = ort.InferenceSession(str(keras_onnx)).run(None, {"input_1": x})[0]
    yb = ort.InferenceSession(str(out)).run(None, {"input_1": x})[0]
    assert np.array_equal(ya, yb)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "angry,disgust,fear,happy,sad,surprise"], "names 6 classes but"),
        (["--classes", "angry,disgust,fear,happy,sad,surprise,bored"], "unknown expression class name 'bored'"),
        (["--layout", "nchw"], "--layout nchw contradicts"),
        (["--mean", "0.5,0.5,0.5"], "--mean has 3 values but a gray model has 1 channel"),
        (["--img-size", "48"], "--img-size 48 contradicts"),
    ],
)
def test_import_errors_are_one_line_and_write_nothing(
    keras_onnx: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = {"--color": "gray", "--mean": "0.5", "--std": "0.5", "--classes": ",".join(FER2013_ORDER)}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [str(x) for kv in base.items() for x in kv]
    out = tmp_path / "imp"
    res = _cli("import", keras_onnx, "--out", out, *flat)
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.strip().count("\n") == 0 and "Traceback" not in res.output
    assert not out.exists() or not any(p for p in out.rglob("*") if p.is_file())


def test_classes_are_matched_by_name_not_position(byom_data: Path, tmp_path: Path) -> None:
    """A model whose outputs are a derangement of RAF-DB's order: by-position scoring would report a
    clearly different accuracy than the model's true one, which the benchmark must report."""
    from edgefer.bench import run_benchmark
    from edgefer.export.importer import import_model

    fit = fit_linear(byom_data, RGB_PP)
    by_name, by_position = accuracy_by(fit, byom_data, RGB_PP, SHIFTED)
    assert by_name > 0.4 and by_name - by_position > 0.2  # the test can tell the two apart
    src = foreign_model(fit, SHIFTED, RGB_PP, False, tmp_path / "shifted.onnx")
    res = import_model(
        src, tmp_path / "imp", classes=SHIFTED, color="rgb", mean=0.5, std=0.25, reference_data=byom_data
    )
    rep = run_benchmark(
        [res.artifact], byom_data, reference=res.reference, iters=1, warmup=0, batches=(8,), progress=False
    )
    row = rep.rows[0]
    assert row["status"] == "ok"
    assert row["accuracy"]["accuracy"] == pytest.approx(by_name, abs=1.5 / 70)
    assert row["accuracy"]["agreement"] == 1.0


# -- the whole flow -------------------------------------------------------------------------------


def _downstream(fp32: Path, ref: Path, data: Path, tmp: Path, names: tuple[str, ...]) -> dict:
    """Every command on an imported FP32 ONNX without a checkpoint: quantize (both targets), QAT's
    refusal, export (OpenVINO FP16, TensorRT INT8 from the Q/DQ ONNX), debug, benchmark with a
    reference and a gate, bundle, predict and run. Returns the benchmark's rows by file name."""
    import cv2

    from edgefer.data import open_dataset

    stem = fp32.stem
    q = tmp / "q"
    for target in ("openvino", "trt"):
        res = _cli("quantize", "--onnx", fp32, "--data", data, "--target", target, "--int8-method", "ptq",
                   "--calib-size", "40", "--val-size", "40", "--out", q, "--quiet")  # fmt: skip
        assert res.exit_code == 0, res.output
    res = _cli("quantize", "--onnx", fp32, "--data", data, "--int8-method", "qat", "--out", q, "--quiet")
    assert res.exit_code == 2 and "checkpoint" in res.output  # QAT needs the PyTorch module, and says so
    ir, qdq = q / f"{stem}_int8.xml", q / f"{stem}_int8_qdq.onnx"
    assert read_metadata(ir).preprocessing == read_metadata(fp32).preprocessing
    assert read_metadata(qdq).class_names == read_metadata(fp32).class_names
    ex = tmp / "export"
    res = _cli("export", "--onnx", fp32, "--target", "openvino", "--precision", "fp16", "--out", ex)
    assert res.exit_code == 0, res.output
    res = _cli("export", "--onnx", qdq, "--target", "trt", "--precision", "int8", "--onnx-only", "--out", ex)
    assert res.exit_code == 0, res.output
    pp = read_metadata(fp32).preprocessing
    shape = "x".join(str(v) for v in pp.input_shape)
    assert f":1x{shape}" in res.output  # trtexec's shapes are the model's own layout and channels
    res = _cli("debug", fp32, qdq, "--data", data, "--samples", "21", "--out", tmp / "debug")
    assert res.exit_code == 0, res.output
    bench = tmp / "bench"
    res = _cli("benchmark", fp32, ir, qdq, ex / f"{stem}_fp16.xml", "--data", data, "--reference", ref,
               "--batch", "8", "--warmup", "1", "--iters", "2", "--gate", "max-drop=5", "--out", bench,
               "--quiet", "--no-plots")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((bench / "report.json").read_text())
    rows = {Path(r["path"]).name: r for r in report["rows"]}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows[fp32.name]["accuracy"]["agreement"] == 1.0
    assert rows[fp32.name]["accuracy"]["class_names"] == list(CLASS_NAMES)  # scored in the dataset's order
    bundle = tmp / "bundle"
    res = _cli("bundle", ir, "--reference", ref, "--out", bundle)
    assert res.exit_code == 0, res.output
    ds = open_dataset(data, "test")
    img = tmp / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(ds[0].image, cv2.COLOR_RGB2BGR))
    res = _cli("predict", img, "--model", bundle, "--aligned", "--json")
    assert res.exit_code == 0, res.output
    faces = json.loads(res.stdout[res.stdout.index("[") :])[0]["faces"]
    assert len(faces) == 1 and set(faces[0]["probs"]) == set(names)  # the model's own classes
    assert sum(faces[0]["probs"].values()) == pytest.approx(1.0, abs=1e-3)  # not a softmax of a softmax
    assert max(faces[0]["probs"].values()) > 0.3
    video = tmp / "faces.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    for i in range(6):
        writer.write(cv2.cvtColor(ds[i].image, cv2.COLOR_RGB2BGR))
    writer.release()
    events = tmp / "events.jsonl"
    res = _cli("run", "--model", qdq, "--source", video, "--aligned", "--jsonl", events, "--max-frames", "5", "--quiet")
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 5 and all(len(e["faces"]) == 1 for e in lines)
    return rows


def test_keras_model_through_quantize_benchmark_bundle_predict_run(
    keras_onnx: Path, byom_data: Path, tmp_path: Path
) -> None:
    """The issue's "done when": a grey NHWC softmax model in FER2013 order, made outside edgefer."""
    pytest.importorskip("nncf", reason="nncf not installed")
    pytest.importorskip("openvino", reason="openvino not installed")
    imp = tmp_path / "imp"
    res = _cli("import", keras_onnx, "--color", "gray", "--layout", "nhwc", "--mean", "0.5", "--std", "0.5",
               "--classes", ",".join(FER2013_ORDER), "--data", byom_data, "--out", imp)  # fmt: skip
    assert res.exit_code == 0, res.output
    fp32, ref = imp / "fer_keras.onnx", imp / "reference.npz"
    rows = _downstream(fp32, ref, byom_data, tmp_path, read_metadata(fp32).class_names)
    assert rows["fer_keras.onnx"]["accuracy"]["accuracy"] > 0.4


def test_affectnet_8_class_model_scored_on_shared_classes(byom_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("nncf", reason="nncf not installed")
    from edgefer.bench import run_benchmark
    from edgefer.export.importer import import_model
    from edgefer.quantize import quantize
    from edgefer.runtime.deepstream import deepstream_config, parse_config

    fit = fit_linear(byom_data, RGB_PP)
    src = foreign_model(fit, AFFECTNET_ORDER, RGB_PP, False, tmp_path / "affectnet.onnx")
    res = import_model(
        src, tmp_path / "imp", classes=AFFECTNET_ORDER, color="rgb", mean=0.5, std=0.25, reference_data=byom_data
    )
    assert res.metadata.num_classes == 8 and res.metadata.outputs == "logits"
    assert any("Contempt ignored" in n for n in res.notes)
    q = quantize(
        None,
        byom_data,
        onnx_path=res.artifact,
        target="trt",
        method="ptq-acc",
        max_drop=5.0,
        calib_size=40,
        val_size=40,
        out_dir=tmp_path / "q",
        progress=False,
    )
    assert q.report["class_note"].endswith("(Contempt ignored)")
    rows = _downstream(res.artifact, res.reference, byom_data, tmp_path / "flow", res.metadata.class_names)
    assert any(
        "Contempt ignored" in n for n in json.loads((tmp_path / "flow" / "bench" / "report.json").read_text())["notes"]
    )
    assert rows["affectnet.onnx"]["accuracy"]["accuracy"] > 0.4
    rep = run_benchmark(
        [res.artifact, q.artifact],
        byom_data,
        reference=res.reference,
        iters=1,
        warmup=0,
        batches=(8,),
        progress=False,
        gate="max-drop=5",
    )
    assert [r["status"] for r in rep.rows] == ["ok", "ok"]
    assert rep.rows[0]["accuracy"]["accuracy"] == pytest.approx(
        accuracy_by(fit, byom_data, RGB_PP, AFFECTNET_ORDER)[0], abs=1.5 / 70
    )
    assert any("Contempt ignored" in n for n in rep.notes)
    ds = deepstream_config(res.metadata, res.artifact, tmp_path / "ds")
    props = parse_config(ds.config)
    assert props["model-color-format"] == "0" and props["infer-dims"] == "3;48;48"
    assert ds.labels.read_text().strip().split(";")[-1] == "Contempt"


def test_deepstream_config_for_a_grey_nhwc_softmax_model(keras_onnx: Path, tmp_path: Path) -> None:
    import onnx

    from edgefer.export.importer import import_model
    from edgefer.runtime.deepstream import deepstream_config, parse_config

    res = import_model(keras_onnx, tmp_path / "imp", classes=FER2013_ORDER, color="gray", mean=0.5, std=0.5)
    ds = deepstream_config(res.metadata, res.artifact, tmp_path / "ds")
    props = parse_config(ds.config)
    assert props["model-color-format"] == "2" and props["network-input-order"] == "1"
    assert float(props["net-scale-factor"]) == pytest.approx(1 / (255 * 0.5)) and float(
        props["offsets"]
    ) == pytest.approx(127.5)
    model = onnx.load(str(ds.model))
    assert sum(n.op_type == "Softmax" for n in model.graph.node) == 1  # its own, no second one


@pytest.mark.parametrize(
    ("dims", "told_layout", "told_size", "channels", "expect"),
    [
        ((None, 3, 112, 112), None, None, 3, ("NCHW", 112)),
        (("N", 48, 48, 1), None, None, 1, ("NHWC", 48)),
        (("N", 1, None, None), None, 64, 1, ("NCHW", 64)),
        (("N", 1, None, None), None, None, 1, "input size is dynamic"),
        (("N", 3, 3, 3), None, None, 3, "cannot tell the layout"),
        (("N", 3, 3, 3), "nhwc", None, 3, ("NHWC", 3)),
        (("N", 3, 112, 112), "nhwc", None, 3, "--layout nhwc contradicts"),
        (("N", 3, 112, 96), None, None, 3, "square"),
        (("N", 3, 112, 112), None, None, 1, "no axis of 1 channels"),
    ],
)
def test_layout_and_size_come_from_the_graph_where_unambiguous(dims, told_layout, told_size, channels, expect) -> None:
    from edgefer.export.importer import GraphFacts, resolve_layout, resolve_size

    facts = GraphFacts("x", dims, "y", ("N", 7), False, 17)
    src = Path("m.onnx")
    if isinstance(expect, str):
        with pytest.raises(EdgeferError, match=expect):
            layout = resolve_layout(facts, told_layout, channels, src)
            resolve_size(facts, layout, told_size, src)
        return
    layout = resolve_layout(facts, told_layout, channels, src)
    assert (layout, resolve_size(facts, layout, told_size, src)) == expect


def test_static_batch_model_imports_and_its_device_build_keeps_the_batch(byom_data: Path, tmp_path: Path) -> None:
    """Many tf2onnx exports have a batch of 1: the layout is still read from (1, 64, 64, 1), and the
    device command printed for the TensorRT build keeps that static batch."""
    from edgefer.export.importer import import_model

    src = foreign_model(fit_linear(byom_data, KERAS_PP), FER2013_ORDER, KERAS_PP, True, tmp_path / "b1.onnx", False)
    res = import_model(src, tmp_path / "imp", classes=FER2013_ORDER, color="gray", mean=0.5, std=0.5)
    assert res.metadata.preprocessing.layout == "NHWC" and res.metadata.extra["batch"] == 1
    out = _cli("export", "--onnx", res.artifact, "--target", "trt", "--precision", "fp16", "--onnx-only",
               "--out", tmp_path / "trt")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "--batch 1 --static" in out.output and "--dynamic" not in out.output
