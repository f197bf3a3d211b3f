"""Shared fixtures: one small synthetic dataset and one small trained model per test run.

Both are session-scoped so the whole suite pays for them once (seconds, on 2 CPU cores).
"""

from __future__ import annotations

import importlib.util
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgefer.formats import format_named

# Two cores on CI: keep torch/OpenVINO/ORT from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# `edgefer run`/`predict` keep OpenVINO's compiled models in the user cache folder by default
# (edgefer/runtime/cache.py): the tests', and the commands they start, go to a folder of this run instead.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="edgefer-test-cache-")

#: Small input size used by tests (models must also work at 100/112/224; tested in test_models).
TEST_IMG_SIZE = 64
#: Difficulty of the test synthetic set (see generate_synthetic); frames drawn for runtime tests match it.
SYNTH_DIFFICULTY = 0.3
#: The model trained once per run for export/quantize/bench/runtime tests.
TEST_MODEL = "msff_resnet18"
#: Whether the tensorrt package is installed (the ``trt`` row of :mod:`edgefer.formats`): the one flag every
#: test that needs TensorRT, or its absence, uses (``from conftest import HAS_TRT``).
HAS_TRT = format_named("trt").installed()
#: Whether torch is installed. The device-side test files (TensorRT stand-ins, sidecar, backends) also run in
#: a torch-free venv on the device's Python (tests/test_device_python.py): there the fixtures below seed and
#: guard only what exists.
HAS_TORCH = importlib.util.find_spec("torch") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``@pytest.mark.trt`` where tensorrt is not installed: one marker, one reason."""
    if HAS_TRT:
        return
    skip = pytest.mark.skip(reason="tensorrt not installed (pip install edgefer[trt])")
    for item in items:
        if item.get_closest_marker("trt") is not None:
            item.add_marker(skip)


#: Environment variables that change what later tests compute or load; a test must not leave them changed
#: (use ``monkeypatch``). Every ``EDGEFER_*`` variable is guarded too.
_GUARDED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_HOME", "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG")


def _process_state() -> dict[str, object]:
    """The process-wide settings one test could leave behind for the next (torch's, the cwd, some env)."""
    env = {k: v for k, v in os.environ.items() if k in _GUARDED_ENV or k.startswith("EDGEFER_")}
    if not HAS_TORCH:
        return {"os.getcwd()": os.getcwd(), "os.environ": env}
    import torch

    return {
        "torch.get_num_threads()": torch.get_num_threads(),
        "torch.are_deterministic_algorithms_enabled()": torch.are_deterministic_algorithms_enabled(),
        "torch.is_deterministic_algorithms_warn_only_enabled()": torch.is_deterministic_algorithms_warn_only_enabled(),
        "torch.get_default_dtype()": torch.get_default_dtype(),
        "torch.is_grad_enabled()": torch.is_grad_enabled(),
        "os.getcwd()": os.getcwd(),
        "os.environ": env,
    }


def _test_seed() -> int:
    return int(os.environ.get("EDGEFER_TEST_SEED", "0"))


@pytest.fixture
def test_seed() -> int:
    """``EDGEFER_TEST_SEED`` (default 0): the seed of tests whose margin was measured over seeds.

    Such a test prints what it measured; the spread in its comment comes from, e.g.,
    ``for s in 0 1 2 3 4; do EDGEFER_TEST_SEED=$s pytest -s tests/test_x.py -k name; done``.
    """
    return _test_seed()


@pytest.fixture(autouse=True)
def _same_start_no_leaks():
    """Every test starts from the same global RNG state and must leave process-wide state as it found it.

    Seeding: a test that draws from the global torch/numpy/random generators gets the same numbers
    whatever ran before it (in any order, alone or in the full suite); ``EDGEFER_TEST_SEED=k`` draws
    other numbers, to measure how much an assertion's value varies with them. The check after the test: a
    changed torch thread count, deterministic-algorithms flag, default dtype, grad mode, cwd or guarded
    environment variable fails that test by name (and is undone), because it changes what every later
    test computes - the cause of an order-dependent failure is then reported where it happens.
    """
    seed = _test_seed()
    if HAS_TORCH:
        import torch

        torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    before = _process_state()
    yield
    after = _process_state()
    leaked = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    if leaked and HAS_TORCH:
        import torch

        torch.set_num_threads(before["torch.get_num_threads()"])
        torch.use_deterministic_algorithms(
            before["torch.are_deterministic_algorithms_enabled()"],
            warn_only=before["torch.is_deterministic_algorithms_warn_only_enabled()"],
        )
        torch.set_default_dtype(before["torch.get_default_dtype()"])
        torch.set_grad_enabled(before["torch.is_grad_enabled()"])
    if leaked:
        os.chdir(before["os.getcwd()"])
        for k in set(before["os.environ"]) | set(after["os.environ"]):
            if k in before["os.environ"]:
                os.environ[k] = before["os.environ"][k]
            else:
                os.environ.pop(k, None)
        pytest.fail(f"the test left process-wide state changed (before, after): {leaked}", pytrace=False)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set in the RAF-DB official layout (read by the real loader).

    Difficulty 0.3 (strong expressions, mild nuisances): a model learns it in a few CPU epochs
    (~90 % test accuracy), so quantization damage and agreement are measured on a model that has
    learned something, not on one that predicts the majority class.
    """
    from edgefer.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    return generate_synthetic(
        root / "rafdb", n_train=1400, n_test=350, image_size=100, seed=0, difficulty=SYNTH_DIFFICULTY
    )


@pytest.fixture(scope="session")
def tiny_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A TEST_MODEL trained for a few epochs on ``synth_data`` at TEST_IMG_SIZE (the TrainResult)."""
    if not HAS_TORCH:  # a device venv (tests/test_device_python.py, or `pytest -m trt` on a Jetson)
        pytest.skip("torch not installed: this test needs a model trained here (the training side)")
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
