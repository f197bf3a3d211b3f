"""Knowledge distillation: the loss, the teacher adapter, and a student that moves toward the teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgefer.errors import CheckpointError
from edgefer.preprocess import Preprocessing, preprocess_batch
from edgefer.training import TrainConfig, predict_logits, train
from edgefer.training.checkpoint import build_model, load_checkpoint
from edgefer.training.distill import DistillationLoss, Teacher, kd_kl, load_teacher


def test_kd_loss_terms():
    s = torch.randn(5, 7, requires_grad=True)
    t = torch.randn(5, 7)
    y = torch.randint(0, 7, (5,))
    ce = torch.nn.CrossEntropyLoss()
    assert float(kd_kl(t, t, 3.0)) == pytest.approx(0.0, abs=1e-6)
    total, kl = DistillationLoss(ce, temperature=3.0, alpha=1.0)(s, t, y)
    assert float(total.detach()) == pytest.approx(9.0 * float(kl), rel=1e-5)
    total0, _ = DistillationLoss(ce, temperature=3.0, alpha=0.0)(s, t, y)
    assert float(total0.detach()) == pytest.approx(float(ce(s, y).detach()))
    p_t = torch.softmax(t / 3, 1)
    by_hand = (p_t * (p_t.log() - torch.log_softmax(s / 3, 1))).sum(1).mean()
    assert float(kl) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    total.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_teacher_renormalises_student_batches():
    """A teacher trained with other mean/std sees exactly its own preprocessing of the image."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    t_pp = Preprocessing(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    s_pp = Preprocessing(input_size=32)
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    teacher = Teacher(net, t_pp, s_pp)
    teacher.train()
    assert not teacher.model.training
    got = teacher(torch.from_numpy(preprocess_batch([img], s_pp)))
    with torch.no_grad():
        want = net(torch.from_numpy(preprocess_batch([img], t_pp)))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_teacher_with_other_classes_is_refused(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="same classes"):
        load_teacher(tiny_checkpoint, ("a", "b", "c"), Preprocessing(input_size=32))


@pytest.fixture(scope="module")
def kd_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefer.data.synth import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("kd") / "rafdb", n_train=96, n_test=35, image_size=48, seed=4)


def _mean_kl(student_ckpt: Path | None, student_cfg: TrainConfig, teacher_ckpt: Path, data: Path, split: str) -> float:
    """KL(teacher || student) at T=1 on the images of ``split``, each model with its own preprocessing."""
    from edgefer.data import open_dataset

    reader = open_dataset(str(data), split)
    images = [reader[i].image for i in range(len(reader))]
    t = load_checkpoint(teacher_ckpt)
    t_logits = predict_logits(build_model(t), images, Preprocessing.from_dict(t["preprocessing"]))
    if student_ckpt is None:  # the student's initial weights: the trainer seeds before create_model
        from edgefer.models import create_model

        torch.manual_seed(student_cfg.seed)
        student = create_model(student_cfg.model, dropout=student_cfg.dropout).eval()
    else:
        student = build_model(student_ckpt)
    s_logits = predict_logits(student, images, Preprocessing(input_size=student_cfg.img_size))
    return float(kd_kl(torch.from_numpy(s_logits), torch.from_numpy(t_logits), 1.0))


#: bounds on KL(teacher || KD student) relative to the CE student and to the initial weights (train images)
KD_CE = 0.85
KD_INIT = 0.9


def test_distillation_moves_student_toward_teacher(tiny_checkpoint, kd_data, tmp_path, test_seed):
    """Two students with the same seed, data order and budget; only one has the teacher's term.

    Closeness is KL(teacher || student) at T=1 on the 96 training images, the images the teacher
    term was fitted on. 36 steps from scratch move a ResNet-18 only a little, so the signal is
    modest and the float summation order (thread count, CPU kernels) changes it as much as the seed
    does: a margin is only meaningful against a measured spread (in the comment below).
    """
    common = dict(
        data=str(kd_data), model="resnet18", epochs=3, batch_size=8, img_size=32, lr=1e-3, seed=test_seed,
        warmup_epochs=0.0, workers=0, progress=False, kd_temperature=4.0, random_erasing=0.0, rotation=0.0,
    )  # fmt: skip
    kd_cfg = TrainConfig(out=str(tmp_path / "kd"), teacher=str(tiny_checkpoint), kd_alpha=0.9, **common)
    kd = train(kd_cfg)
    ce = train(TrainConfig(out=str(tmp_path / "ce"), **common))

    kl = {
        name: {split: _mean_kl(ckpt, kd_cfg, tiny_checkpoint, kd_data, split) for split in ("train", "test")}
        for name, ckpt in (("init", None), ("kd", kd.last_checkpoint), ("ce", ce.last_checkpoint))
    }
    train_kl = [h["train_kl"] for h in kd.history]
    print(
        f"seed {test_seed}, {torch.get_num_threads()} threads: KL {kl}; KD/CE "
        f"{kl['kd']['train'] / kl['ce']['train']:.2f} (test {kl['kd']['test'] / kl['ce']['test']:.2f}), KD/init "
        f"{kl['kd']['train'] / kl['init']['train']:.2f}; train_kl {train_kl}"
    )
    # Measured spread (this body, seeds 0, 2, 3, 4 with 2 threads and seed 0 with 1 thread, Intel Xeon
    # AVX512-VNNI, `EDGEFER_TEST_SEED=$s pytest -s tests/test_distill.py -k moves_student`): on the
    # train images KD/CE 0.62-0.72 and KD/init 0.64-0.79; on the test images KD/CE 0.64-0.85. With the
    # old 1-epoch warm-up, 1 thread gave KD/init 1.03 on the test images: the failure seen on a fresh
    # machine. The bounds leave >= 0.1 above the worst measured ratio.
    assert kl["kd"]["train"] < KD_CE * kl["ce"]["train"], kl
    assert kl["kd"]["train"] < KD_INIT * kl["init"]["train"], kl
    assert kl["kd"]["test"] < kl["ce"]["test"], kl
    assert train_kl[-1] < train_kl[0], train_kl
    assert load_checkpoint(kd.last_checkpoint)["extra"]["teacher"]["model"]["name"] == "msff_resnet18"
