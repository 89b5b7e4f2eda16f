"""Frames rendered on every core and encoded on a thread of their own: the same frames, in the same order, and an
error on either side still reaches the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from demo.pipeline import _Encoder, _Timings
from demo.renderers import frames_in_parallel
from faces.warp import MultiSourceWarp


def test_frames_in_parallel_keeps_order_and_equals_the_serial_result():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 96, 3), np.uint8)
    points = np.stack(np.meshgrid(np.linspace(30, 66, 9), np.linspace(30, 66, 8)), -1).reshape(-1, 2)[:68]
    warp = MultiSourceWarp([image], points[None])
    targets = [points + rng.normal(0, 1.0, points.shape) for _ in range(6)]
    serial = [warp.image(t) for t in targets]
    parallel = frames_in_parallel(lambda t: warp.image(t), targets)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
    # One photo: the renderer's image is that photo's picture (bicubic; a guide, `warp(t)`, is resampled bilinearly).
    np.testing.assert_array_equal(warp.warps[0].picture(targets[0]), serial[0])
    names = set(frames_in_parallel(lambda _: threading.current_thread().name, list(range(8))))
    assert names  # ran (on the pool's threads where there are cores)


class _Writer:
    def __init__(self, fail_at: int | None = None):
        self.frames: list[int] = []
        self.fail_at = fail_at

    def write(self, image) -> None:
        if len(self.frames) == self.fail_at:
            raise RuntimeError("disk full")
        self.frames.append(int(image))


def test_the_encoder_thread_writes_every_frame_in_order_and_reports_errors():
    writer, timings = _Writer(), _Timings()
    with _Encoder(writer, timings, ahead=3) as encoder:
        for k in range(50):
            encoder.put(k)
        encoder.finish()
    assert writer.frames == list(range(50)) and timings["encode"] >= 0
    with pytest.raises(RuntimeError, match="disk full"), _Encoder(_Writer(fail_at=5), _Timings(), ahead=2) as encoder:
        for k in range(50):
            encoder.put(k)
        encoder.finish()
