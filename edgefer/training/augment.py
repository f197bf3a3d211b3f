"""Train-time augmentation for aligned face crops, and the eval transform.

The eval transform is :func:`edgefer.preprocess.preprocess_image` itself, wrapped into a tensor,
so validation during training sees exactly what the exported model, the benchmark and the runtime
see. The train transform perturbs the *pixels* (numpy + OpenCV) and then hands the result to the
same ``preprocess_image``, so it ends with the same resize policy, colour order and mean/std.

What suits faces (and what the FER papers use): a random resized crop with a *mild* scale
(0.8-1.0; aggressive crops cut away the mouth or the eyes that carry the expression), horizontal
flip (expressions are left-right symmetric), a small rotation (+-10 deg, residual alignment error),
brightness/contrast/saturation jitter, and random erasing (simulates occlusion by hands, glasses;
Zhong et al., AAAI 2020), applied last on the normalised tensor like torchvision does.

Every random draw comes from a ``numpy.random.Generator`` the caller passes in; the training loop
derives it from (seed, epoch, sample index), so augmentation is identical after ``--resume``, with
any number of data-loader workers and with any number of DDP processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edgefer.preprocess import Preprocessing, preprocess_image, to_three_channels


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation (0 disables the corresponding step)."""

    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    hflip: float = 0.5
    rotation: float = 10.0
    color_jitter: float = 0.2
    random_erasing: float = 0.25


def _center_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def random_resized_crop(
    img: np.ndarray, rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> np.ndarray:
    """A crop covering ``scale`` of the area with aspect ``ratio`` (log-uniform), like torchvision.

    Falls back to the whole image when no valid box is found in 10 tries.
    """
    h, w = img.shape[:2]
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return img[top : top + ch, left : left + cw]
    return img


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre, reflecting the border (no black corners for the model to learn)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def color_jitter(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast and saturation factors in [1-s, 1+s], in random order (uint8 in/out)."""
    x = img.astype(np.float32)
    for op in rng.permutation(3):
        f = float(rng.uniform(1.0 - strength, 1.0 + strength))
        if op == 0:  # brightness
            x = x * f
        elif op == 1:  # contrast: blend with the mean grey level
            grey = float((x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
            x = (x - grey) * f + grey
        else:  # saturation: blend with the per-pixel grey image
            grey_img = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
            x = (x - grey_img) * f + grey_img
        x = np.clip(x, 0.0, 255.0)
    return x.round().astype(np.uint8)


def random_erase(
    x: np.ndarray,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.2),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> np.ndarray:
    """Zero one random rectangle of a normalised CxHxW array (0 = the dataset mean colour)."""
    _, h, w = x.shape
    for _ in range(10):
        target = h * w * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            x[:, top : top + eh, left : left + ew] = 0.0
            return x
    return x


class TrainAugment:
    """RGB uint8 face image -> augmented, normalised CxHxW float32 (numpy) for ``pp``."""

    def __init__(self, pp: Preprocessing, cfg: AugmentConfig | None = None) -> None:
        self.pp = pp
        self.cfg = cfg or AugmentConfig()
        # The augmented crop is already square at input size: preprocess_image only normalises.
        self._final = Preprocessing.from_dict({**pp.to_dict(), "resize": "stretch"})

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, pp = self.cfg, self.pp
        img = to_three_channels(image, "RGB")
        if pp.resize == "center_crop":
            img = _center_square(img)
        if c.crop_scale != (1.0, 1.0):
            img = random_resized_crop(img, rng, c.crop_scale, c.crop_ratio)
        img = cv2.resize(np.ascontiguousarray(img), (pp.input_size, pp.input_size), interpolation=cv2.INTER_LINEAR)
        if c.hflip > 0 and rng.random() < c.hflip:
            img = img[:, ::-1]
        if c.rotation > 0:
            img = rotate(np.ascontiguousarray(img), float(rng.uniform(-c.rotation, c.rotation)))
        if c.color_jitter > 0:
            img = color_jitter(img, rng, c.color_jitter)
        x = preprocess_image(np.ascontiguousarray(img), self._final, "RGB")
        if c.random_erasing > 0 and rng.random() < c.random_erasing:
            x = random_erase(x, rng)
        return x


class EvalTransform:
    """The eval transform: exactly :func:`edgefer.preprocess.preprocess_image` (no randomness)."""

    def __init__(self, pp: Preprocessing) -> None:
        self.pp = pp

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return preprocess_image(image, self.pp, "RGB")
