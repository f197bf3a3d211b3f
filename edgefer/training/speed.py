"""Training throughput (images/s) of the registered models: what ``benchmarks/training.md`` reports.

One measurement = full optimiser steps (forward, cross-entropy, backward, AdamW step) on random
tensors of the requested size, after warm-up steps, so it isolates the network's cost from the
data pipeline (whose cost per image is reported separately by :func:`augment_ms_per_image`)::

    OMP_NUM_THREADS=2 python -m edgefer.training.speed --img-size 112 --batch-size 16 --iters 3
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Throughput:
    model: str
    img_size: int
    batch_size: int
    images_per_s: float
    step_s: float


def train_throughput(
    name: str, img_size: int = 112, batch_size: int = 16, iters: int = 3, warmup: int = 1, device: str = "cpu"
) -> Throughput:
    """Images/s of training ``name`` (median step time over ``iters`` steps after ``warmup``)."""
    from edgefer.models import create_model

    torch.manual_seed(0)
    model = create_model(name).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    y = torch.randint(0, 7, (batch_size,), device=device)
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    return Throughput(name, img_size, batch_size, batch_size / step, step)


def augment_ms_per_image(img_size: int = 112, source_size: int = 100, n: int = 200) -> float:
    """Milliseconds per image of the train augmentation (decode excluded)."""
    from edgefer.preprocess import Preprocessing
    from edgefer.training.augment import TrainAugment

    aug = TrainAugment(Preprocessing(input_size=img_size))
    img = np.random.default_rng(0).integers(0, 256, (source_size, source_size, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    for i in range(n):
        aug(img, np.random.default_rng([0, 0, i]))
    return (time.perf_counter() - t0) * 1000 / n


def main(argv: list[str] | None = None) -> None:
    from edgefer.models import list_models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--img-size", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--models", default="", help="comma-separated (default: all registered)")
    args = p.parse_args(argv)
    names = [m for m in args.models.split(",") if m] or list_models()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.img_size}x{args.img_size}, median of {args.iters} steps after 1 warm-up")  # fmt: skip
    print("| model | train images/s | s/step |")
    print("| --- | ---: | ---: |")
    for name in names:
        r = train_throughput(name, args.img_size, args.batch_size, args.iters)
        print(f"| {name} | {r.images_per_s:.1f} | {r.step_s:.2f} |", flush=True)
    print(f"\naugmentation: {augment_ms_per_image(args.img_size):.2f} ms/image")


if __name__ == "__main__":
    main()
