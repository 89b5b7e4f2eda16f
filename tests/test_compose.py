"""demo.compose.Canvas: faces go back into the whole photo, pixel-aligned squares by slices, others by resampling."""

from __future__ import annotations

import numpy as np
import pytest

from demo.compose import Canvas
from faces.crop import CropTransform


@pytest.mark.parametrize("offset", [(10.0, 20.0), (-30.0, 5.0), (40.0, -25.0)])
def test_aligned_paste_matches_the_resampling_paste(offset):
    """A work square at one pixel per canvas pixel goes back by slices and one blend: the same image as the general
    (resampling) paste up to one level of rounding, also where the square leaves the canvas."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    canvas = Canvas(image, CropTransform(1.0, offset, 80), np.zeros((68, 2)))
    face = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    fast, slow = canvas.paste(face), canvas.transform.paste(face, image)
    assert fast.shape == image.shape and np.abs(fast.astype(int) - slow).max() <= 1
    np.testing.assert_array_equal(canvas.paste(canvas.face()[0]), image)  # its own pixels: the photo unchanged


def test_a_model_face_is_resized_into_its_square():
    image = np.zeros((200, 300, 3), np.uint8)
    canvas = Canvas(image, CropTransform(0.5, (100.0, 50.0), 64), np.zeros((68, 2)))
    out = canvas.paste(np.full((64, 64, 3), 200, np.uint8))
    assert out[100, 164].tolist() == [200, 200, 200] and out[10, 10].tolist() == [0, 0, 0]
