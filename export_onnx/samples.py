"""Inputs for parity checks, int8 calibration and fidelity: random ones, synthetic faces that look real to G, or
frames of real clips prepared by `heads prepare`.

Landmark images are mostly black with thin coloured strokes, nothing like uniform noise; calibrating or checking on
noise alone would miss the activation ranges that real driving frames produce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import ModelConfig
from training.data import SyntheticEpisodes, WarpGuided
from training.prepared import PreparedEpisodes


def realistic(cfg: ModelConfig, count: int, seed: int = 0, prepared: Path | None = None) -> dict[str, np.ndarray]:
    """`count` real-looking faces: float32 (count, C, R, R) in [-1, 1] as frames, landmarks and (for warp-guided
    models) guide. Synthetic faces, each a different identity and pose; or, with `prepared` (a folder made by
    `heads prepare`), frames of its clips spread over them, the guide warped from another frame of the same clip."""
    if prepared is None:
        episodes = SyntheticEpisodes(count, cfg.resolution, k=1, seed=seed)
        picks = range(count)
    else:
        episodes = PreparedEpisodes(prepared, k=1, split=None, resolution=cfg.resolution, seed=seed)
        clips = len(episodes)  # one frame of each of `count` clips spread over all, or of every clip in turn
        picks = [n * clips // count for n in range(count)] if count <= clips else range(count)
    source = WarpGuided(episodes) if cfg.guided else episodes
    items = [source[n] for n in picks]
    out = {key: np.stack([item[key][0].numpy() for item in items]) for key in ("frames", "landmarks")}
    if cfg.guided:
        out["guide"] = np.stack([item["guide"].numpy() for item in items]).astype(np.float32)
    return out


def noise(cfg: ModelConfig, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform [-1, 1] images and a non-negative ê (E ends in a ReLU), for parity away from the data."""
    rng = np.random.default_rng(seed)
    side = cfg.resolution
    out = {key: rng.uniform(-1, 1, (count, 3, side, side)).astype(np.float32) for key in ("frames", "landmarks")}
    if cfg.guided:
        out["guide"] = rng.uniform(-1, 1, (count, 4, side, side)).astype(np.float32)
    out["embedding"] = rng.uniform(0, 1, (count, cfg.embed_dim)).astype(np.float32)
    return out
