"""How hard is the synthetic set? Baselines that need no training, per difficulty.

docs/datasets.md quotes these numbers; this script regenerates them, so the page cannot drift from
the generator again (it once quoted numbers measured on an older difficulty). For each difficulty it
draws the default 3000/750 set (seed 0, 100 px as `edgefer data synth` writes it) and scores, on
the test split:

* chance (1/7) and always predicting the most common train class;
* a nearest class-mean-image classifier on 32x32 grey images (what "the classes differ in their
  average picture" buys);
* the same with each image standardised (mean 0, std 1) first, removing brightness and contrast.

Accuracy after training is measured elsewhere (benchmarks/demo.md, benchmarks/learning_probe.md).

    .venv/bin/python benchmarks/synth_hardness.py --difficulties 0.6,1.0
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edgefer.data.readers import open_dataset
from edgefer.data.synth import generate_synthetic


def _features(root: Path, split: str, standardise: bool) -> tuple[np.ndarray, np.ndarray]:
    ds = open_dataset(root, split)
    feats = []
    for i in range(len(ds)):
        grey = cv2.cvtColor(ds.load(i), cv2.COLOR_RGB2GRAY)
        x = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() / 255.0
        if standardise:
            x = (x - x.mean()) / (x.std() + 1e-6)
        feats.append(x)
    return np.stack(feats), np.asarray(ds.labels)


def _scores(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, float]:
    acc = float((pred == labels).mean())
    recalls = [float((pred[labels == c] == c).mean()) for c in range(n_classes) if (labels == c).any()]
    return acc, float(np.mean(recalls))


def nearest_mean(root: Path, standardise: bool, n_classes: int = 7) -> tuple[float, float]:
    """Accuracy and balanced accuracy of a nearest class-mean-image classifier."""
    x_tr, y_tr = _features(root, "train", standardise)
    x_te, y_te = _features(root, "test", standardise)
    means = np.stack([x_tr[y_tr == c].mean(axis=0) for c in range(n_classes)])
    dist = ((x_te[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    return _scores(dist.argmin(axis=1), y_te, n_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--difficulties", default="0.6,1.0")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| difficulty | always-majority | nearest mean acc / balanced | standardised nearest mean acc / balanced |")
    print("| ---: | ---: | ---: | ---: |")
    for difficulty in (float(d) for d in args.difficulties.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = generate_synthetic(Path(tmp) / "synth", seed=args.seed, difficulty=difficulty)
            y_tr = np.asarray(open_dataset(root, "train").labels)
            y_te = np.asarray(open_dataset(root, "test").labels)
            majority = float((y_te == np.bincount(y_tr).argmax()).mean())
            raw = nearest_mean(root, standardise=False)
            std = nearest_mean(root, standardise=True)
        print(
            f"| {difficulty:.1f} | {majority:.2f} | {raw[0]:.2f} / {raw[1]:.2f} | {std[0]:.2f} / {std[1]:.2f} |",
            flush=True,
        )
    print(f"\nchance (7 classes): {1 / 7:.2f}")


if __name__ == "__main__":
    main()
