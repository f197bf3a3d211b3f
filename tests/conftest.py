"""Shared fixtures: one small synthetic dataset and one small trained model per test run.

Both are session-scoped so the whole suite pays for them once (seconds, on 2 CPU cores).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores on CI: keep torch/OpenVINO/ORT from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")

#: Small input size used by tests (models must also work at 100/112/224; tested in test_models).
TEST_IMG_SIZE = 64
#: Difficulty of the test synthetic set (see generate_synthetic); frames drawn for runtime tests match it.
SYNTH_DIFFICULTY = 0.3
#: The model trained once per run for export/quantize/bench/runtime tests.
TEST_MODEL = "msff_resnet18"


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set in the RAF-DB official layout (read by the real loader).

    Difficulty 0.3 (strong expressions, mild nuisances): a model learns it in a few CPU epochs
    (~90 % test accuracy), so quantization damage and agreement are measured on a model that has
    learned something, not on one that predicts the majority class.
    """
    from edgefer.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    return generate_synthetic(root / "rafdb", n_train=1400, n_test=350, image_size=100, seed=0,
                              difficulty=SYNTH_DIFFICULTY)


@pytest.fixture(scope="session")
def tiny_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A TEST_MODEL trained for a few epochs on ``synth_data`` at TEST_IMG_SIZE (the TrainResult)."""
    from edgefer.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / TEST_MODEL
    cfg = TrainConfig(
        data=str(synth_data),
        model=TEST_MODEL,
        out=str(out),
        epochs=4,
        batch_size=32,
        img_size=TEST_IMG_SIZE,
        lr=2e-3,
        random_erasing=0.0,
        rotation=5.0,
        seed=0,
        workers=0,
        progress=False,
    )
    return train(cfg)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    """Path of the best checkpoint of :func:`tiny_run`."""
    return Path(tiny_run.best_checkpoint)
