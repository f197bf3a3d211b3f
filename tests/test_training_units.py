"""Building blocks of the training loop: augmentation, sampler, schedule, class weights, EMA."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from edgefer.preprocess import Preprocessing, preprocess_image
from edgefer.training.augment import AugmentConfig, EvalTransform, TrainAugment
from edgefer.training.data import EpochSampler, class_weights, stratified_split
from edgefer.training.optim import ModelEma, build_optimizer, warmup_cosine


def _face(size: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_augment_without_randomness_is_the_eval_preprocessing():
    """With every augmentation off, the train transform is exactly preprocess_image (same normalisation)."""
    pp = Preprocessing(input_size=48, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    off = AugmentConfig(crop_scale=(1.0, 1.0), hflip=0.0, rotation=0.0, color_jitter=0.0, random_erasing=0.0)
    img = _face()
    x = TrainAugment(pp, off)(img, np.random.default_rng(0))
    np.testing.assert_allclose(x, preprocess_image(img, pp), atol=1e-6)
    np.testing.assert_array_equal(EvalTransform(pp)(img), preprocess_image(img, pp))


def test_augment_is_a_function_of_the_generator():
    pp = Preprocessing(input_size=40)
    aug = TrainAugment(pp, AugmentConfig(random_erasing=1.0))
    img = _face()
    a = aug(img, np.random.default_rng([1, 2, 3]))
    b = aug(img, np.random.default_rng([1, 2, 3]))
    c = aug(img, np.random.default_rng([1, 2, 4]))
    assert a.shape == (3, 40, 40) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a == 0).all(axis=0).any(), "random erasing with p=1 should zero a rectangle"


def test_hflip_mirrors():
    pp = Preprocessing(input_size=32)
    only_flip = AugmentConfig(crop_scale=(1.0, 1.0), hflip=1.0, rotation=0.0, color_jitter=0.0, random_erasing=0.0)
    img = _face(32)
    x = TrainAugment(pp, only_flip)(img, np.random.default_rng(0))
    np.testing.assert_allclose(x, preprocess_image(img, pp)[:, :, ::-1], atol=1e-6)


def test_sampler_shards_make_up_the_global_batches():
    """Rank r's k-th batch of B/world samples, over all ranks, is the k-th global batch of B."""
    n, batch, world = 50, 8, 2
    single = list(EpochSampler(n, seed=5))
    shards = [list(EpochSampler(n, seed=5, rank=r, world=world)) for r in range(world)]
    per = batch // world
    for k in range(n // batch):
        together = sorted(i for s in shards for i in s[k * per : (k + 1) * per])
        assert together == sorted(single[k * batch : (k + 1) * batch])
    s = EpochSampler(n, seed=5)
    s.set_epoch(1)
    assert list(s) != single and sorted(s) == list(range(n))


def test_weighted_sampler_balances_classes():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(np.bincount(labels), "inverse")[labels]
    drawn = labels[list(EpochSampler(len(labels), seed=0, weights=w))]
    frac = np.bincount(drawn, minlength=2) / len(drawn)
    assert 0.35 < frac[1] < 0.65


def test_class_weights():
    counts = np.array([100, 10, 0, 50])
    inv = class_weights(counts, "inverse")
    assert inv[2] == 0 and inv[1] / inv[0] == pytest.approx(10)
    assert inv[counts > 0].mean() == pytest.approx(1.0)
    eff = class_weights(counts, "effective", beta=0.99)
    expected = (1 - 0.99) / (1 - 0.99 ** counts[[0, 1, 3]])
    np.testing.assert_allclose(eff[[0, 1, 3]] / eff[0], expected / expected[0])


def test_stratified_split_is_deterministic_and_stratified():
    labels = np.repeat(np.arange(4), [40, 20, 10, 30])
    tr, va = stratified_split(labels, 0.1, seed=1)
    tr2, va2 = stratified_split(labels, 0.1, seed=1)
    np.testing.assert_array_equal(va, va2)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    np.testing.assert_array_equal(np.bincount(labels[va]), [4, 2, 1, 3])
    np.testing.assert_array_equal(tr, tr2)


def test_warmup_cosine_schedule():
    total, warm = 100, 10
    assert warmup_cosine(0, total, warm, 0.1, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(5, total, warm, 0.1, 0.0) == pytest.approx(0.55)
    assert warmup_cosine(10, total, warm, 0.1, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(55, total, warm, 0.1, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(100, total, warm, 0.1, 0.05) == pytest.approx(0.05)
    values = [warmup_cosine(s, total, warm) for s in range(warm, total)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert math.isclose(warmup_cosine(0, 10, 0), 1.0)


def test_no_weight_decay_on_biases_and_norms():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = build_optimizer(net, "sgd", 0.1, 5e-4)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(net[0].weight)}


def test_ema_tracks_weights_and_copies_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(net, decay=0.5)
    start = ema.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].num_batches_tracked.fill_(7)
    ema.update(net)  # decay warm-up: min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module[0].weight, start * d + net[0].weight * (1 - d))
    assert int(ema.module[1].num_batches_tracked) == 7
    assert set(ema.state_dict()) == set(net.state_dict())


def test_report_from_confusion_matches_hand_computation():
    from edgefer.training.trainer import report_from_confusion

    cm = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 0]])
    rep = report_from_confusion(cm, ("a", "b", "c"))
    np.testing.assert_array_equal(rep.confusion, cm)
    assert rep.accuracy == pytest.approx(5 / 8)
    assert rep.mean_class_accuracy == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert rep.precision[0] == pytest.approx(3 / 5)
