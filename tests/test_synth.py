"""The synthetic embedded default: layout, determinism, class balance, difficulty, frames."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefer.data import open_dataset
from edgefer.data.synth import (
    ALIGNED_DIR,
    LABEL_FILE,
    RAFDB_TEST_COUNTS,
    RAFDB_TRAIN_COUNTS,
    class_counts,
    compose_frame,
    generate_synthetic,
    render_face,
)
from edgefer.errors import DatasetError
from edgefer.labels import CLASS_NAMES


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "basic").rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("s") / "a", n_train=70, n_test=21, image_size=48, seed=3)


def test_writes_rafdb_official_layout(small_set: Path) -> None:
    lines = (small_set / LABEL_FILE).read_text().splitlines()
    assert len(lines) == 91
    assert lines[0].startswith("train_00001.jpg ") and lines[70].startswith("test_00001.jpg ")
    assert (small_set / ALIGNED_DIR / "train_00070_aligned.jpg").is_file()
    assert (small_set / ALIGNED_DIR / "test_00021_aligned.jpg").is_file()
    assert not list(small_set.glob(".edgefer-stage-*"))
    img = cv2.imread(str(small_set / ALIGNED_DIR / "train_00001_aligned.jpg"))
    assert img.shape == (48, 48, 3)
    ds = open_dataset(small_set, "train")  # the real RAF-DB reader reads it
    assert ds.format == "rafdb" and len(ds) == 70 and ds[0].image.shape == (48, 48, 3)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, small_set: Path) -> None:
    again = generate_synthetic(tmp_path / "b", n_train=70, n_test=21, image_size=48, seed=3)
    assert _tree_digest(again) == _tree_digest(small_set)
    other = generate_synthetic(tmp_path / "c", n_train=70, n_test=21, image_size=48, seed=4)
    assert (other / LABEL_FILE).read_text() != (small_set / LABEL_FILE).read_text()
    assert _tree_digest(other) != _tree_digest(small_set)


def test_class_balance_follows_rafdb(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "d", n_train=300, n_test=100, image_size=32, seed=1, label_noise=0.0)
    train = open_dataset(root, "train").class_counts()
    test = open_dataset(root, "test").class_counts()
    assert train.tolist() == class_counts(300, RAFDB_TRAIN_COUNTS)
    assert test.tolist() == class_counts(100, RAFDB_TEST_COUNTS)
    # RAF-DB's shape: Happiness most common, Fear then Disgust rarest.
    assert CLASS_NAMES[int(np.argmax(train))] == "Happiness"
    assert [CLASS_NAMES[i] for i in np.argsort(train)[:2]] == ["Fear", "Disgust"]
    expected = np.asarray(RAFDB_TRAIN_COUNTS) / sum(RAFDB_TRAIN_COUNTS) * 300
    assert np.all(np.abs(train - expected) <= 1)


def test_label_noise_flips_about_the_requested_fraction(tmp_path: Path) -> None:
    clean = generate_synthetic(tmp_path / "clean", n_train=400, n_test=7, image_size=32, seed=2, label_noise=0.0)
    noisy = generate_synthetic(tmp_path / "noisy", n_train=400, n_test=7, image_size=32, seed=2, label_noise=0.1)
    a = open_dataset(clean, "train").labels
    b = open_dataset(noisy, "train").labels
    assert 0.04 < np.mean(a != b) < 0.18


def test_class_counts_keeps_every_class() -> None:
    counts = class_counts(7, RAFDB_TRAIN_COUNTS)
    assert counts == [1] * 7
    assert sum(class_counts(1001, RAFDB_TRAIN_COUNTS)) == 1001


def test_reuse_overwrite_and_bad_arguments(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "e", n_train=14, n_test=7, image_size=32, seed=0)
    stamp = (root / LABEL_FILE).stat().st_mtime_ns
    assert generate_synthetic(root, n_train=14, n_test=7, image_size=32, seed=0) == root  # same spec: reused
    assert (root / LABEL_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="different synthetic set"):
        generate_synthetic(root, n_train=14, n_test=7, image_size=32, seed=1)
    generate_synthetic(root, n_train=21, n_test=7, image_size=32, seed=1, overwrite=True)
    assert len((root / LABEL_FILE).read_text().splitlines()) == 28
    with pytest.raises(DatasetError, match="n_train"):
        generate_synthetic(tmp_path / "f", n_train=3, n_test=7)
    with pytest.raises(DatasetError, match="label_noise"):
        generate_synthetic(tmp_path / "f", n_train=7, n_test=7, label_noise=1.5)


def test_render_face_is_deterministic_rgb_and_validates_options() -> None:
    a = render_face(3, 80, np.random.default_rng(5))
    b = render_face(3, 80, np.random.default_rng(5))
    assert a.shape == (80, 80, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_face(3, 80, np.random.default_rng(6)))
    with pytest.raises(TypeError, match="unknown jitter"):
        render_face(0, 64, np.random.default_rng(0), wobble=3)
    with pytest.raises(ValueError):
        render_face(7, 64, np.random.default_rng(0))


def _nearest_centroid_balanced_acc(xtr, ytr, xte, yte) -> float:
    cent = np.stack([xtr[ytr == c].mean(0) for c in range(7)])
    pred = ((xte[:, None, :] - cent[None]) ** 2).sum(-1).argmin(1)
    return float(np.mean([np.mean(pred[yte == c] == c) for c in range(7) if np.any(yte == c)]))


def _pixels(ds, side: int = 32) -> np.ndarray:
    return np.stack(
        [cv2.resize(ds[i].image, (side, side), interpolation=cv2.INTER_AREA).ravel() for i in range(len(ds))]
    ).astype(np.float32)


def test_per_pixel_mean_classifier_is_near_chance(synth_data: Path) -> None:
    """The class is in the face geometry, not in the average image: nearest class-mean ~ chance."""
    train, test = open_dataset(synth_data, "train"), open_dataset(synth_data, "test")
    acc = _nearest_centroid_balanced_acc(_pixels(train), train.labels, _pixels(test), test.labels)
    assert acc < 0.27, f"per-pixel-mean classifier reached balanced accuracy {acc:.2f} (chance 0.14)"


def test_class_geometry_differs_without_nuisances() -> None:
    """Same classifier on faces drawn without nuisances (full intensity, no jitter) separates them.

    Shows the near-chance result above comes from nuisance variation hiding a real geometric
    difference, not from classes that look alike.
    """
    clean = dict(
        intensity=(1.0, 1.0),
        param_noise=0.0,
        rotation=0.0,
        scale=(1.0, 1.0),
        shift=0.0,
        aspect=(1.0, 1.0),
        skin_tone=(0.3, 0.3),
        hair_prob=0.0,
        background=False,
        light=0.0,
        brightness=(1.0, 1.0),
        contrast=(1.0, 1.0),
        blur=0.0,
        noise=0.0,
        occlusion_prob=0.0,
        glasses_prob=0.0,
    )
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), 8)
    x = np.stack([render_face(int(c), 64, rng, **clean).ravel() for c in labels]).astype(np.float32)
    acc = _nearest_centroid_balanced_acc(x[0::2], labels[0::2], x[1::2], labels[1::2])
    assert acc > 0.8, f"clean faces: nearest-centroid balanced accuracy {acc:.2f}"


def test_compose_frame_places_non_overlapping_faces() -> None:
    frame, boxes = compose_frame([0, 3, 6], frame_hw=(240, 320), rng=np.random.default_rng(1), face_size_range=(60, 80))
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert len(boxes) == 3
    for i, (x, y, w, h) in enumerate(boxes):
        assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240 and 60 <= w == h <= 80
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y
    with pytest.raises(ValueError, match="cannot place"):
        compose_frame([0] * 30, frame_hw=(200, 200), rng=np.random.default_rng(0), face_size_range=(90, 100))


def test_haar_cascade_finds_most_composed_faces() -> None:
    """The runtime's default detector must see the drawn faces (measured ~0.85 at 110-130 px)."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rng = np.random.default_rng(0)
    found = total = 0
    for _ in range(8):
        frame, boxes = compose_frame(list(rng.integers(0, 7, 2)), rng=rng, face_size_range=(110, 130))
        dets = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(60, 60))
        for bx, by, bw, bh in boxes:
            total += 1
            found += any(
                abs((dx + dw / 2) - (bx + bw / 2)) < bw / 3 and abs((dy + dh / 2) - (by + bh / 2)) < bh / 3
                for dx, dy, dw, dh in dets
            )
    assert found / total >= 0.6, f"Haar found {found}/{total} faces"


def test_difficulty_scales_nuisances_and_is_recorded(tmp_path) -> None:
    import json

    from edgefer.data.synth import FaceJitter, generate_synthetic, jitter_for_difficulty
    from edgefer.errors import DatasetError

    assert jitter_for_difficulty(1.0) == FaceJitter()
    easy = jitter_for_difficulty(0.0)
    assert easy.occlusion_prob == 0.0 and easy.rotation < FaceJitter().rotation
    assert easy.intensity[0] > FaceJitter().intensity[0]
    with pytest.raises(DatasetError, match="difficulty"):
        jitter_for_difficulty(1.5)
    root = generate_synthetic(tmp_path / "s", n_train=14, n_test=7, difficulty=0.25)
    assert json.loads((root / "synthetic.json").read_text())["difficulty"] == 0.25
