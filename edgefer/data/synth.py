"""The synthetic embedded default: procedurally drawn faces in the RAF-DB official layout.

There is no RAF-DB on a fresh machine and a new user must see the whole flow run before they
download anything, so :func:`generate_synthetic` draws a seven-expression face set with OpenCV
and writes it exactly as RAF-DB ships (``basic/EmoLabel/list_patition_label.txt`` and
``basic/Image/aligned/train_00001_aligned.jpg``); the real RAF-DB reader is what loads it.

What makes the set worth training on:

* **Expression geometry.** Each class is a prototype of facial-action parameters (eyebrow
  raise and inner-end tilt, eye opening, mouth curve, opening and width, upper-lip raise, nose
  wrinkle, smile lines), loosely after FACS: Surprise raises brows and opens eyes and mouth,
  Fear adds raised inner brows and a stretched mouth, Disgust lowers brows, narrows the eyes and
  raises one side of the upper lip, Happiness curves the mouth up and squints, Sadness raises
  the inner brows and turns the mouth down, Anger pulls the brows down and together.
* **Intensity and individual variation.** A sample is ``neutral + intensity * (prototype -
  neutral) + noise``: weak expressions drift towards Neutral and towards each other, which is
  what makes real FER hard, so accuracy lands well above chance but clearly below 100%.
* **Nuisances that carry no label.** Head rotation, scale, position, face shape, skin tone, hair,
  background, lighting gradient, brightness/contrast, blur, sensor noise, JPEG, partial occlusion
  (a hand or a bar) and a little label noise. These dominate pixel statistics, so a per-pixel
  mean (nearest class-mean image) classifier stays near chance: the class is in the geometry,
  not in the average image.
* **RAF-DB's class imbalance** (train and test proportions of the real basic set).

Every image is drawn from its own generator seeded by ``(seed, split, index)``, so the output is
byte-identical for a seed whatever the order or parallelism. :func:`render_face` and
:func:`compose_frame` are public so the runtime's tests can draw faces into camera frames.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from edgefer.errors import DatasetError
from edgefer.labels import CLASS_NAMES, NUM_CLASSES
from edgefer.utils.compat import zip_strict

#: RAF-DB basic train / test counts per class, canonical order (Surprise .. Neutral).
RAFDB_TRAIN_COUNTS: tuple[int, ...] = (1290, 281, 717, 4772, 1982, 705, 2524)
RAFDB_TEST_COUNTS: tuple[int, ...] = (329, 74, 160, 1185, 478, 162, 680)

LABEL_FILE = Path("basic") / "EmoLabel" / "list_patition_label.txt"
ALIGNED_DIR = Path("basic") / "Image" / "aligned"
MARKER = "synthetic.json"
#: Bounds of generate_synthetic: a 100000 px side would ask for ~120 GB of memory per image batch.
MAX_IMAGE_SIZE = 1024
MAX_IMAGES = 2_000_000
_FORMAT_VERSION = 1  # bump when the drawing changes: a cached set of another version is not reused

# Expression parameters: brow_raise, brow_tilt (+ = inner ends up), eye_open, mouth_curve
# (+ = corners up), mouth_open, mouth_width, lip_raise (one-sided, disgust), wrinkle, smile_lines.
_PARAM_NAMES = (
    "brow_raise",
    "brow_tilt",
    "eye_open",
    "mouth_curve",
    "mouth_open",
    "mouth_width",
    "lip_raise",
    "wrinkle",
    "smile_lines",
)
_PROTOTYPES = np.array(
    [
        # raise tilt  eye   curve  open  width  lip   wrinkle smile
        [1.00, 0.10, 1.00, 0.00, 0.95, 0.62, 0.00, 0.00, 0.00],  # Surprise
        [0.70, 0.85, 0.95, -0.35, 0.50, 1.15, 0.00, 0.00, 0.00],  # Fear
        [-0.45, -0.30, 0.40, -0.45, 0.12, 0.90, 1.00, 1.00, 0.30],  # Disgust
        [0.10, 0.00, 0.45, 1.00, 0.35, 1.22, 0.00, 0.00, 1.00],  # Happiness
        [0.05, 0.90, 0.50, -0.85, 0.00, 0.88, 0.00, 0.00, 0.00],  # Sadness
        [-0.75, -0.95, 0.75, -0.20, 0.08, 0.80, 0.00, 0.30, 0.00],  # Anger
        [0.00, 0.00, 0.70, 0.00, 0.00, 1.00, 0.00, 0.00, 0.00],  # Neutral
    ],
    dtype=np.float64,
)
_NEUTRAL = _PROTOTYPES[CLASS_NAMES.index("Neutral")]
_PARAM_SD = np.array([0.22, 0.22, 0.14, 0.22, 0.12, 0.10, 0.18, 0.18, 0.20])
_PARAM_LOW = np.array([-1.5, -1.5, 0.15, -1.5, 0.0, 0.5, 0.0, 0.0, 0.0])
_PARAM_HIGH = np.array([1.5, 1.5, 1.2, 1.5, 1.2, 1.5, 1.5, 1.5, 1.5])


@dataclass(frozen=True)
class FaceJitter:
    """Ranges of the label-free variation in one rendered face (override via ``render_face(**kw)``).

    Distances are fractions of the image side; angles are degrees; ``*_prob`` are probabilities.
    """

    intensity: tuple[float, float] = (0.4, 1.0)  #: expression strength, 0 = neutral face
    param_noise: float = 1.0  #: scale of the per-person parameter noise (``_PARAM_SD``)
    rotation: float = 14.0  #: max in-plane head rotation
    scale: tuple[float, float] = (0.82, 1.08)  #: face size relative to the crop
    shift: float = 0.06  #: max centre offset
    aspect: tuple[float, float] = (0.88, 1.12)  #: face width/height variation
    skin_tone: tuple[float, float] = (0.0, 1.0)  #: 0 = lightest .. 1 = darkest skin
    hair_prob: float = 0.8
    background: bool = True  #: textured background (False: flat grey)
    light: float = 0.55  #: max strength of the linear lighting gradient
    brightness: tuple[float, float] = (0.65, 1.2)
    contrast: tuple[float, float] = (0.7, 1.15)
    blur: float = 1.3  #: max Gaussian blur sigma in pixels at 100 px (scaled with size)
    noise: float = 0.045  #: max sensor-noise sigma on the [0, 1] scale
    occlusion_prob: float = 0.22  #: chance of a hand or a bar over part of the face
    glasses_prob: float = 0.08


_DEFAULT_JITTER = FaceJitter()
#: The easiest setting of every nuisance (difficulty 0): full-strength expressions, upright,
#: centred, evenly lit, sharp, unoccluded faces. Still varied in identity, skin tone and hair.
_EASY_JITTER = FaceJitter(
    intensity=(0.9, 1.0),
    param_noise=0.3,
    rotation=3.0,
    scale=(0.95, 1.02),
    shift=0.02,
    aspect=(0.97, 1.03),
    light=0.1,
    brightness=(0.9, 1.05),
    contrast=(0.9, 1.05),
    blur=0.3,
    noise=0.01,
    occlusion_prob=0.0,
    glasses_prob=0.0,
)


#: Difficulty of the default set (``edgefer data synth``, the demo, ``edgefer pipeline``). Measured
#: (benchmarks/learning_probe.md): at 1.0 the expression cues are so faint at 64 px that a
#: MobileNetV3 trained from scratch fits the training images without learning them for several
#: epochs (test accuracy at the class prior after 200 steps with every learning rate, init and
#: activation we tried, while ResNet-18 reached 54 %), so whether the demo learned depended on the
#: seed and the CPU. At 0.6 the same model and recipe reach 59 % after 200 steps.
DEFAULT_DIFFICULTY = 0.6


def jitter_for_difficulty(difficulty: float) -> FaceJitter:
    """Interpolate every numeric nuisance between the easy setting (0) and the default (1).

    Tests use an easy set (0.3) so that a model learns a real signal in seconds on two CPU cores;
    the demo uses :data:`DEFAULT_DIFFICULTY`; 1 is the hardest set.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise DatasetError(f"difficulty must be in [0, 1], got {difficulty}")

    def mix(easy, hard):
        if isinstance(hard, tuple):
            return tuple(mix(e, h) for e, h in zip_strict(easy, hard))
        if isinstance(hard, bool):
            return hard
        return easy + (hard - easy) * difficulty

    return FaceJitter(
        **{f.name: mix(getattr(_EASY_JITTER, f.name), getattr(_DEFAULT_JITTER, f.name)) for f in fields(FaceJitter)}
    )


#: Milder jitter for faces composed into frames (upright faces, as a face detector expects).
FRAME_JITTER = FaceJitter(rotation=8.0, scale=(0.92, 1.02), shift=0.02, occlusion_prob=0.0, blur=0.6, noise=0.02)


def _jitter_from(kwargs: dict) -> FaceJitter:
    base = kwargs.pop("jitter", None) or _DEFAULT_JITTER
    names = {f.name for f in fields(FaceJitter)}
    unknown = set(kwargs) - names
    if unknown:
        raise TypeError(f"unknown jitter option(s) {sorted(unknown)}; known: {sorted(names)}")
    return replace(base, **kwargs)


def expression_params(expression: int, rng: np.random.Generator, jitter: FaceJitter = _DEFAULT_JITTER) -> dict:
    """Facial-action parameters for one face of class ``expression`` (canonical index)."""
    if not 0 <= int(expression) < NUM_CLASSES:
        raise ValueError(f"expression must be 0..{NUM_CLASSES - 1}, got {expression}")
    lo, hi = jitter.intensity
    t = rng.uniform(lo, hi)
    p = _NEUTRAL + t * (_PROTOTYPES[int(expression)] - _NEUTRAL)
    p = p + rng.normal(0.0, 1.0, size=p.shape) * _PARAM_SD * jitter.param_noise
    p = np.clip(p, _PARAM_LOW, _PARAM_HIGH)
    return dict(zip_strict(_PARAM_NAMES, p.tolist()))


# --------------------------------------------------------------------------------------------
# Drawing primitives: masks are drawn with OpenCV (anti-aliased, sub-pixel via ``shift``) and
# blended into a float canvas.

_SHIFT = 4
_ONE = 1 << _SHIFT


def _pts(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _blend(canvas: np.ndarray, mask: np.ndarray, color: Sequence[float], opacity: float = 1.0) -> None:
    """Paint ``color`` into ``canvas`` through ``mask`` (uint8 coverage), only inside its bounding box."""
    import cv2

    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    a = mask[y : y + h, x : x + w, None].astype(np.float32) * (opacity / 255.0)
    roi = canvas[y : y + h, x : x + w]
    roi += a * (np.asarray(color, dtype=np.float32) - roi)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column coordinates (float32, read-only, cached per size)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def _soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blur a mask, only around its bounding box."""
    import cv2

    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return mask
    pad = int(3 * sigma) + 1
    y0, x0 = max(0, y - pad), max(0, x - pad)
    y1, x1 = min(mask.shape[0], y + h + pad), min(mask.shape[1], x + w + pad)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = cv2.GaussianBlur(mask[y0:y1, x0:x1], (0, 0), sigma)
    return out


def _poly_mask(shape: tuple[int, int], polys: list[np.ndarray], closed: bool, thickness: int = 0) -> np.ndarray:
    import cv2

    m = np.zeros(shape, np.uint8)
    pts = [_pts(p) for p in polys]
    if thickness <= 0:
        cv2.fillPoly(m, pts, 255, cv2.LINE_AA, _SHIFT)
    else:
        cv2.polylines(m, pts, closed, 255, thickness, cv2.LINE_AA, _SHIFT)
    return m


class _Face:
    """Maps face coordinates (u across, v down, the face ellipse is u² + v² = 1) to pixels."""

    def __init__(self, cx: float, cy: float, a: float, b: float, angle_deg: float) -> None:
        self.cx, self.cy, self.a, self.b = cx, cy, a, b
        th = np.deg2rad(angle_deg)
        self.c, self.s = float(np.cos(th)), float(np.sin(th))

    def px(self, u: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        x = np.asarray(u, dtype=np.float64) * self.a
        y = np.asarray(v, dtype=np.float64) * self.b
        return np.stack([self.cx + self.c * x - self.s * y, self.cy + self.s * x + self.c * y], axis=-1)

    def uv_grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = _grid(h, w)
        dx, dy = xs - self.cx, ys - self.cy
        u = (self.c * dx + self.s * dy) / self.a
        v = (-self.s * dx + self.c * dy) / self.b
        return u, v


def _ellipse_uv(cu: float, cv: float, ru: float, rv: float, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return cu + ru * np.cos(t), cv + rv * np.sin(t)


def _skin(rng: np.random.Generator, tone: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    light = np.array([0.96, 0.82, 0.72])
    dark = np.array([0.42, 0.28, 0.20])
    t = rng.uniform(*tone) ** 1.3
    return np.clip(light + t * (dark - light) + rng.normal(0, 0.025, 3), 0.05, 1.0)


def _background(h: int, w: int, rng: np.random.Generator, textured: bool) -> np.ndarray:
    import cv2

    if not textured:
        return np.full((h, w, 3), 0.5, np.float32)
    base = rng.uniform(0.1, 0.9) + rng.normal(0, 0.12, 3)
    grid_hw = (rng.integers(2, 6), rng.integers(2, 6), 1)
    coarse = rng.normal(0, rng.uniform(0.03, 0.15), grid_hw) * rng.uniform(0.5, 1.5, 3)
    field = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(np.float32) + field, 0, 1)


def _face_layer(size: int, expression: int, rng: np.random.Generator, jit: FaceJitter) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face on a transparent ``size`` square: (RGB float32 in [0,1], alpha float32)."""

    p = expression_params(expression, rng, jit)
    S = float(size)
    scale = rng.uniform(*jit.scale)
    aspect = rng.uniform(*jit.aspect)
    a = 0.34 * S * scale * np.sqrt(aspect)
    b = 0.45 * S * scale / np.sqrt(aspect)
    cx = S / 2 + rng.uniform(-jit.shift, jit.shift) * S
    cy = S / 2 + rng.uniform(-jit.shift, jit.shift) * S + 0.02 * S
    face = _Face(cx, cy, a, b, rng.uniform(-jit.rotation, jit.rotation))
    shape = (size, size)
    lw = max(1, round(S / 55))  # line width for features

    # Skin with soft shading (darker towards the rim), a neck below, hair on top.
    skin = _skin(rng, jit.skin_tone)
    u, v = face.uv_grid(size, size)
    r2 = u * u + v * v
    edge = 1.5 / min(a, b)
    alpha = np.clip((1.0 - np.sqrt(r2)) / edge, 0, 1)
    neck = (np.abs(u) < 0.42) & (v > 0.6) & (v < 1.6)
    alpha = np.maximum(alpha, neck.astype(np.float32) * 0.98)
    shade = (1.0 - 0.28 * np.clip(r2, 0, 1.2)).astype(np.float32)
    shade = np.where(neck & (r2 > 1), 0.72, shade)
    rgb = shade[..., None] * skin.astype(np.float32)
    if rng.uniform() < jit.hair_prob:
        hair_col = rng.choice(
            [[0.08, 0.06, 0.05], [0.25, 0.15, 0.08], [0.45, 0.3, 0.15], [0.75, 0.62, 0.4], [0.4, 0.4, 0.42]]
        ) * rng.uniform(0.8, 1.1)
        line = rng.uniform(-0.72, -0.5) + 0.08 * np.cos(u * rng.uniform(2, 4))
        hr2 = (u / 1.08) ** 2 + ((v + 0.05) / 1.06) ** 2
        hair = ((v < line) & (hr2 < 1.0)) | ((hr2 < 1.0) & (r2 > 1.0) & (v < 0.1))
        hair_a = hair.astype(np.float32)
        rgb = rgb * (1 - hair_a[..., None]) + hair_a[..., None] * hair_col.astype(np.float32)
        alpha = np.maximum(alpha, hair_a)
    rgb = rgb.astype(np.float32)

    dark = np.clip(skin * rng.uniform(0.15, 0.35), 0, 1)  # brows, lashes
    lip = np.clip(skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.75, 0.95), 0, 1)
    eye_y = -0.12 + rng.normal(0, 0.02)
    eye_dx = 0.38 + rng.normal(0, 0.02)

    # Smile lines / nasolabial folds (happiness, disgust), nose and its wrinkle.
    if p["smile_lines"] > 0.15:
        for sgn in (-1, 1):
            t = np.linspace(0, 1, 8)
            uu = sgn * (0.17 + 0.22 * t + 0.05 * np.sin(t * np.pi))
            vv = 0.22 + 0.32 * t
            m = _poly_mask(shape, [face.px(uu, vv)], False, lw)
            _blend(rgb, m, skin * 0.55, min(1.0, 0.6 * p["smile_lines"]))
    nose = _poly_mask(shape, [face.px(np.array([0.04, 0.07, 0.03]), np.array([-0.05, 0.17, 0.26]))], False, lw)
    _blend(rgb, nose, skin * 0.6, 0.6)
    for sgn in (-1, 1):
        nu, nv = _ellipse_uv(sgn * 0.08, 0.27, 0.045, 0.025, 12)
        _blend(rgb, _poly_mask(shape, [face.px(nu, nv)], True), skin * 0.35, 0.8)
    if p["wrinkle"] > 0.2:
        for k in range(2):
            vv = np.full(5, -0.03 + 0.05 * k)
            m = _poly_mask(shape, [face.px(np.linspace(-0.08, 0.08, 5), vv + 0.01 * np.sin(np.arange(5)))], False, 1)
            _blend(rgb, m, skin * 0.5, min(1.0, 0.7 * p["wrinkle"]))

    # Eyes: almond sclera, iris clipped to it, a dark upper lid; opening = eye_open.
    eye_w = 0.17 * rng.uniform(0.9, 1.1)
    iris_dx = rng.normal(0, 0.03)
    iris_col = rng.choice([[0.15, 0.1, 0.06], [0.3, 0.2, 0.1], [0.2, 0.3, 0.45], [0.25, 0.35, 0.2]])
    for sgn in (-1, 1):  # socket shadows: the eye band reads darker than the cheeks (as on real faces)
        su, sv = _ellipse_uv(sgn * eye_dx, eye_y - 0.05, eye_w * 1.35, 0.13, 24)
        _blend(rgb, _soften(_poly_mask(shape, [face.px(su, sv)], True), S / 40), skin * 0.6, 0.3)
    for sgn in (-1, 1):
        s = np.linspace(-1, 1, 15)
        up = eye_y - 0.11 * p["eye_open"] * (1 - s**2) ** 0.8
        lo = eye_y + 0.055 * p["eye_open"] * (1 - s**2) ** 0.8 + 0.012
        ecx = sgn * eye_dx
        outline = np.concatenate([face.px(ecx + eye_w * s, up), face.px(ecx - eye_w * s, lo[::-1])])
        sclera = _poly_mask(shape, [outline], True)
        _blend(rgb, sclera, np.array([0.93, 0.92, 0.9]))
        iu, iv = _ellipse_uv(ecx + iris_dx, eye_y - 0.02, 0.085, 0.075, 20)
        iris = _poly_mask(shape, [face.px(iu, iv)], True)
        _blend(rgb, np.minimum(iris, sclera), iris_col)
        lid = _poly_mask(shape, [face.px(ecx + eye_w * s * 1.08, up - 0.005)], False, lw + 1)
        _blend(rgb, lid, dark)

    # Brows: raise moves them up, tilt raises (+) or lowers (-) the inner ends; surprise arches.
    brow_thick = max(2, round(S / 26 * rng.uniform(0.8, 1.2)))
    for sgn in (-1, 1):
        s = np.linspace(0, 1, 9)  # 0 = inner end, 1 = outer end
        base = eye_y - 0.2 - 0.1 * p["brow_raise"]
        vv = base - 0.09 * p["brow_tilt"] * (1 - s) - 0.05 * max(p["brow_raise"], 0) * np.sin(s * np.pi)
        vv = vv - 0.03 * np.sin(s * np.pi)
        uu = sgn * (0.1 + 0.1 * max(-p["brow_tilt"], 0) * 0.3 + 0.42 * s)
        m = _poly_mask(shape, [face.px(uu, vv)], False, brow_thick)
        _blend(rgb, m, dark, 0.95)

    # Mouth: a curve (smile/frown) that opens into a dark interior, optional teeth.
    width = 0.34 * p["mouth_width"]
    s = np.linspace(-1, 1, 21)
    mid = 0.55 - 0.12 * p["mouth_curve"] * (s**2 - 0.35)
    bulge = (1 - s**2) ** 0.7
    open_ = p["mouth_open"]
    side = rng.choice([-1.0, 1.0])
    lip_up = 0.09 * p["lip_raise"] * np.clip(side * s, 0, 1) ** 1.5
    upper = mid - 0.08 * open_ * bulge - lip_up
    lower = mid + 0.16 * open_ * bulge
    uu = width * s
    if open_ > 0.08:
        outline = np.concatenate([face.px(uu, upper), face.px(uu[::-1], lower[::-1])])
        _blend(rgb, _poly_mask(shape, [outline], True), np.array([0.25, 0.06, 0.07]))
        if p["mouth_curve"] > 0.3 or p["lip_raise"] > 0.5 or rng.uniform() < 0.3:
            teeth_low = upper + 0.045 * open_
            teeth = np.concatenate([face.px(uu * 0.8, upper + 0.005), face.px(uu[::-1] * 0.8, teeth_low[::-1])])
            _blend(rgb, _poly_mask(shape, [teeth], True), np.array([0.92, 0.9, 0.85]), 0.9)
        lips = _poly_mask(shape, [face.px(uu, upper), face.px(uu, lower)], False, lw + 1)
    else:
        lips = _poly_mask(shape, [face.px(uu, mid - lip_up)], False, lw + 1)
    _blend(rgb, lips, lip)

    if rng.uniform() < jit.glasses_prob:
        gcol = rng.uniform(0, 0.3, 3)
        for sgn in (-1, 1):
            gu, gv = _ellipse_uv(sgn * eye_dx, eye_y, eye_w * 1.5, 0.13, 24)
            _blend(rgb, _poly_mask(shape, [face.px(gu, gv)], True, lw), gcol)
        bridge = _poly_mask(
            shape,
            [face.px(np.array([-eye_dx + eye_w * 1.5, eye_dx - eye_w * 1.5]), np.array([eye_y, eye_y]))],
            False,
            lw,
        )
        _blend(rgb, bridge, gcol)
    return rgb, alpha


def _occlude(canvas: np.ndarray, size: int, rng: np.random.Generator) -> None:
    """A hand (skin-coloured blob with finger lines) or a bar over part of the face."""
    S = float(size)
    cx, cy = rng.uniform(0.2, 0.8) * S, rng.uniform(0.3, 0.9) * S
    if rng.uniform() < 0.6:
        face = _Face(cx, cy, rng.uniform(0.14, 0.24) * S, rng.uniform(0.1, 0.18) * S, rng.uniform(-60, 60))
        hu, hv = _ellipse_uv(0, 0, 1, 1, 28)
        col = _skin(rng)
        _blend(canvas, _poly_mask((size, size), [face.px(hu, hv)], True), col)
        for k in (-0.4, 0.0, 0.4):
            line = face.px(np.array([-0.9, 0.3]), np.array([k, k]))
            _blend(canvas, _poly_mask((size, size), [line], False, 1), col * 0.6)
    else:
        w, h = rng.uniform(0.25, 0.7) * S, rng.uniform(0.08, 0.2) * S
        face = _Face(cx, cy, w / 2, h / 2, rng.uniform(-30, 30))
        rect = face.px(np.array([-1, 1, 1, -1]), np.array([-1, -1, 1, 1]))
        _blend(canvas, _poly_mask((size, size), [rect], True), rng.uniform(0, 1, 3))


def _finish(img: np.ndarray, rng: np.random.Generator, jit: FaceJitter, size: int) -> np.ndarray:
    """Lighting gradient, brightness/contrast, blur and noise; returns uint8."""
    import cv2

    h, w = img.shape[:2]
    phi = rng.uniform(0, 2 * np.pi)
    g = rng.uniform(0, jit.light)
    ys, xs = _grid(h, w)
    ramp = ((xs - w / 2) * np.cos(phi) + (ys - h / 2) * np.sin(phi)) / max(h, w)
    img = img * (1.0 + g * ramp)[..., None]
    mean = img.mean()
    img = (img - mean) * rng.uniform(*jit.contrast) + mean
    img = img * rng.uniform(*jit.brightness)
    sigma = rng.uniform(0, jit.blur) * size / 100.0
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(0, jit.noise), img.shape).astype(np.float32)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_face(expression: int, size: int, rng: np.random.Generator, **jitter) -> np.ndarray:
    """One face crop of class ``expression`` (canonical index): ``size`` x ``size`` x 3 uint8 RGB.

    ``jitter`` overrides fields of :class:`FaceJitter` (e.g. ``rotation=0, occlusion_prob=0``) or
    passes a whole ``jitter=FaceJitter(...)``. Deterministic for the generator's state.
    """
    if size < 24:
        raise ValueError(f"size must be >= 24 pixels, got {size}")
    jit = _jitter_from(dict(jitter))
    bg = _background(size, size, rng, jit.background)
    rgb, alpha = _face_layer(size, expression, rng, jit)
    img = bg * (1 - alpha[..., None]) + rgb * alpha[..., None]
    if rng.uniform() < jit.occlusion_prob:
        _occlude(img, size, rng)
    return _finish(img, rng, jit, size)


def compose_frame(
    expressions: Sequence[int],
    frame_hw: tuple[int, int] = (480, 640),
    rng: np.random.Generator | None = None,
    face_size_range: tuple[int, int] = (90, 160),
    jitter: FaceJitter = FRAME_JITTER,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A camera-like BGR frame with one face per entry of ``expressions``, non-overlapping.

    Returns ``(frame, boxes)`` with ``boxes[i] = (x, y, w, h)`` the square crop of face ``i``
    (the face fills it as in an aligned RAF-DB image). Faces are pasted with their alpha, so the
    frame background shows around them. Raises ``ValueError`` when the faces do not fit.
    """
    import cv2

    rng = rng if rng is not None else np.random.default_rng(0)
    fh, fw = frame_hw
    frame = _background(fh, fw, rng, True)
    boxes: list[tuple[int, int, int, int]] = []
    for expr in expressions:
        for _ in range(200):
            size = int(rng.integers(face_size_range[0], face_size_range[1] + 1))
            if size > min(fh, fw):
                raise ValueError(f"face size {size} does not fit a {fh}x{fw} frame")
            x, y = int(rng.integers(0, fw - size + 1)), int(rng.integers(0, fh - size + 1))
            if all(x + size <= bx or bx + bw <= x or y + size <= by or by + bh <= y for bx, by, bw, bh in boxes):
                break
        else:
            raise ValueError(f"cannot place {len(expressions)} non-overlapping faces in a {fh}x{fw} frame")
        rgb, alpha = _face_layer(size, int(expr), rng, jitter)
        region = frame[y : y + size, x : x + size]
        region[:] = region * (1 - alpha[..., None]) + rgb * alpha[..., None]
        boxes.append((x, y, size, size))
    out = _finish(frame, rng, replace(jitter, blur=min(jitter.blur, 0.8)), 100)
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR), boxes


# --------------------------------------------------------------------------------------------
# The dataset writer.


def class_counts(n: int, proportions: Sequence[int]) -> list[int]:
    """Split ``n`` into per-class counts following ``proportions`` (largest remainder).

    Every class gets at least one sample when ``n >= NUM_CLASSES`` so no split misses a class.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    p = np.asarray(proportions, dtype=np.float64)
    exact = n * p / p.sum()
    counts = np.floor(exact).astype(int)
    floor_min = 1 if n >= len(p) else 0
    counts = np.maximum(counts, floor_min)
    while counts.sum() > n:  # only possible after the minimum bump: take from the largest
        counts[int(np.argmax(counts))] -= 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while counts.sum() < n:
        counts[order[i % len(order)]] += 1
        i += 1
    return counts.tolist()


@dataclass(frozen=True)
class SynthSpec:
    """Parameters of a synthetic set, stored in ``synthetic.json`` beside ``basic/``."""

    n_train: int
    n_test: int
    image_size: int
    seed: int
    label_noise: float
    version: int = _FORMAT_VERSION
    difficulty: float = 1.0


def _split_labels(n: int, counts: Sequence[int], seed: int, split_id: int) -> np.ndarray:
    labels = np.repeat(np.arange(NUM_CLASSES), class_counts(n, counts))
    np.random.default_rng([seed, split_id, 999_999_999]).shuffle(labels)
    return labels


def _render_sample(spec: SynthSpec, split_id: int, index: int, expression: int) -> tuple[bytes, int]:
    """JPEG bytes and recorded (possibly noisy) label of one sample; pure function of its inputs."""
    import cv2

    rng = np.random.default_rng([spec.seed, split_id, index])
    img = render_face(expression, spec.image_size, rng, jitter=jitter_for_difficulty(spec.difficulty))
    label = expression
    if rng.uniform() < spec.label_noise:
        label = int((expression + rng.integers(1, NUM_CLASSES)) % NUM_CLASSES)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
        raise DatasetError("JPEG encoding failed")
    return buf.tobytes(), label


def _existing_spec(out: Path) -> SynthSpec | None:
    try:
        return SynthSpec(**json.loads((out / MARKER).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def generate_synthetic(
    out: str | os.PathLike,
    n_train: int = 3000,
    n_test: int = 750,
    image_size: int = 100,
    seed: int = 0,
    label_noise: float = 0.03,
    progress: bool = False,
    overwrite: bool = False,
    difficulty: float = DEFAULT_DIFFICULTY,
) -> Path:
    """Write a synthetic face-expression set in the RAF-DB official layout under ``out``.

    ``difficulty`` (0..1) scales expression subtlety and every nuisance (pose, light, blur, noise,
    occlusion); the default :data:`DEFAULT_DIFFICULTY` is the set the demo uses, 1 the hardest.

    Creates ``out/basic/EmoLabel/list_patition_label.txt`` (``train_00001.jpg 4``, labels 1..7
    in canonical order) and ``out/basic/Image/aligned/train_00001_aligned.jpg`` (``image_size``
    square JPEGs), plus ``out/synthetic.json`` with the parameters. Class counts follow RAF-DB's
    train/test proportions. If ``out`` already holds a set made with the same parameters it is
    reused; a different synthetic set is replaced only with ``overwrite=True``, and a ``basic/``
    this function did not write (no ``synthetic.json``: perhaps the real RAF-DB) never.
    Files are written to a temporary folder and renamed into place, so an interrupted run
    leaves no half-written dataset. Returns ``out`` as a :class:`Path`.
    """
    from edgefer.utils.io import ensure_writable_dir
    from edgefer.utils.outputs import staging_dir

    if n_train < NUM_CLASSES or n_test < NUM_CLASSES:
        raise DatasetError(
            f"n_train and n_test must be >= {NUM_CLASSES} (one image per class), got {n_train} and {n_test}"
        )
    if not 32 <= image_size <= MAX_IMAGE_SIZE:
        raise DatasetError(
            f"image_size must be in 32..{MAX_IMAGE_SIZE} px, got {image_size} (RAF-DB aligned is 100; "
            "larger faces only cost memory and disk)"
        )
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    if n_train + n_test > MAX_IMAGES:
        raise DatasetError(f"n_train + n_test must be <= {MAX_IMAGES:,}, got {n_train + n_test:,}")
    if not 0.0 <= label_noise < 1.0:
        raise DatasetError(f"label_noise must be in [0, 1), got {label_noise}")
    jitter_for_difficulty(difficulty)  # validates the range
    spec = SynthSpec(
        int(n_train), int(n_test), int(image_size), int(seed), float(label_noise), difficulty=float(difficulty)
    )
    out = ensure_writable_dir(out)
    basic = out / "basic"
    if basic.exists():
        existing = _existing_spec(out)
        if existing == spec and (out / LABEL_FILE).is_file():
            return out
        if existing is None:  # not made by this function: maybe a real RAF-DB; never replaced
            raise DatasetError(
                f"{basic} exists and was not written by edgefer data synth (no {MARKER}); "
                "refusing to replace it: choose another --out"
            )
        if not overwrite:
            raise DatasetError(
                f"{basic} already holds a different synthetic set; pass overwrite=True (CLI: --overwrite) to replace it"
            )
    with staging_dir(out, "synth") as stage:  # removed whatever happens; a killed run's is removed next time
        _write_set(spec, out, basic, stage / "basic", progress)
    return out


def _write_set(spec: SynthSpec, out: Path, basic: Path, tmp: Path, progress: bool) -> None:
    """Render every image into ``tmp`` and swap it in for ``basic``; the marker is written last."""
    from edgefer.utils.io import write_json

    n_train, n_test, seed = spec.n_train, spec.n_test, spec.seed
    img_dir = tmp / "Image" / "aligned"
    img_dir.mkdir(parents=True)
    jobs = [("train", 0, i, int(y)) for i, y in enumerate(_split_labels(n_train, RAFDB_TRAIN_COUNTS, seed, 0))]
    jobs += [("test", 1, i, int(y)) for i, y in enumerate(_split_labels(n_test, RAFDB_TEST_COUNTS, seed, 1))]
    lines: list[str] = []
    try:
        with _progress(progress, len(jobs)) as advance:
            for split, split_id, i, expr in jobs:
                data, label = _render_sample(spec, split_id, i, expr)
                name = f"{split}_{i + 1:05d}"
                (img_dir / f"{name}_aligned.jpg").write_bytes(data)
                lines.append(f"{name}.jpg {label + 1}\n")
                advance()
        (tmp / "EmoLabel").mkdir()
        (tmp / "EmoLabel" / LABEL_FILE.name).write_text("".join(lines))
        (out / MARKER).unlink(missing_ok=True)
        if basic.exists():
            shutil.rmtree(basic)
        os.replace(tmp, basic)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json(out / MARKER, asdict(spec))


class _progress:
    """A rich progress bar, or nothing when ``enabled`` is false (tests)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.__enter__()
        task = self._bar.add_task("drawing faces", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
