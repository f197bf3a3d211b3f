"""Does a model leave the class prior within its first steps? An in-memory probe of early learning.

Trains a registry model for ``steps`` optimiser steps on a synthetic set held in memory (no
augmentation, one thread, AdamW with the trainer's parameter groups and a linear warm-up), then
scores the test split three ways: eval mode, batch statistics, and eval mode after recomputing the
BatchNorm statistics with the weights frozen ("precise BN"). Used to find why the demo's
msff_mobilenetv3 sat at the prior (benchmarks/learning_probe.md):

    .venv/bin/python -c "from edgefer.data.synth import generate_synthetic as g; g('/tmp/s10', difficulty=1.0)"
    DATA=/tmp/s10 .venv/bin/python benchmarks/learning_probe.py "base,lr=0.001" "zerobn,lr=0.001,zero_bn=True"
    DATA=/tmp/s10 MODEL=msff_resnet18 .venv/bin/python benchmarks/learning_probe.py "r18,lr=0.001"

Each argument is ``name,key=value,...`` with keys of :func:`run` (lr, wd, steps, bs, seed, ls,
zero_bn, warm, noact, nose, stem1).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgefer.data.readers import open_dataset
from edgefer.models import create_model
from edgefer.preprocess import Preprocessing, preprocess_image
from edgefer.training.optim import param_groups

torch.set_num_threads(1)
DATA = os.environ.get("DATA", "runs/synthetic")
MODEL = os.environ.get("MODEL", "msff_mobilenetv3")
SIZE = int(os.environ.get("SIZE", "64"))


def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = open_dataset(DATA, split=split)
    pp = Preprocessing(input_size=SIZE)
    x = np.stack([preprocess_image(ds.load(i), pp) for i in range(len(ds))])
    return torch.from_numpy(x), torch.from_numpy(ds.labels)


def zero_init_last_bn(m: nn.Module) -> None:
    """Zero the last BatchNorm's scale of every MobileNetV3 residual block (Goyal et al. 2017)."""
    from torchvision.models.mobilenetv3 import InvertedResidual

    for mod in m.modules():
        if isinstance(mod, InvertedResidual) and mod.use_res_connect:
            bn = [x for x in mod.block[-1].modules() if isinstance(x, nn.BatchNorm2d)][-1]
            nn.init.zeros_(bn.weight)


def plainify(m: nn.Module, act: bool = True, se: bool = True) -> None:
    """Hard-swish -> ReLU and/or squeeze-excitation -> identity (MobileNetV3 'minimalistic')."""
    from torchvision.ops.misc import SqueezeExcitation

    for mod in list(m.modules()):
        for cn, child in list(mod.named_children()):
            if act and isinstance(child, nn.Hardswish):
                setattr(mod, cn, nn.ReLU(inplace=True))
            if se and isinstance(child, SqueezeExcitation):
                setattr(mod, cn, nn.Identity())


def run(
    name: str,
    xtr,
    ytr,
    xte,
    yte,
    lr=3e-3,
    wd=0.05,
    steps=200,
    bs=32,
    seed=0,
    ls=0.1,
    zero_bn=False,
    warm=47,
    noact=False,
    nose=False,
    stem1=False,
) -> None:
    torch.manual_seed(seed)
    m = create_model(MODEL, num_classes=7)
    if zero_bn:
        zero_init_last_bn(m)
    if noact or nose:
        plainify(m, act=noact, se=nose)
    if stem1:
        m.trunk.stage8[0][0].stride = (1, 1)
    opt = torch.optim.AdamW(param_groups(m, wd), lr=lr)
    g = torch.Generator().manual_seed(seed)
    m.train()
    losses, accs = [], []
    t = time.time()
    for s in range(steps):
        for pg in opt.param_groups:
            pg["lr"] = lr * (min(1.0, 0.01 + (s + 1) / warm) if warm else 1.0)
        idx = torch.randint(0, len(ytr), (bs,), generator=g)
        out = m(xtr[idx])
        loss = F.cross_entropy(out, ytr[idx], label_smoothing=ls)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
        accs.append((out.argmax(1) == ytr[idx]).float().mean().item())

    def score(train_mode: bool = False) -> tuple[float, float]:
        m.train(train_mode)
        with torch.no_grad():
            pred = torch.cat([m(xte[i : i + 250]).argmax(1) for i in range(0, len(yte), 250)])
        per_class = [(pred[yte == c] == c).float().mean().item() for c in range(7) if (yte == c).any()]
        return (pred == yte).float().mean().item(), float(np.mean(per_class))

    acc, mc = score()
    batch_acc, _ = score(True)
    for mod in m.modules():  # precise BN: recompute the statistics with frozen weights
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    m.train()
    with torch.no_grad():
        for _ in range(20):
            m(xtr[torch.randint(0, len(ytr), (64,), generator=g)])
    p_acc, p_mc = score()
    print(
        f"{name:40s} loss first/last 50 {np.mean(losses[:50]):.3f}/{np.mean(losses[-50:]):.3f} "
        f"train acc {np.mean(accs[-50:]):.3f} test {acc:.3f} (mean-class {mc:.3f}) batch-stat {batch_acc:.3f} "
        f"precise-BN {p_acc:.3f}/{p_mc:.3f} {time.time() - t:.0f}s",
        flush=True,
    )


def _value(key: str, v: str):
    if v in ("True", "False"):
        return v == "True"
    return float(v) if ("." in v or "e-" in v) else int(v)


def main() -> None:
    xtr, ytr = load("train")
    xte, yte = load("test")
    for spec in sys.argv[1:]:
        name, *pairs = spec.split(",")
        kw = {k: _value(k, v) for k, v in (p.split("=") for p in pairs)}
        run(f"{MODEL} {name} {kw}", xtr, ytr, xte, yte, **kw)


if __name__ == "__main__":
    main()
