"""Foreign-looking FER models for the bring-your-own-model tests, built here with torch (no download).

:func:`fit_linear` fits a ridge least-squares linear classifier on average-pooled preprocessed
training images in closed form (no training loop: well above chance on the synthetic set in
milliseconds). :func:`foreign_model` exports it as a plain ``torch.onnx.export`` ONNX the way
models made outside edgefer look: any class order (FER2013's, AffectNet's 8 with a Contempt row
that never wins), a Keras-style input (NHWC, one grey channel) or NCHW RGB, a final Softmax or not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefer.labels import CLASS_NAMES, canonical_name
from edgefer.preprocess import Preprocessing

FER2013_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
AFFECTNET_ORDER = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
POOL = 4


def features(x: np.ndarray, pp: Preprocessing) -> np.ndarray:
    """Preprocessed batch (``pp``'s layout) -> (N, C*h*w) features: NCHW, average-pooled by POOL."""
    if pp.layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    n, c, s, _ = x.shape
    return x.reshape(n, c, s // POOL, POOL, s // POOL, POOL).mean((3, 5)).reshape(n, -1)


def fit_linear(data: Path, pp: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares on one-hot canonical labels: ``(W (7, F), b (7,))`` in RAF-DB order."""
    from edgefer.data import open_dataset
    from edgefer.preprocess import preprocess_batch

    ds = open_dataset(data, "train")
    a = features(preprocess_batch([ds[i].image for i in range(len(ds))], pp), pp)
    a1 = np.c_[a, np.ones(len(a))]
    y = np.eye(len(CLASS_NAMES))[np.asarray(ds.labels)]
    w = np.linalg.solve(a1.T @ a1 + np.eye(a1.shape[1]), a1.T @ y)
    return w[:-1].T.astype(np.float32), w[-1].astype(np.float32)


def foreign_model(
    fit: tuple[np.ndarray, np.ndarray],
    order: tuple[str, ...],
    pp: Preprocessing,
    softmax: bool,
    path: Path,
    dynamic: bool = True,
) -> Path:
    """Export the fitted classifier with outputs in ``order`` (an unknown-to-the-data class such as
    contempt gets a row that never wins) as a plain ``torch.onnx.export`` ONNX at ``path``; a batch
    of 1 when not ``dynamic`` (what many tf2onnx exports have)."""
    import torch
    from torch import nn

    w, b = fit
    rows, bias = [], []
    for name in order:
        key = canonical_name(name)
        if key in CLASS_NAMES:
            rows.append(w[CLASS_NAMES.index(key)])
            bias.append(float(b[CLASS_NAMES.index(key)]))
        else:
            rows.append(np.zeros_like(w[0]))
            bias.append(-100.0)
    lin = nn.Linear(w.shape[1], len(order))
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.stack(rows)))
        lin.bias.copy_(torch.tensor(bias))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AvgPool2d(POOL)
            self.head = lin

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if pp.layout == "NHWC":
                x = x.permute(0, 3, 1, 2)
            y = self.head(torch.flatten(self.pool(x), 1)) * 10.0
            return torch.softmax(y, dim=1) if softmax else y

    names = ("input_1", "dense_1") if pp.layout == "NHWC" else ("image", "scores")
    torch.onnx.export(
        Net().eval(),
        torch.zeros((1, *pp.input_shape)),
        str(path),
        input_names=[names[0]],
        output_names=[names[1]],
        dynamic_axes={names[0]: {0: "N"}, names[1]: {0: "N"}} if dynamic else None,
        opset_version=17,
        dynamo=False,
    )
    return path


def accuracy_by(
    fit: tuple[np.ndarray, np.ndarray], data: Path, pp: Preprocessing, order: tuple[str, ...]
) -> tuple[float, float]:
    """Test-split accuracy of the classifier scored by name, and scored as if ``order``'s positions
    were RAF-DB's (what a by-position evaluation would report)."""
    from edgefer.data import open_dataset
    from edgefer.preprocess import preprocess_batch

    ds = open_dataset(data, "test")
    labels = np.asarray(ds.labels)
    logits = features(preprocess_batch([ds[i].image for i in range(len(ds))], pp), pp) @ fit[0].T + fit[1]
    by_name = float((logits.argmax(1) == labels).mean())
    model_order = [CLASS_NAMES.index(canonical_name(n)) for n in order if canonical_name(n) in CLASS_NAMES]
    # model output j is class model_order[j]; by position it would be read as RAF-DB's class j
    by_position = float((logits[:, model_order].argmax(1) == labels).mean())
    return by_name, by_position
