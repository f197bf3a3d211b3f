"""QAT's fine-tuning loss: distillation from the FP32 model (the default) or the labels.

The benchmark gate scores INT8 against FP32 (agreement, per-class change), so QAT by default
pulls the fake-quantized student towards the FP32 network's own logits. These tests check the
loss itself on the session's tiny checkpoint (a few steps, no NNCF) and that a bad choice is a
clear error before anything is read.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgefer.errors import QuantizationError  # noqa: E402
from edgefer.quantize.options import QuantizeOptions  # noqa: E402


def _model_and_pieces(checkpoint: Path):
    from edgefer.preprocess import Preprocessing
    from edgefer.training.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    return build_model(ckpt), Preprocessing.from_dict(ckpt["preprocessing"]), dict(ckpt.get("train_config") or {})


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_distilling_from_an_identical_teacher_starts_at_zero_loss(tiny_checkpoint: Path, synth_data: Path) -> None:
    """A student equal to its FP32 teacher has nothing to learn from it (loss ~0 on the first
    batch), while the label loss on the same batch is the model's cross-entropy, well above 0.
    The teacher stays frozen: fine-tuning the student leaves its weights untouched."""
    from edgefer.quantize.qat import fine_tune

    student, pp, train_config = _model_and_pieces(tiny_checkpoint)
    teacher = copy.deepcopy(student)
    before = _state(teacher)
    kwargs = dict(epochs=1, lr=1e-3, seed=0, max_steps=3, progress=False)
    info = fine_tune(student, synth_data, "train", pp, train_config, loss="distill", teacher=teacher, **kwargs)
    assert info["loss"] == "distill" and info["temperature"] == 1.0 and info["steps"] == 3
    assert abs(info["first_loss"]) < 1e-5, info
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())  # the student did move

    labels_student, _, _ = _model_and_pieces(tiny_checkpoint)
    labels = fine_tune(labels_student, synth_data, "train", pp, train_config, loss="labels", **kwargs)
    assert labels["loss"] == "labels" and "temperature" not in labels
    assert labels["first_loss"] > 0.05, labels


def test_distillation_pulls_a_perturbed_student_back_towards_the_teacher(
    tiny_checkpoint: Path, synth_data: Path
) -> None:
    """The distillation gradient points at the teacher (a sign or argument-order slip would pass
    the zero-loss test): a student whose classifier is perturbed ends closer to the teacher's
    logits than it started, KL on held-out test images in eval mode (~8 % closer after 8 steps
    when written; the check asks for 3 %)."""
    from edgefer.data.calibration import calibration_arrays
    from edgefer.quantize.qat import fine_tune
    from edgefer.training.distill import kd_kl

    student, pp, train_config = _model_and_pieces(tiny_checkpoint)
    teacher = copy.deepcopy(student).eval()
    head = [m for m in student.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.add_(0.3 * torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(0)))
    x = torch.from_numpy(calibration_arrays(synth_data, pp, calib_size=64, split="test").x)

    def gap() -> float:
        student.eval()
        with torch.no_grad():
            return float(kd_kl(student(x), teacher(x)))

    start = gap()
    fine_tune(
        student, synth_data, "train", pp, train_config, epochs=1, lr=1e-3, max_steps=8, progress=False, teacher=teacher
    )
    assert gap() < 0.97 * start, (start, gap())


def test_fine_tune_refuses_a_bad_loss_choice(tiny_checkpoint: Path, synth_data: Path) -> None:
    from edgefer.quantize.qat import fine_tune

    student, pp, train_config = _model_and_pieces(tiny_checkpoint)
    with pytest.raises(QuantizationError, match="QAT loss must be one of distill, labels, not 'mse'"):
        fine_tune(student, synth_data, "train", pp, train_config, epochs=1, lr=1e-4, loss="mse")
    with pytest.raises(QuantizationError, match="needs the FP32 teacher"):
        fine_tune(student, synth_data, "train", pp, train_config, epochs=1, lr=1e-4, loss="distill", teacher=None)


def test_distillation_is_the_default_and_labels_stay_selectable() -> None:
    assert QuantizeOptions().qat_loss == "distill"
    opts = QuantizeOptions(method="qat", qat_loss="labels")
    assert opts.to_argv("data", checkpoint="best.pt")[-2:] == ["--qat-loss", "labels"]
    with pytest.raises(QuantizationError, match="qat_loss must be one of distill, labels, not 'kl'"):
        QuantizeOptions(qat_loss="kl")
    with pytest.raises(QuantizationError, match="qat_temperature must be a positive number"):
        QuantizeOptions(qat_temperature=0.0)


def _console_script() -> str:
    exe = Path(sys.executable).with_name("edgefer")
    found = str(exe) if exe.exists() else shutil.which("edgefer")
    assert found, "the edgefer console script is not installed (pip install -e .)"
    return found


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--qat-loss", "mse"], "error: qat_loss must be one of distill, labels, not 'mse'"),
        (["--qat-temperature", "-1"], "error: qat_temperature must be a positive number, got -1.0"),
    ],
)
def test_a_bad_qat_loss_on_the_command_line_is_exit_2(tmp_path: Path, flags: list[str], needle: str) -> None:
    """Refused when the options are made, before the (missing) checkpoint or data are opened."""
    argv = ["quantize", "--checkpoint", str(tmp_path / "best.pt"), "--data", str(tmp_path), "--int8-method", "qat"]
    env = {k: v for k, v in os.environ.items() if k != "EDGEFER_DEBUG"}
    proc = subprocess.run([_console_script(), *argv, *flags], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written
