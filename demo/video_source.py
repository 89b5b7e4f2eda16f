"""Video-to-video: a video of the person as the source. Each output frame is the source frame at the same time with
its face warped onto targets that keep that frame's own head pose and add the driver's expression
(`faces.motion.retarget_video`); the rest of the frame (background, body, the head's own motion) is the source's.

`SourceVideoRenderer` stands where a photo's renderer stands in `Pipeline._render`: it takes the targets batch by
batch and returns whole output frames, decoding the source alongside, so that encoding, the watermark, the identity
score and the synthetic tag are those of every other animation. A `PiecewiseAffineWarp` is built for every frame (the
triangulation and the fade around the head are that frame's own); the frame's work square is cut, warped and pasted
back as a photo's is (`Canvas.native`), so only the square around the face is resampled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from demo.compose import Canvas, shrink
from demo.renderers import frames_in_parallel
from faces.source_faces import Crops
from faces.video import VideoError, VideoReader
from faces.warp import PiecewiseAffineWarp

FADE_SECONDS = 0.3  # after a driving clip shorter than the source ends, its last expression eases out over this


def source_frames(reader: VideoReader, max_side: int, count: int) -> Iterator[np.ndarray]:
    """The first `count` frames of a source video as the output shows them: shrunk to `max_side` on the long side.
    Both passes read it so, so that the landmarks tracked in the first are in the pixels the second warps."""
    for _, frame in reader.sample(max_frames=count):
        yield shrink(frame, max_side)[0]


def at_times(track: np.ndarray, fps: float, to_fps: float, count: int) -> np.ndarray:
    """A (T, 68, 2) landmark track at `fps` sampled at the times of `count` frames at `to_fps` (linearly between its
    frames), as far as it reaches: the driver's expression at each source frame's time, whatever either's rate."""
    position = np.arange(count) * fps / to_fps
    position = position[position <= len(track) - 1 + 1e-6]
    below = np.minimum(np.floor(position).astype(int), len(track) - 1)
    above = np.minimum(below + 1, len(track) - 1)
    share = (position - below)[:, None, None]
    return (1.0 - share) * track[below] + share * track[above]


def warp_frame(frame: np.ndarray, points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """One source frame (H, W, 3) with its face, at (68, 2) `points`, warped onto (68, 2) `target` (frame pixels):
    its work square warped as a photo's is, and pasted back; the rest of the frame is untouched."""
    canvas = Canvas.native(frame, points, max(frame.shape[:2]))  # at the frame's own size: nothing is shrunk here
    square, own = canvas.face()
    face = PiecewiseAffineWarp(square, own).picture(canvas.transform.to_crop(target))
    return canvas.paste(face)


class SourceVideoRenderer:
    """Renders video-to-video in `Pipeline._render`: `render` takes the next batch of (B, 68, 2) targets and returns
    the next B source frames, each warped onto its target, as (B, H, W, 3) whole frames. Single pass, in order, as
    `_render` calls it; a context manager, which closes the source video."""

    name = "warp"
    moves_irises = False  # each frame's eyes look where the source's look

    def __init__(self, path: Path, points: np.ndarray, max_side: int):
        """`points` (S, 68, 2): the source's own track, in pixels of the frames shrunk to `max_side`."""
        self.points = np.asarray(points, np.float64)
        self._reader = VideoReader(path)
        try:
            self._frames = source_frames(self._reader, max_side, len(self.points))
            first = next(self._frames, None)
            if first is None:
                raise VideoError(f"{path}: the video stream holds no decodable frame.")
        except BaseException:
            self._reader.close()
            raise
        self._pending = [first]
        self._done = 0
        self.sources = Crops(first[None], self.points[:1])  # the face the identity score compares with
        self.resolution = max(first.shape[:2])  # the side-by-side view draws the landmarks on a square this size

    def _next(self) -> np.ndarray:
        frame = self._pending.pop() if self._pending else next(self._frames, None)
        if frame is None:
            raise VideoError(f"{self._reader.path}: the video ended after {self._done} frames on a second reading.")
        return frame

    def render(self, targets: np.ndarray) -> np.ndarray:
        frames = [self._next() for _ in targets]
        points = self.points[self._done : self._done + len(targets)]
        self._done += len(targets)
        return np.stack(frames_in_parallel(warp_frame, frames, list(points), list(targets)))

    def __enter__(self) -> SourceVideoRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()
