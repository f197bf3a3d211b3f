"""Every dataset layout, read from fixture trees written here, and the malformed inputs."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgefer.data import FERDataset, dataset_info, detect_format, list_splits, open_dataset, read_image
from edgefer.errors import DatasetError
from edgefer.labels import CLASS_NAMES, class_index

RNG = np.random.default_rng(0)


def _jpeg(path: Path, value: int | None = None, size: int = 12, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, len(mode))
    arr = RNG.integers(0, 255, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(arr, mode).save(path, fmt)
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# -- RAF-DB official ---------------------------------------------------------------------------
def make_rafdb(root: Path, n_per_class: int = 2, variants=("aligned",), extra_lines: str = "") -> Path:
    lines = []
    for split in ("train", "test"):
        k = 0
        for label in range(1, 8):
            for _ in range(n_per_class):
                k += 1
                name = f"{split}_{k:05d}"
                lines.append(f"{name}.jpg {label}")
                for variant in variants:
                    fname = f"{name}_aligned.jpg" if variant == "aligned" else f"{name}.jpg"
                    _jpeg(root / "basic" / "Image" / variant / fname, value=label * 30)
    label_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("\n".join(lines) + "\n" + extra_lines)
    return root


def test_rafdb_official_reads_splits_labels_and_images(tmp_path: Path) -> None:
    root = make_rafdb(tmp_path / "raf", variants=("aligned", "original"))
    for path in (root, root / "basic", root / "basic" / "EmoLabel" / "list_patition_label.txt"):
        assert detect_format(path) == "rafdb"
    assert list_splits(root) == ["train", "test"]
    ds = open_dataset(root, "train")
    assert isinstance(ds, FERDataset) and len(ds) == 14 and ds.split == "train" and ds.format == "rafdb"
    assert ds.ids == sorted(ds.ids) and ds.ids[0] == "train_00001"
    assert ds.labels.dtype == np.int64 and ds.class_names == CLASS_NAMES
    # label file line "train_00001.jpg 1" -> Surprise (0); "train_00013.jpg 7" -> Neutral (6)
    assert ds.labels[0] == 0 and ds.labels[12] == 6
    sample = ds[0]
    assert sample.id == "train_00001" and sample.label == 0
    assert sample.image.shape == (12, 12, 3) and sample.image.dtype == np.uint8
    assert abs(int(sample.image.mean()) - 30) <= 3
    original = open_dataset(root, "test", image_variant="original")
    assert len(original) == 14 and original.source(0).endswith("Image/original/test_00001.jpg")
    assert np.array_equal(open_dataset(root, "test").class_counts(), [2] * 7)


def test_rafdb_has_no_val_split(tmp_path: Path) -> None:
    root = make_rafdb(tmp_path / "raf")
    with pytest.raises(DatasetError, match=r"no 'val' split.*train, test"):
        open_dataset(root, "val")
    with pytest.raises(DatasetError, match=r"unknown split"):
        open_dataset(root, "dev")
    with pytest.raises(DatasetError, match=r"image_variant"):
        open_dataset(root, "train", image_variant="cropped")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train_00099.jpg", "expected 'train_00001.jpg <label 1..7>'"),
        ("train_00099.jpg 5 extra", "expected"),
        ("train_00099.jpg 0", "out of range"),
        ("train_00099.jpg 8", "out of range"),
        ("train_00099.jpg happy", "not a number"),
        ("val_00001.jpg 3", "does not start with train_ or test_"),
        ("train_00001.jpg 3", "listed twice"),
    ],
)
def test_rafdb_bad_label_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = make_rafdb(tmp_path / "raf", n_per_class=1, extra_lines=line + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        open_dataset(root, "train")
    assert "list_patition_label.txt:15" in str(info.value)


def test_rafdb_missing_image_folder_and_empty_label_file(tmp_path: Path) -> None:
    root = make_rafdb(tmp_path / "raf", n_per_class=1)
    with pytest.raises(DatasetError, match=r"basic/Image/original"):
        open_dataset(root, "train", image_variant="original")
    (root / "basic" / "EmoLabel" / "list_patition_label.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"no entries"):
        open_dataset(root, "train")


def test_missing_and_corrupt_images_skip_or_raise(tmp_path: Path) -> None:
    root = make_rafdb(tmp_path / "raf", n_per_class=3)
    img_dir = root / "basic" / "Image" / "aligned"
    (img_dir / "train_00003_aligned.jpg").unlink()  # listed but missing
    _truncate(img_dir / "train_00005_aligned.jpg")  # truncated JPEG
    (img_dir / "train_00006_aligned.jpg").write_bytes(b"not an image at all")

    with pytest.warns(RuntimeWarning, match=r"skipping"):
        ds = open_dataset(root, "train")
    assert len(ds) == 20 and ds.skipped == 1 and ds.skipped_ids == ["train_00003"]
    # Read-time failures are counted and replaced by the next readable sample; no crash.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        i = ds.ids.index("train_00005")
        sample = ds[i]
        assert sample.id == "train_00007" and sample.label == int(ds.labels[ds.ids.index("train_00007")])
        epoch = [ds[i].id for i in range(len(ds))]  # a training epoch keeps its length (replacements)
        seen = [s.id for s in ds]  # iteration: each readable image once, never a replacement
    assert len(epoch) == 20 and "train_00005" not in epoch and "train_00006" not in epoch
    assert len(seen) == 18 == len(set(seen)) and "train_00005" not in seen and "train_00006" not in seen
    assert ds.skipped == 3 and set(ds.skipped_ids) == {"train_00003", "train_00005", "train_00006"}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        checked = open_dataset(root, "train", validate=True)
    assert len(checked) == 18 and checked.skipped == 3
    assert "train_00005" not in checked.ids

    with pytest.raises(DatasetError, match=r"train_00003_aligned.jpg"):
        open_dataset(root, "train", on_error="raise")
    (img_dir / "train_00003_aligned.jpg").write_bytes((img_dir / "train_00001_aligned.jpg").read_bytes())
    strict = open_dataset(root, "train", on_error="raise")
    with pytest.raises(DatasetError, match=r"train_00005_aligned.jpg"):
        strict[strict.ids.index("train_00005")]
    with pytest.raises(DatasetError, match=r"on_error"):
        open_dataset(root, "train", on_error="ignore")


def test_read_image_rejects_truncated_jpeg(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "a.jpg", size=64)
    assert read_image(path).shape == (64, 64, 3)
    _truncate(path)
    with pytest.raises(DatasetError, match=r"a.jpg"):
        read_image(path)


def test_missing_class_in_train_is_an_error_unless_allowed(tmp_path: Path) -> None:
    root = make_rafdb(tmp_path / "raf", n_per_class=1)
    label_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    kept = [ln for ln in label_file.read_text().splitlines() if not ln.endswith(" 2")]  # drop every Fear
    label_file.write_text("\n".join(kept) + "\n")
    with pytest.raises(DatasetError, match=r"no images of class\(es\) Fear.*allow_missing_classes"):
        open_dataset(root, "train")
    with pytest.warns(RuntimeWarning, match=r"Fear"):
        assert len(open_dataset(root, "train", allow_missing_classes=True)) == 6
    with pytest.warns(RuntimeWarning, match=r"Fear"):
        assert len(open_dataset(root, "test")) == 6


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    root = make_rafdb(tmp_path / "raf", n_per_class=1)
    label_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text("\n".join(ln for ln in label_file.read_text().splitlines() if ln.startswith("test")))
    assert list_splits(root) == ["test"]
    with pytest.raises(DatasetError, match=r"train split .* is empty"):
        open_dataset(root, "train")
    # every listed image missing -> the split is empty after skipping
    for f in (root / "basic" / "Image" / "aligned").iterdir():
        f.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(DatasetError, match=r"test split .* is empty"):
            open_dataset(root, "test")


# -- RAF-DB re-packed --------------------------------------------------------------------------
def make_repacked(root: Path, with_csv: bool) -> Path:
    for split in ("train", "test"):
        rows = ["image,label"]
        for label in range(1, 8):
            for k in range(2):
                name = f"{split}_{label}{k:03d}_aligned.jpg"
                _jpeg(root / "DATASET" / split / str(label) / name, value=label * 30)
                rows.append(f"{name},{label}")
        if with_csv:
            (root / f"{split}_labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("with_csv", [False, True])
def test_rafdb_repacked(tmp_path: Path, with_csv: bool) -> None:
    root = make_repacked(tmp_path / "kaggle", with_csv)
    assert detect_format(root) == "rafdb_folders" and detect_format(root / "DATASET") == "rafdb_folders"
    ds = open_dataset(root, "test")
    assert len(ds) == 14 and ds.format == "rafdb_folders"
    assert np.array_equal(ds.class_counts(), [2] * 7)
    i = ds.ids.index("test_5000_aligned")
    assert ds.labels[i] == 4 and ds[i].label == 4 and abs(int(ds[i].image.mean()) - 150) <= 3
    assert list_splits(root) == ["train", "test"]
    with pytest.raises(DatasetError, match=r"no 'val' split"):
        open_dataset(root, "val")


def test_rafdb_repacked_csv_is_the_label_source(tmp_path: Path) -> None:
    root = make_repacked(tmp_path / "kaggle", with_csv=True)
    csv_path = root / "train_labels.csv"
    text = csv_path.read_text().replace("train_1000_aligned.jpg,1", "train_1000_aligned.jpg,3")
    csv_path.write_text(text + "train_9999_aligned.jpg,2\n")
    with pytest.warns(RuntimeWarning, match=r"missing"):
        ds = open_dataset(root, "train")
    assert ds.labels[ds.ids.index("train_1000_aligned")] == 2 and ds.skipped_ids == ["train_9999_aligned"]
    csv_path.write_text("image,label\ntrain_1000_aligned.jpg,9\n")
    with pytest.raises(DatasetError, match=r"train_labels.csv:2.*out of range"):
        open_dataset(root, "train")
    csv_path.write_text("file;emotion\n")
    with pytest.raises(DatasetError, match=r"image,label"):
        open_dataset(root, "train")


@pytest.mark.parametrize(("folder", "message"), [("8", "out of range"), ("happy", "must be named 1..7")])
def test_rafdb_repacked_wrong_folder_names(tmp_path: Path, folder: str, message: str) -> None:
    root = make_repacked(tmp_path / "kaggle", with_csv=False)
    _jpeg(root / "DATASET" / "train" / folder / "x.jpg")
    with pytest.raises(DatasetError, match=message):
        open_dataset(root, "train")


# -- FER2013 -----------------------------------------------------------------------------------
def _fer_row(emotion: int, usage: str | None, value: int = 7, n: int = 2304) -> str:
    pixels = " ".join([str(value)] * n)
    return f"{emotion},{pixels}" + (f",{usage}" if usage else "")


def make_fer2013(path: Path, extra: list[str] = ()) -> Path:
    rows = ["emotion,pixels,Usage"]
    for usage in ("Training", "PublicTest", "PrivateTest"):
        rows += [_fer_row(e, usage, value=10 * e + 1) for e in range(7)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*rows, *extra]) + "\n")
    return path


def test_fer2013_csv_splits_grey_to_rgb_and_label_order(tmp_path: Path) -> None:
    csv_path = make_fer2013(tmp_path / "fer" / "fer2013.csv")
    assert detect_format(csv_path) == "fer2013" and detect_format(tmp_path / "fer") == "fer2013"
    assert list_splits(csv_path) == ["train", "val", "test"]
    train, val, test = (open_dataset(csv_path, s) for s in ("train", "val", "test"))
    assert len(train) == len(val) == len(test) == 7
    assert val.split == "val" and test.ids[0] == "row_000016"
    sample = train[0]  # FER2013 emotion 0 = Angry
    assert sample.label == class_index("anger") == CLASS_NAMES.index("Anger")
    assert sample.image.shape == (48, 48, 3) and sample.image.dtype == np.uint8
    assert np.all(sample.image == 1)
    # FER2013 order 0 Angry,1 Disgust,2 Fear,3 Happy,4 Sad,5 Surprise,6 Neutral -> canonical
    fer_order = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral")
    expected = [CLASS_NAMES.index(n) for n in fer_order]
    assert train.labels.tolist() == expected


def test_fer2013_malformed_rows(tmp_path: Path) -> None:
    bad_pixels = make_fer2013(tmp_path / "a.csv", extra=[_fer_row(3, "Training", n=100)])
    with pytest.warns(RuntimeWarning, match=r"unreadable"):
        ds = open_dataset(bad_pixels, "train")
    assert len(ds) == 7 and ds.skipped == 1
    with pytest.raises(DatasetError, match=r"a.csv:23"):
        open_dataset(bad_pixels, "train", on_error="raise")
    bad_usage = make_fer2013(tmp_path / "b.csv", extra=[_fer_row(3, "Holdout")])
    with pytest.raises(DatasetError, match=r"b.csv:23: unknown Usage 'Holdout'"):
        open_dataset(bad_usage, "train")
    bad_label = make_fer2013(tmp_path / "c.csv", extra=[_fer_row(7, "Training")])
    with pytest.raises(DatasetError, match=r"c.csv:23: FER2013 emotion 7 is out of range"):
        open_dataset(bad_label, "train")


def test_fer2013_without_usage_is_train_only(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("emotion,pixels\n" + "\n".join(_fer_row(e, None) for e in range(7)) + "\n")
    assert list_splits(path) == ["train"]
    assert len(open_dataset(path, "train")) == 7
    with pytest.raises(DatasetError, match=r"no Usage column"):
        open_dataset(path, "test")


# -- image folders -----------------------------------------------------------------------------
FOLDER_NAMES = ("Surprised", "fearful", "DISGUST", "happy", "sad", "Angry", "neutral")


def make_folders(root: Path, splits=("train", "val", "test"), names=FOLDER_NAMES) -> Path:
    for split in splits:
        for name in names:
            _jpeg(root / split / name / "a.jpg")
            _jpeg(root / split / name / "b.png", mode="RGBA")
            _jpeg(root / split / name / "c.png", mode="L")
            (root / split / name / "notes.txt").write_text("ignored")
    return root


def test_image_folders_with_aliases_and_channel_modes(tmp_path: Path) -> None:
    root = make_folders(tmp_path / "imgs", splits=("Training", "validation", "test"))
    assert detect_format(root) == "folders"
    assert list_splits(root) == ["train", "val", "test"]
    ds = open_dataset(root, "train")
    assert len(ds) == 21 and np.array_equal(ds.class_counts(), [3] * 7)
    assert ds.labels[ds.ids.index("Angry/a")] == CLASS_NAMES.index("Anger")
    assert ds.labels[ds.ids.index("Surprised/c")] == CLASS_NAMES.index("Surprise")
    for i in range(len(ds)):
        image = ds[i].image
        assert image.shape == (12, 12, 3) and image.dtype == np.uint8
    grey = ds[ds.ids.index("sad/c")].image
    assert np.array_equal(grey[..., 0], grey[..., 1])
    assert len(open_dataset(root, "validation")) == 21


def test_image_folders_unknown_class_and_empty_split(tmp_path: Path) -> None:
    root = make_folders(tmp_path / "imgs", splits=("train",))
    _jpeg(root / "train" / "contempt" / "x.jpg")
    with pytest.raises(DatasetError, match=r"contempt.*unknown expression class name"):
        open_dataset(root, "train")
    with pytest.raises(DatasetError, match=r"no 'val' split folder"):
        open_dataset(root, "val")
    empty = tmp_path / "empty"
    for name in FOLDER_NAMES:
        (empty / "train" / name).mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"train split .* is empty"):
        open_dataset(empty, "train")


def test_unknown_layout_names_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError) as info:
        detect_format(tmp_path / "stuff")
    for layout in ("list_patition_label.txt", "emotion,pixels,Usage", "DATASET/{train,test}/{1..7}", "<class name>"):
        assert layout in str(info.value)
    with pytest.raises(DatasetError, match=r"does not exist"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"no known dataset layout"):
        detect_format(tmp_path / "other.csv")


def test_pointing_one_level_above_a_dataset_names_it(tmp_path: Path) -> None:
    """``--data runs/demo/data`` instead of ``runs/demo/data/synthetic``: the error names the dataset inside."""
    make_rafdb(tmp_path / "runs" / "synthetic", n_per_class=1)
    (tmp_path / "runs" / "logs").mkdir()
    with pytest.raises(DatasetError) as info:
        detect_format(tmp_path / "runs")
    assert f"did you mean {tmp_path / 'runs' / 'synthetic'} (rafdb)?" in str(info.value)
    with pytest.raises(DatasetError) as info:
        detect_format(tmp_path / "runs" / "logs")
    assert "did you mean" not in str(info.value)


def test_dataset_info_reports_sizes_histogram_and_skips(tmp_path: Path) -> None:
    root = make_rafdb(tmp_path / "raf", n_per_class=2)
    _truncate(root / "basic" / "Image" / "aligned" / "test_00004_aligned.jpg")
    info = dataset_info(root)
    assert info["format"] == "rafdb" and set(info["splits"]) == {"train", "test"}
    assert info["splits"]["train"]["size"] == 14
    assert info["splits"]["train"]["histogram"] == dict.fromkeys(CLASS_NAMES, 2)
    assert info["skipped"] == 0  # not decoded yet
    checked = dataset_info(root, validate=True)
    assert checked["skipped"] == 1 and checked["splits"]["test"]["skipped_ids"] == ["test_00004"]
    assert checked["splits"]["test"]["size"] == 13


def test_subset_keeps_labels_with_ids(tmp_path: Path) -> None:
    ds = open_dataset(make_rafdb(tmp_path / "raf"), "train")
    sub = ds.subset([13, 0, 5])
    assert sub.ids == ["train_00001", "train_00006", "train_00014"]
    assert sub.labels.tolist() == [ds.labels[0], ds.labels[5], ds.labels[13]]
    assert sub[2].label == 6


# -- torch adapter and the torch-free promise --------------------------------------------------
def test_torch_dataset_wraps_reader(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from edgefer.data.torch_dataset import FERTorchDataset
    from edgefer.preprocess import Preprocessing, preprocess_image

    reader = open_dataset(make_rafdb(tmp_path / "raf"), "train")
    x, y = FERTorchDataset(reader)[3]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 12, 12) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and y == int(reader.labels[3])
    pp = Preprocessing(input_size=32)
    tds = FERTorchDataset(reader, lambda im: preprocess_image(im, pp))
    x, y = tds[0]
    assert x.shape == (3, 32, 32) and len(tds) == 14 and tds.labels is reader.labels
    loader = torch.utils.data.DataLoader(tds, batch_size=5)
    xb, yb = next(iter(loader))
    assert xb.shape == (5, 3, 32, 32) and yb.dtype == torch.int64


def test_import_edgefer_data_is_torch_free() -> None:
    code = (
        "import sys, edgefer.data, edgefer.data.readers, edgefer.data.synth; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
