"""`heads bench watermark`: does the invisible watermark survive, does it ever appear where it was not put, and what
does it cost.

Marked set: the first frames of `clips` real videos, resized to the app's output size (`side` px long side), marked
and written as the app writes them (H.264 CRF 18); then re-encoded at CRF 28, halved in size (area average), and
both. Each is decoded again and every frame read: the share of frames whose payload checks out. False marks: every
frame of every video under `src`, unmarked, at its own size: frames in which a payload checks out anyway (the target
is none). Cost: milliseconds to mark and to read a frame (medians, one thread), and SSIM of the marked frame's luma
against the unmarked one's.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from tyro.conf import Positional, arg

from base.bench_report import BenchReport
from base.errors import ConfigError
from faces.bench_prepare import pick_clips
from faces.sources import find_sources
from faces.video import VideoWriter, read_frames
from faces.watermark import Watermark, WatermarkConfig


@dataclass(frozen=True)
class WatermarkBenchConfig:
    """Detection after CRF-28 re-encode and after halving, false marks on real clips, ms/frame and SSIM, as JSON."""

    src: Positional[Annotated[Path, arg(metavar="SRC")]]
    """A folder of real videos (e.g. ../shared/media): marked ones are made from it, and all of it is read unmarked."""
    clips: int = 12
    """Videos to mark, spread over the sorted list of videos under SRC."""
    frames: int = 40
    """Frames marked per video."""
    side: int = 512
    """Long side of the marked frames (the app writes 512-720 px)."""
    false_frames: int = 0
    """Frames read per video for false marks (0: every frame)."""
    watermark: WatermarkConfig = WatermarkConfig()
    out: Path = Path("runs/bench/watermark.json")
    """Where to write the JSON results."""

    def __post_init__(self) -> None:
        if self.clips < 1 or self.frames < 1 or self.side < 64 or self.false_frames < 0:
            raise ConfigError("bench watermark needs clips >= 1, frames >= 1, side >= 64 and false_frames >= 0")


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W) grey images (Wang et al. 2004: 11-px Gaussian window, sigma 1.5)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    return float((((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))).mean())


def _resized(frame: np.ndarray, side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    k = side / max(h, w)
    size = (max(2, round(w * k) // 2 * 2), max(2, round(h * k) // 2 * 2))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)


def _write(path: Path, frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """The frames after an H.264 round trip at `crf` (libx264 preset medium for the re-encodes, as a re-uploading
    service would; the app's own veryfast for CRF 18)."""
    with VideoWriter(path, 25, crf=crf, preset="veryfast" if crf == 18 else "medium", threads=1) as writer:
        for frame in frames:
            writer.write(frame)
    return list(read_frames(path, threads=1))


def _share(mark: Watermark, frames: list[np.ndarray]) -> float:
    return float(np.mean([mark.read(f) == mark.config.payload for f in frames]))


def bench_watermark(config: WatermarkBenchConfig) -> dict:
    """Measure, write the JSON to `config.out` and print it."""
    report = BenchReport("watermark", config)
    mark = Watermark(config.watermark)
    shares: dict[str, list[float]] = {"as_written": [], "crf28": [], "half": [], "half_crf28": []}
    embed_s, read_s, similarity = [], [], []
    clips = pick_clips(config.src, config.clips)
    with tempfile.TemporaryDirectory() as tmp:
        for i, clip in enumerate(clips):
            plain = [_resized(f, config.side) for f in read_frames(clip, max_frames=config.frames, threads=1)]
            marked = []
            for frame in plain:
                start = time.perf_counter()
                marked.append(mark.embed(frame))
                embed_s.append(time.perf_counter() - start)
                similarity.append(ssim(*(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (frame, marked[-1]))))
            written = _write(Path(tmp) / f"{i}.mp4", marked, 18)
            for frame in written[:10]:
                start = time.perf_counter()
                mark.read(frame)
                read_s.append(time.perf_counter() - start)
            half = [cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA) for f in written]
            for name, frames in (("as_written", written), ("crf28", _write(Path(tmp) / f"{i}-28.mp4", written, 28)),
                                 ("half", half), ("half_crf28", _write(Path(tmp) / f"{i}-h.mp4", half, 28))):
                shares[name] += [_share(mark, frames)] * len(frames)  # weighted by frames
    false_marks, checked, videos = 0, 0, [s.path for s in find_sources(config.src) if s.kind == "video"]
    for video in videos:
        for frame in read_frames(video, max_frames=config.false_frames or None, threads=1):
            false_marks += mark.read(frame) is not None
            checked += 1
    written = report.write(
        config.out, versions={"opencv": cv2.__version__}, opencv_threads=cv2.getNumThreads(),
        marked={"clips": [str(c) for c in clips], "frames": len(similarity), "side": config.side,
                "detected": {k: round(float(np.mean(v)), 4) for k, v in shares.items()}},
        false_marks={"videos": len(videos), "frames": checked, "marked": false_marks},
        cost={"embed_ms": round(1e3 * float(np.median(embed_s)), 3),
              "read_ms": round(1e3 * float(np.median(read_s)), 3),
              "ssim_mean": round(float(np.mean(similarity)), 4), "ssim_min": round(float(np.min(similarity)), 4)},
    )
    print(json.dumps(written, indent=2))
    return written
