"""The train CLI turns dataset problems into clear messages and honours the flags they name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


def _folder_set(root: Path, classes: list[str], per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    return root


def _train(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "edgefer.cli",
        "train",
        "--data",
        str(data),
        "--arch",
        "resnet18",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--img-size",
        "32",
        "--batch",
        "8",
        "--workers",
        "0",
        "--quiet",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_missing_class_is_a_clear_error_and_the_flag_it_names_works(tmp_path: Path) -> None:
    six = ["surprise", "fear", "disgust", "happy", "sad", "angry"]  # no neutral
    data = _folder_set(tmp_path / "faces", six)
    proc = _train(data, tmp_path / "run1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Neutral" in proc.stderr and "--allow-missing-classes" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _train(data, tmp_path / "run2", "--allow-missing-classes")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run2" / "best.pt").exists()


def test_unreadable_image_skips_or_raises_by_flag(tmp_path: Path) -> None:
    data = _folder_set(tmp_path / "faces", ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"])
    (data / "train" / "happy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    proc = _train(data, tmp_path / "skip")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _train(data, tmp_path / "raise", "--on-error", "raise")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "broken.png" in proc.stderr and "Traceback" not in proc.stderr
