"""The data of a training run as one rank sees it: open the splits, check they make a batch, build
the sampler and the loaders (:func:`build_loaders`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgefer.errors import DatasetError
from edgefer.preprocess import Preprocessing
from edgefer.training import distributed as D
from edgefer.training.augment import AugmentConfig, EvalTransform, TrainAugment
from edgefer.training.config import ConfigError, TrainConfig
from edgefer.training.data import AugmentedSubset, EpochSampler, class_counts, class_weights, stratified_split


@dataclass
class Loaders:
    """The data of a run as this rank sees it: the training shard, the validation shard, their loaders."""

    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    train_set: AugmentedSubset
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader
    class_counts: np.ndarray  # training images per class (for class-balanced weights)
    rank_batch: int  # images per step on this rank (the global batch over the ranks)
    steps_per_epoch: int
    val_description: str  # where the validation images come from, for the banner

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's data order and augmentation (both functions of (seed, epoch, sample))."""
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)


def build_loaders(cfg: TrainConfig, info: D.DistInfo, device: torch.device) -> Loaders:
    """Open the splits, check they make at least one batch, and build this rank's loaders.

    Validation images are split over ranks by interleaving and the metrics summed over them;
    training batches follow the global-batch semantics of :class:`EpochSampler`.
    """
    train_reader, train_idx, val_reader, val_idx, class_names, val_what = _open_splits(cfg)
    pp = Preprocessing(input_size=cfg.img_size, mean=cfg.mean, std=cfg.std, resize=cfg.resize)
    aug = AugmentConfig(cfg.crop_scale, cfg.crop_ratio, cfg.hflip, cfg.rotation, cfg.color_jitter, cfg.random_erasing)
    train_set = AugmentedSubset(train_reader, train_idx, TrainAugment(pp, aug), seed=cfg.seed)
    val_set = AugmentedSubset(val_reader, np.asarray(val_idx)[info.rank :: info.world], EvalTransform(pp), cfg.seed)
    counts = class_counts(train_set.labels, len(class_names))

    if cfg.batch_size % info.world:
        raise ConfigError(f"batch_size {cfg.batch_size} (global) is not divisible by the {info.world} processes")
    rank_batch = cfg.batch_size // info.world
    sample_w = None
    if cfg.balance == "sampler":
        sample_w = class_weights(counts, cfg.balance_method, cfg.balance_beta)[train_set.labels]
    sampler = EpochSampler(len(train_set), seed=cfg.seed, weights=sample_w, rank=info.rank, world=info.world)
    steps_per_epoch = len(sampler) // rank_batch
    if steps_per_epoch < 1:
        raise ConfigError(
            f"the training split has {len(train_set)} images, fewer than one batch of {cfg.batch_size}; lower --batch"
        )
    loader_kw: dict[str, Any] = {"num_workers": cfg.workers, "pin_memory": device.type == "cuda"}
    return Loaders(
        class_names=class_names,
        preprocessing=pp,
        train_set=train_set,
        sampler=sampler,
        train_loader=DataLoader(train_set, batch_size=rank_batch, sampler=sampler, drop_last=True, **loader_kw),
        val_loader=DataLoader(val_set, batch_size=max(rank_batch, 32), shuffle=False, **loader_kw),
        class_counts=counts,
        rank_batch=rank_batch,
        steps_per_epoch=steps_per_epoch,
        val_description=val_what,
    )


def _open_splits(cfg: TrainConfig):
    """(train reader, train indices, val reader, val indices, class names, val description)."""
    from edgefer.data import open_dataset

    train_reader = open_dataset(
        cfg.data, "train", on_error=cfg.on_error, allow_missing_classes=cfg.allow_missing_classes
    )
    labels = np.asarray(train_reader.labels, dtype=np.int64)
    if cfg.val_split > 0:
        train_idx, val_idx = stratified_split(labels, cfg.val_split, cfg.seed)
        val_reader, what = train_reader, f"{len(val_idx)} images held out of train (val_split={cfg.val_split})"
    else:
        train_idx = np.arange(len(labels))
        val_reader = open_dataset(cfg.data, "test", on_error=cfg.on_error)
        val_idx = np.arange(len(val_reader))
        what = f"test split ({len(val_idx)} images), as RAF-DB papers do"
        if tuple(val_reader.class_names) != tuple(train_reader.class_names):
            raise DatasetError(
                f"train and test splits of {cfg.data} have different classes: "
                f"{list(train_reader.class_names)} vs {list(val_reader.class_names)}"
            )
    if len(val_idx) == 0:
        raise DatasetError(f"the validation set of {cfg.data} is empty")
    return train_reader, train_idx, val_reader, val_idx, tuple(train_reader.class_names), what
