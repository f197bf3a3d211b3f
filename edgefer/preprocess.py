"""The one source of preprocessing truth (docs/architecture.md invariant 1).

A :class:`Preprocessing` is recorded in every checkpoint and artifact at export time and read
back by the benchmark and the runtime; nobody downstream of training hard-codes an input size
or ImageNet means. :func:`preprocess_batch` is *the* function from pixels to the model's input
tensor: the training eval transform, the reference predictions, the benchmark and the runtime
all call it, so they cannot drift apart. It is numpy + OpenCV only (no torch).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from edgefer.errors import EdgeferError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Largest model input side accepted (metadata asking for more is damaged, not a model).
MAX_INPUT_SIZE = 4096
_INTERPOLATIONS = ("linear", "area", "cubic", "nearest")
_RESIZE_POLICIES = ("stretch", "center_crop")
#: Channel orders a model may expect: three colour channels in either order, or one grey channel.
COLOR_ORDERS = ("RGB", "BGR", "GRAY")
#: Tensor layouts: channels first (PyTorch's habit) or channels last (Keras/TensorFlow's).
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become the model input.

    Attributes:
        input_size: side of the square model input (H = W).
        mean, std: normalisation on the [0, 1] scale, ``(x / 255 - mean) / std``: one value per
            channel in ``color_order``, or one value for every channel.
        color_order: what the model's channels are: "RGB", "BGR", or "GRAY" (one channel, the
            luma of the image as OpenCV computes it).
        resize: "stretch" resizes the whole (already face-cropped) image to the square;
            "center_crop" resizes the short side then takes the centre square.
        interpolation: OpenCV interpolation used when resizing.
        layout: tensor layout, "NCHW" (edgefer's own models) or "NHWC" (Keras/TensorFlow exports).

    Records written before GRAY, NHWC and one-value mean/std existed hold three values and NCHW,
    so they read back unchanged.
    """

    input_size: int = 112
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    color_order: str = "RGB"
    resize: str = "stretch"
    interpolation: str = "linear"
    layout: str = field(default="NCHW")

    def __post_init__(self) -> None:
        if not isinstance(self.input_size, numbers.Integral) or isinstance(self.input_size, bool):
            raise EdgeferError(f"input_size must be an integer, not {self.input_size!r}")
        if not 16 <= self.input_size <= MAX_INPUT_SIZE:
            raise EdgeferError(f"input_size {self.input_size} is outside 16..{MAX_INPUT_SIZE}")
        if self.color_order not in COLOR_ORDERS:
            raise EdgeferError(f"color_order must be one of {', '.join(COLOR_ORDERS)}, not {self.color_order!r}")
        if self.layout not in LAYOUTS:
            raise EdgeferError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.resize not in _RESIZE_POLICIES:
            raise EdgeferError(f"resize must be one of {_RESIZE_POLICIES}, not {self.resize!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise EdgeferError(f"interpolation must be one of {_INTERPOLATIONS}")
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                want = "1 value" if self.channels == 1 else f"1 or {self.channels} values"
                raise EdgeferError(f"{what} needs {want} for a {self.color_order} model, got {len(values)}")
        if not min(self.std) > 0:
            raise EdgeferError("std must be > 0")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise EdgeferError("mean and std must be finite numbers")

    @property
    def channels(self) -> int:
        """Channels of the model input: 1 for GRAY, else 3."""
        return 1 if self.color_order == "GRAY" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed image: (C, H, W) for NCHW, (H, W, C) for NHWC."""
        c, s = self.channels, self.input_size
        return (c, s, s) if self.layout == "NCHW" else (s, s, c)

    def batch_shape(self, n: int) -> tuple[int, int, int, int]:
        """Shape of a batch of ``n`` preprocessed images, in the model's layout."""
        return (int(n), *self.input_shape)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key in ("mean", "std"):
            if isinstance(known.get(key), numbers.Real):  # one value for every channel
                known[key] = (known[key],)
            if key in known:
                known[key] = tuple(float(v) for v in known[key])
        if "input_size" in known:
            known["input_size"] = int(known["input_size"])
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls.from_dict(json.loads(text))

    def with_size(self, input_size: int) -> Preprocessing:
        d = self.to_dict()
        d["input_size"] = int(input_size)
        return Preprocessing.from_dict(d)


def _cv2_interp(name: str) -> int:
    import cv2

    return {
        "linear": cv2.INTER_LINEAR,
        "area": cv2.INTER_AREA,
        "cubic": cv2.INTER_CUBIC,
        "nearest": cv2.INTER_NEAREST,
    }[name]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """The one rule that turns pixels of any depth into uint8, used by every path.

    Data readers (training, evaluation, benchmark), the torch dataset and the runtime all go
    through this function, so the same file gives the same input everywhere. Integers are scaled
    by their *dtype's* range, never by the image's own maximum: uint16 ``v -> round(v / 257)``
    (65535 -> 255, 257 -> 1), other integer types ``v * 255 / dtype max`` (negatives clipped to 0).
    Booleans are 0/255. Floats in [0, 1] are scaled by 255; other floats are taken as 0..255 and
    clipped.
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        top = float(np.iinfo(arr.dtype).max)
        return np.rint(np.clip(arr.astype(np.float64), 0.0, top) * (255.0 / top)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not np.isfinite(arr).all():
            arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise EdgeferError(f"unsupported image dtype {arr.dtype}")


def to_three_channels(image: np.ndarray, color: str = "RGB") -> np.ndarray:
    """Return an HxWx3 uint8 image in ``color`` order from grey, 3- or 4-channel input.

    ``color`` names the channel order of the *input* when it has 3 or 4 channels; other depths
    than uint8 are converted by :func:`to_uint8`. Raises :class:`EdgeferError` for arrays that
    are not images (None, empty, wrong rank).
    """
    import cv2

    if image is None:
        raise EdgeferError("image is None")
    image = np.asarray(image)
    if image.size == 0:
        raise EdgeferError("image is empty")
    image = to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3:
        raise EdgeferError(f"image must be HxW or HxWxC, got shape {image.shape}")
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if channels == 3:
        return image
    raise EdgeferError(f"image must have 1, 3 or 4 channels, got {channels}")


def preprocess_image(image: np.ndarray, pp: Preprocessing, input_color: str = "RGB") -> np.ndarray:
    """One image (HxW, HxWx3 or HxWx4 uint8, channels in ``input_color``) -> float32 of
    ``pp.input_shape`` (CxHxW, or HxWxC for NHWC; C = 1 for a GRAY model)."""
    import cv2

    img = to_three_channels(image, input_color)
    if pp.color_order == "GRAY":
        code = cv2.COLOR_RGB2GRAY if input_color == "RGB" else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(np.ascontiguousarray(img), code)[:, :, None]
    elif input_color != pp.color_order:
        img = img[:, :, ::-1]
    size = pp.input_size
    interp = _cv2_interp(pp.interpolation)
    if pp.resize == "center_crop":
        h, w = img.shape[:2]
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        img = _resize(img, (nw, nh), interp)
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[top : top + size, left : left + size]
    elif img.shape[0] != size or img.shape[1] != size:
        img = _resize(img, (size, size), interp)
    x = img.astype(np.float32) * (1.0 / 255.0)
    x -= np.asarray(pp.mean, dtype=np.float32)
    x /= np.asarray(pp.std, dtype=np.float32)
    if pp.layout == "NHWC":
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _resize(img: np.ndarray, wh: tuple[int, int], interp: int) -> np.ndarray:
    """``cv2.resize`` that keeps a one-channel HxWx1 image three-dimensional (OpenCV drops the axis)."""
    import cv2

    out = cv2.resize(np.ascontiguousarray(img), wh, interpolation=interp)
    return out[:, :, None] if out.ndim == 2 else out


def preprocess_batch(images: Sequence[np.ndarray], pp: Preprocessing, input_color: str = "RGB") -> np.ndarray:
    """A list of images -> a float32 batch of ``pp.batch_shape(len(images))`` (NCHW or NHWC; see
    :func:`preprocess_image`)."""
    if len(images) == 0:
        return np.zeros(pp.batch_shape(0), dtype=np.float32)
    return np.stack([preprocess_image(im, pp, input_color) for im in images])
