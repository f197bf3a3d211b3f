"""Training loop: learning, checkpoints, exact resume after Ctrl-C, recipes and configuration."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from edgefer.errors import CheckpointError
from edgefer.training import TrainConfig, load_config, train
from edgefer.training.checkpoint import build_model, load_checkpoint

SMALL = 32  # input size of the runs trained in this file


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A very small synthetic RAF-DB-layout set for runs that test mechanics, not accuracy."""
    from edgefer.data.synth import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("small") / "rafdb", n_train=96, n_test=35, image_size=40)


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data), model="resnet18", out=str(out), epochs=2, batch_size=16, img_size=SMALL, lr=2e-3,
        seed=3, workers=0, progress=False, ema_decay=0.9, dropout=0.2, balance="sampler",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------ learning (session fixture)


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic set at difficulty 0 (full-strength expressions, few nuisances): learnable in seconds."""
    from edgefer.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("easy") / "rafdb"
    return generate_synthetic(root, n_train=160, n_test=70, image_size=48, difficulty=0.0)


def test_training_lowers_loss_and_beats_chance_clearly(easy_data, tmp_path):
    """Seconds-scale: the loss falls and held-out test accuracy is far above chance."""
    from edgefer.training import evaluate

    no_aug = dict(crop_scale=(1.0, 1.0), rotation=0.0, color_jitter=0.0, random_erasing=0.0, label_smoothing=0.0)
    fast = dict(epochs=6, lr=1e-3, batch_size=8, img_size=48, ema_decay=0.0, dropout=0.0, balance="none")
    run = train(_cfg(easy_data, tmp_path / "easy", warmup_epochs=0.5, **fast, **no_aug))
    losses = [h["train_loss"] for h in run.history]
    assert losses[-1] < 0.5 * losses[0], losses
    test = evaluate(run.best_checkpoint, easy_data, split="test")
    majority = np.bincount(test.labels).max() / len(test.labels)
    # Chance: always the majority class for accuracy, 1/7 for the mean of per-class accuracies.
    assert test.accuracy > majority + 0.2, (test.accuracy, majority)
    assert test.mean_class_accuracy > 1 / 7 + 0.25, test.mean_class_accuracy
    assert test.accuracy == pytest.approx(run.metrics["best_val_acc"])  # validation = test split


def test_session_run_learns(tiny_run):
    """The conftest run (msff_resnet18 on the full-difficulty set, a few epochs) lowers both losses.

    Its accuracy is only a little above chance in so short a run on the hard synthetic set, so
    this asserts the signal, not a level (the test above checks the level on the easy set).
    """
    hist = tiny_run.history
    assert len(hist) >= 2
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.1
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert hist[-1]["train_acc"] > hist[0]["train_acc"]
    assert max(h["val_mean_class_acc"] for h in hist) > 1 / 7 + 0.03, hist
    assert tiny_run.metrics["best_val_acc"] == pytest.approx(max(h["val_acc"] for h in hist))


def test_run_directory_contents(tiny_run):
    run = Path(tiny_run.run_dir)
    for name in ("last.pt", "best.pt", "metrics.csv", "training_curves.png", "config.yaml", "summary.json"):
        assert (run / name).is_file(), name
    assert (run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(len(tiny_run.history)))
    assert float(rows[-1]["val_acc"]) == pytest.approx(tiny_run.history[-1]["val_acc"], rel=1e-5)
    assert not list(run.glob("*.tmp")), "a temporary file was left behind"


def test_checkpoint_round_trip(tiny_run, tiny_checkpoint):
    """best.pt holds everything later stages need, loads weights_only, and rebuilds the same network."""
    from edgefer.labels import CLASS_NAMES
    from edgefer.preprocess import Preprocessing

    ckpt = torch.load(tiny_checkpoint, weights_only=True, map_location="cpu")
    assert ckpt["model"]["name"] == "msff_resnet18"
    assert tuple(ckpt["class_names"]) == CLASS_NAMES
    pp = Preprocessing.from_dict(ckpt["preprocessing"])
    assert pp.input_size == 64
    assert ckpt["epoch"] == tiny_run.metrics["best_epoch"]
    for key in ("optimizer", "scheduler", "metrics", "train_config", "rng"):
        assert ckpt[key], key
    assert ckpt["metrics"]["val_acc"] == pytest.approx(tiny_run.metrics["best_val_acc"])
    assert ckpt["train_config"]["img_size"] == 64
    model = build_model(ckpt, expect_model="msff_resnet18", expect_num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = model(x)
        b = build_model(tiny_checkpoint)(x)
    assert torch.equal(a, b)
    assert a.shape == (2, 7)


# ------------------------------------------------------------------ exact resume and Ctrl-C


def test_resume_after_interrupt_matches_uninterrupted_run(small_data, tmp_path, capsys):
    full = train(_cfg(small_data, tmp_path / "full"))

    def ctrl_c(epoch: int, step: int, global_step: int) -> None:
        if epoch == 1 and step == 2:
            raise KeyboardInterrupt

    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(small_data, interrupted), on_step=ctrl_c)
    err = capsys.readouterr().err
    assert "edgefer train --resume" in err and "last.pt" in err
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 0  # the last completed epoch survives

    resumed = train(_cfg(small_data, interrupted, resume=str(interrupted / "last.pt")))
    a = load_checkpoint(full.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    assert a["epoch"] == b["epoch"] == 1
    for key in ("state_dict", "ema_state_dict"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    assert a["extra"]["global_step"] == b["extra"]["global_step"]
    assert resumed.history[-1]["val_acc"] == full.history[-1]["val_acc"]
    rows = list(csv.DictReader((interrupted / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]


def test_resume_refuses_other_model_and_finished_run_is_idempotent(small_data, tmp_path):
    run = train(_cfg(small_data, tmp_path / "r", epochs=1, balance="none", ema_decay=0.0))
    with pytest.raises(CheckpointError, match="holds model 'resnet18'"):
        train(_cfg(small_data, tmp_path / "other", model="resnet50", resume=str(run.last_checkpoint)))
    before = Path(run.last_checkpoint).read_bytes()
    again = train(_cfg(small_data, tmp_path / "r", epochs=1, balance="none", ema_decay=0.0, resume=str(tmp_path / "r")))
    assert again.metrics["val_acc"] == run.metrics["val_acc"] and len(again.history) == 1
    assert Path(run.last_checkpoint).read_bytes() == before  # nothing was retrained or rewritten


# ------------------------------------------------------------------ configuration and recipes


def test_shipped_recipes_load_and_flags_override():
    from edgefer.models import list_models
    from edgefer.training import list_recipes

    names = list_recipes()
    for required in ("msff_resnet50_rafdb", "mask_cbam_resnet_rafdb", "msff_mobilenetv3_rafdb", "synthetic_edge"):
        assert required in names
    for name in names:
        cfg = load_config(name, {"data": "d", "out": "o"})
        assert cfg.model in list_models(), (name, cfg.model)
    cfg = load_config("msff_resnet50_rafdb.yaml", {"data": "d", "out": "o", "lr": 0.5, "epochs": None})
    assert cfg.lr == 0.5 and cfg.epochs == 60 and cfg.optimizer == "sgd" and cfg.img_size == 224
    assert cfg.crop_scale == (0.8, 1.0)


def test_config_errors(tmp_path):
    from edgefer.training import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: resnet18\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(bad, {"data": "d", "out": "o"})
    with pytest.raises(ConfigError, match="neither a file nor a shipped recipe"):
        load_config("no_such_recipe", {})
    with pytest.raises(ConfigError, match="data"):
        load_config("synthetic_edge", {"out": "o"})
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(None, {"data": "d", "model": "m", "out": "o", "optimizer": "lion"})
    with pytest.raises(ConfigError, match="epochs"):
        load_config(None, {"data": "d", "model": "m", "out": "o", "epochs": "many"})


def test_default_learning_rate_depends_on_what_training_starts_from(tmp_path):
    """No --lr and no recipe value: AdamW from scratch gets the rate that learns (see default_lr),
    ImageNet fine-tuning the gentler one; a given value, a recipe's value and a stored run's value win."""
    from edgefer.training.config import ADAMW_LR_PRETRAINED, ADAMW_LR_SCRATCH, default_lr

    base = {"data": "d", "model": "m", "out": "o"}
    assert ADAMW_LR_SCRATCH > ADAMW_LR_PRETRAINED
    assert load_config(None, base).lr == ADAMW_LR_SCRATCH
    assert load_config(None, {**base, "pretrained": "imagenet"}).lr == ADAMW_LR_PRETRAINED
    assert load_config(None, {**base, "optimizer": "sgd"}).lr == default_lr("sgd", None)
    assert load_config(None, {**base, "lr": 0.02}).lr == 0.02
    assert load_config("synthetic_edge", base).lr == 0.003  # the recipe's own value
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: resnet18\npretrained: imagenet\n")
    assert load_config(recipe, {"data": "d", "out": "o"}).lr == ADAMW_LR_PRETRAINED


def test_unknown_dataset_is_a_clear_error(tmp_path):
    from edgefer.errors import EdgeferError

    with pytest.raises(EdgeferError):
        train(_cfg(tmp_path / "nothing_here", tmp_path / "out"))


def test_cli_train_then_resume_from_stored_config(small_data, tmp_path):
    """`edgefer train` with a shipped recipe and flags; `--resume` alone continues with the stored config."""
    from typer.testing import CliRunner

    from edgefer.cli import app

    out = tmp_path / "cli_run"
    args = ["train", "--config", "synthetic_edge", "--data", str(small_data), "--out", str(out), "--arch", "resnet18",
            "--epochs", "1", "--img-size", str(SMALL), "--batch", "16", "--workers", "0", "--quiet",
            "--set", "ema_decay=0.5", "--set", "crop_scale=[0.9, 1.0]"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "best checkpoint" in res.output
    cfg = load_checkpoint(out / "last.pt")["train_config"]
    assert cfg["model"] == "resnet18" and cfg["img_size"] == SMALL and cfg["ema_decay"] == 0.5
    assert cfg["crop_scale"] == [0.9, 1.0] and cfg["optimizer"] == "adamw"  # from the recipe
    res = CliRunner().invoke(app, ["train", "--resume", str(out), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["train_config"]["epochs"] == 2
