"""edgefer.preprocess: the one pixel -> tensor function (shape, dtype, values, colour order)."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.errors import EdgeferError
from edgefer.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    preprocess_batch,
    preprocess_image,
    to_three_channels,
)


def _rgb(h: int = 20, w: int = 30) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 200  # red
    img[..., 1] = 100
    img[..., 2] = 20
    return img


def test_shape_dtype_and_normalisation_values() -> None:
    pp = Preprocessing(input_size=32)
    x = preprocess_image(_rgb(), pp)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    for c, v in enumerate((200, 100, 20)):
        expected = (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert np.allclose(x[c], expected, atol=1e-5)
    plain = Preprocessing(input_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    y = preprocess_image(np.full((16, 16, 3), 255, np.uint8), plain)
    assert np.allclose(y, 1.0)


def test_colour_order_bgr_model_and_bgr_input() -> None:
    unit = dict(input_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    rgb = _rgb(16, 16)
    as_rgb = preprocess_image(rgb, Preprocessing(**unit))
    as_bgr = preprocess_image(rgb, Preprocessing(color_order="BGR", **unit))
    assert np.allclose(as_bgr[0], 20 / 255) and np.allclose(as_bgr[2], 200 / 255)
    assert np.allclose(as_rgb, as_bgr[::-1])
    # an OpenCV (BGR) frame fed to an RGB model is flipped to RGB
    from_bgr = preprocess_image(rgb[..., ::-1].copy(), Preprocessing(**unit), input_color="BGR")
    assert np.allclose(from_bgr, as_rgb)


def test_grey_and_four_channel_inputs() -> None:
    pp = Preprocessing(input_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    grey = np.full((10, 10), 51, np.uint8)
    for img in (grey, grey[..., None]):
        x = preprocess_image(img, pp)
        assert x.shape == (3, 16, 16) and np.allclose(x, 0.2)
    rgba = np.dstack([_rgb(16, 16), np.full((16, 16), 7, np.uint8)])
    assert np.allclose(preprocess_image(rgba, pp), preprocess_image(_rgb(16, 16), pp))
    assert to_three_channels(np.ones((4, 4), np.float32) * 0.5).dtype == np.uint8


@pytest.mark.parametrize(
    "bad", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((2, 2, 2, 3), np.uint8)]
)
def test_bad_inputs_raise_clear_errors(bad) -> None:
    with pytest.raises(EdgeferError):
        preprocess_image(bad, Preprocessing(input_size=16))


def test_center_crop_and_batches() -> None:
    pp = Preprocessing(input_size=16, resize="center_crop", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # the centre third is white
    x = preprocess_image(wide, pp)
    assert x.shape == (3, 16, 16) and x[:, :, 4:12].min() > 0.9
    batch = preprocess_batch([_rgb(), _rgb(8, 8)], pp)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == np.float32
    assert preprocess_batch([], pp).shape == (0, 3, 16, 16)


def test_preprocessing_validates_and_round_trips() -> None:
    pp = Preprocessing(input_size=100, color_order="BGR", resize="center_crop", interpolation="area")
    assert Preprocessing.from_json(pp.to_json()) == pp
    assert pp.with_size(64).input_size == 64 and pp.with_size(64).color_order == "BGR"
    for kwargs in (
        dict(input_size=8),
        dict(color_order="RGBA"),
        dict(resize="pad"),
        dict(interpolation="x"),
        dict(std=(1.0, 0.0, 1.0)),
    ):
        with pytest.raises(EdgeferError):
            Preprocessing(**kwargs)
