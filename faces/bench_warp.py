"""`heads bench warp`: milliseconds per frame of the piecewise-affine warp, maps and remap timed separately.

Runs on a procedural face and a noise texture, so it needs neither media nor a face detector.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from base.bench_report import BenchReport
from base.errors import ConfigError
from faces.warp import PICTURE_RESAMPLING, PiecewiseAffineWarp


@dataclass(frozen=True)
class WarpBenchConfig:
    out: Path = Path("runs/bench/warp.json")  # where the JSON result is written
    sizes: tuple[int, ...] = (128, 256)  # square frame sizes to time
    frames: int = 200  # timed target frames per size, after a short warm-up

    def __post_init__(self) -> None:
        if self.frames < 1 or not self.sizes or min(self.sizes) < 16:
            raise ConfigError("bench warp needs frames >= 1 and at least one size of 16 px or more")


def synthetic_face(size: int, mouth: float = 0.0, angle: float = 0.0) -> np.ndarray:
    """A procedural iBUG-68 face filling a size×size crop: `mouth` 0 (closed) to 1 (wide open), `angle` in rad.

    A closed mouth makes the upper and lower inner lips coincide, as real detections of closed mouths do.
    """
    jaw_t = np.linspace(0, np.pi, 17)
    jaw = np.stack([0.5 - 0.3 * np.cos(jaw_t), 0.4 + 0.45 * np.sin(jaw_t) + 0.1 * mouth * np.sin(jaw_t)], 1)
    brow_x = np.linspace(0, 1, 5)
    brow_y = 0.33 - 0.03 * np.sin(np.pi * brow_x)
    brows = [np.stack([0.25 + 0.2 * brow_x, brow_y], 1), np.stack([0.55 + 0.2 * brow_x, brow_y], 1)]
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.4, 0.55, 4)], 1)
    base = np.stack([np.linspace(0.44, 0.56, 5), [0.6, 0.605, 0.61, 0.605, 0.6]], 1)
    eye = np.array([[-1, 0], [-1 / 3, -1], [1 / 3, -1], [1, 0], [1 / 3, 1], [-1 / 3, 1]]) * [0.06, 0.02]
    eyes = [eye + [0.36, 0.42], eye + [0.64, 0.42]]
    outer = _lip_ring(12, 0.1, 0.03, 0.03 + 0.06 * mouth) + [0.5, 0.72]
    inner = _lip_ring(8, 0.07, 0.0, 0.05 * mouth) + [0.5, 0.72]
    points = np.concatenate([jaw, *brows, bridge, base, *eyes, outer, inner]) - 0.5
    c, s = np.cos(angle), np.sin(angle)
    return (points @ np.array([[c, s], [-s, c]]) + 0.5) * (size - 1)


def _lip_ring(count: int, width: float, upper: float, lower: float) -> np.ndarray:
    """Points around a mouth, starting at the image-left corner, along the upper lip, then back below."""
    half = count // 2
    t = np.pi * np.arange(count) / half
    return np.stack([-width * np.cos(t), np.where(t <= np.pi, -upper, lower) * np.abs(np.sin(t))], 1)


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _time_size(size: int, frames: int, rng: np.random.Generator) -> dict[str, float]:
    image = _texture(size, rng)
    start = time.perf_counter()
    warp = PiecewiseAffineWarp(image, synthetic_face(size))
    setup = time.perf_counter() - start
    phases = np.linspace(0, 4 * np.pi, frames + 5)
    targets = [synthetic_face(size, 0.5 + 0.5 * np.sin(p), 0.1 * np.sin(p / 3)) for p in phases]
    maps_s, remap_s = [], []
    for i, target in enumerate(targets):
        t0 = time.perf_counter()
        map_x, map_y, _, _ = warp.maps(target)
        t1 = time.perf_counter()
        cv2.remap(image, map_x, map_y, PICTURE_RESAMPLING, borderMode=cv2.BORDER_REPLICATE)  # as a renderer shows it
        t2 = time.perf_counter()
        if i >= 5:  # warm-up frames are not counted
            maps_s.append(t1 - t0)
            remap_s.append(t2 - t1)
    maps_ms, remap_ms = 1e3 * np.median(maps_s), 1e3 * np.median(remap_s)
    return {
        "setup_ms": round(1e3 * setup, 3),
        "maps_ms": round(float(maps_ms), 3),
        "remap_ms": round(float(remap_ms), 3),
        "total_ms": round(float(maps_ms + remap_ms), 3),
        "triangles": len(warp.triangles),
    }


def bench_warp(config: WarpBenchConfig) -> dict:
    """Time every size, write the JSON to `config.out` and print it; medians over `config.frames` frames."""
    report = BenchReport("warp", config)
    rng = np.random.default_rng(0)
    per_frame = {str(size): _time_size(size, config.frames, rng) for size in config.sizes}
    written = report.write(config.out, versions={"opencv": cv2.__version__}, opencv_threads=cv2.getNumThreads(),
                           per_frame=per_frame)
    print(json.dumps(written, indent=2))
    return written
