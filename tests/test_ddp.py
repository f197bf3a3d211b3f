"""DDP: the training entry point under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Global-batch semantics: 2 processes with batch 16 (8 per rank) must reach the same weights as
one process with batch 16. That holds exactly (up to float summation order) for a network without
BatchNorm, whose per-rank batch statistics would otherwise differ, and with dropout off; data
order and augmentation are functions of (seed, epoch, sample), whatever the world size. The
BatchNorm-free network is registered inside the launched scripts only, not in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from torch import nn
    from edgefer.models.registry import register_model

    @register_model("ddp_test_net", description="BatchNorm-free test network", family="baseline")
    def ddp_test_net(num_classes=7, pretrained=None, dropout=0.0):
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(16, num_classes),
        )

    from edgefer.training import TrainConfig, train

    cfg = TrainConfig(**json.loads(sys.argv[1]))
    result = train(cfg)
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as fh:
        json.dump({k: v for k, v in result.metrics.items() if k != "val_report"}, fh)
    """
)


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgefer.data.synth import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("ddp") / "rafdb", n_train=64, n_test=21, image_size=40)


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_ddp_two_processes_match_single_process_global_batch(ddp_data, tmp_path):
    from edgefer.training.checkpoint import load_checkpoint

    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    common = dict(
        data=str(ddp_data), model="ddp_test_net", epochs=2, batch_size=16, img_size=32, lr=3e-3, seed=1,
        workers=0, progress=False, ema_decay=0.9, grad_clip=1.0, dropout=0.0,
    )  # fmt: skip
    single_dir, ddp_dir, ranks_dir = tmp_path / "single", tmp_path / "ddp", tmp_path / "ranks"
    ranks_dir.mkdir()
    (tmp_path / "single_ranks").mkdir()
    _run([sys.executable, str(script), json.dumps({**common, "out": str(single_dir)}), str(tmp_path / "single_ranks")])
    _run([
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), json.dumps({**common, "out": str(ddp_dir)}), str(ranks_dir),
    ])  # fmt: skip

    a = load_checkpoint(single_dir / "last.pt")
    b = load_checkpoint(ddp_dir / "last.pt")
    assert b["extra"]["world_size"] == 2 and a["extra"]["world_size"] == 1
    assert a["extra"]["global_step"] == b["extra"]["global_step"] == 2 * (64 // 16)
    for key in ("state_dict", "ema_state_dict"):
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, rtol=1e-4, atol=1e-5, msg=f"{key}.{name}")

    # Validation metrics are reduced over ranks: every rank reports the single-process numbers.
    single = json.loads((tmp_path / "single_ranks" / "rank0.json").read_text())
    per_rank = [json.loads((ranks_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert per_rank[0] == per_rank[1]
    assert per_rank[0]["val_acc"] == pytest.approx(single["val_acc"])
    assert per_rank[0]["train_loss"] == pytest.approx(single["train_loss"], rel=1e-4)
    # Only rank 0 writes: one metrics.csv with one row per epoch, no stray temporary files.
    assert len((ddp_dir / "metrics.csv").read_text().strip().splitlines()) == 1 + 2
    assert not list(ddp_dir.glob(".*tmp"))
