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
import signal
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


def _launch(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; past ``timeout`` kill the group (torchrun and its workers) and fail."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} ... still ran after {timeout} s (a rank hung)\n{out[-2000:]}{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _run(cmd: list[str]) -> None:
    proc = _launch(cmd)
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


NAN_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from torch import nn
    from edgefer.models.registry import register_model

    class PoisonedOnRank1(nn.Module):
        \"\"\"A small network whose output turns NaN in its 2nd training forward pass, on rank 1 only.\"\"\"

        def __init__(self, num_classes):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
            )
            self.calls = 0

        def forward(self, x):
            out = self.net(x)
            if self.training and os.environ.get("RANK") == "1":
                self.calls += 1
                if self.calls == 2:
                    out = out * float("nan")
            return out

    @register_model("ddp_nan_net", description="NaN on rank 1 at step 2", family="baseline")
    def ddp_nan_net(num_classes=7, pretrained=None, dropout=0.0):
        return PoisonedOnRank1(num_classes)

    from edgefer.training import TrainConfig, TrainingError, train

    try:
        train(TrainConfig(**json.loads(sys.argv[1])))
    except TrainingError as exc:
        Path(sys.argv[2], f"rank{os.environ.get('RANK', '0')}.err").write_text(str(exc))
        sys.exit(3)
    """
)


def test_ddp_non_finite_loss_on_one_rank_stops_every_rank(ddp_data, tmp_path):
    """A NaN loss on rank 1 only: both ranks stop at the same step with the same error, neither waits forever.

    Without the agreement between ranks, rank 1 stopped alone and rank 0 waited in the gradient
    all-reduce of the backward pass (or died with a gloo connection error), never with this message.
    """
    script = tmp_path / "nan_script.py"
    script.write_text(NAN_SCRIPT)
    ranks_dir = tmp_path / "ranks"
    ranks_dir.mkdir()
    cfg = dict(
        data=str(ddp_data), model="ddp_nan_net", out=str(tmp_path / "run"), epochs=2, batch_size=16, img_size=32,
        seed=1, workers=0, progress=False, ema_decay=0.0,
    )  # fmt: skip
    proc = _launch([
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), json.dumps(cfg), str(ranks_dir),
    ])  # fmt: skip
    assert proc.returncode != 0
    errors = {r: (ranks_dir / f"rank{r}.err") for r in (0, 1)}
    missing = [r for r, p in errors.items() if not p.exists()]
    assert not missing, f"rank(s) {missing} did not stop with TrainingError:\n{proc.stderr[-3000:]}"
    messages = {r: p.read_text() for r, p in errors.items()}
    for msg in messages.values():
        assert "loss became" in msg and "at epoch 1 step 2;" in msg, messages
    assert "nan on rank 1" in messages[1] and "another rank" in messages[0], messages
    assert not (tmp_path / "run" / "last.pt").exists()  # no epoch was completed
