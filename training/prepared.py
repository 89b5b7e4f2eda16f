"""Episodes from a folder made by `heads prepare`: the Dataset only reads JPEGs and landmarks, never detects.

Follows the episode interface of training/data.py: `ds[n]` for any n >= 0 is an episode of video `n % num_videos`,
seeded by (seed, n) alone, so a resumed run sees the same batches. An episode is a dict
    frames:    float32 (K+1, 3, R, R) in [-1, 1], RGB; index 0 is the target, 1..K the references
    landmarks: float32 (K+1, 3, R, R) in [-1, 1], landmark images drawn from the stored points at R
    points:    float32 (K+1, 68, 2), landmarks in pixels of the R×R crop
    video:     int64 scalar, the clip's row in the discriminator's W table (its index in this split)
All K+1 frames are distinct frames of one clip, unless the clip has fewer than K+1 frames. `EpisodeMaker` builds
the episode from the stored frames and landmarks; the shard loader (`training/shards.py`) uses it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from faces.landmark_image import draw_landmarks
from faces.layout import flip_points
from training.data import to_tensor


@dataclass(frozen=True)
class Augment:
    """Augmentations applied to a whole episode at once, so the K+1 frames stay views of one video."""

    flip: float = 0.5  # probability of mirroring every frame (landmark indices remapped with flip_points)
    brightness: float = 0.2  # factors drawn from [1 - x, 1 + x]
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.03  # fraction of a full turn of the colour wheel


def _colour_matrix(rng: np.random.Generator, aug: Augment) -> tuple[np.ndarray, np.ndarray]:
    """One random colour jitter as y = x @ m + b on RGB in [0, 1] (brightness, contrast, saturation, hue)."""
    luma = np.array([0.299, 0.587, 0.114])
    b = rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    c = rng.uniform(1 - aug.contrast, 1 + aug.contrast)
    s = rng.uniform(1 - aug.saturation, 1 + aug.saturation)
    angle = rng.uniform(-aug.hue, aug.hue) * 2 * np.pi
    # hue: rotate the chroma plane around the grey axis (Rodrigues' formula about (1, 1, 1)/sqrt(3))
    k = np.ones((3, 3)) / 3
    cross = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3)
    hue = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * k
    sat = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), luma)  # each output channel mixes with grey
    m = (hue @ sat).T * (b * c)  # column-vector form transposed for row vectors
    offset = (1 - c) * b * 0.5  # contrast around mid-grey
    return m.astype(np.float32), np.full(3, offset, np.float32)


class EpisodeMaker:
    """A clip's stored frames and landmarks -> an episode, whichever layout they are read from.

    The frame choice and the augmentation are drawn from one generator seeded by (seed, n), in a fixed order: first
    the rows (`rows`), then the flip and the colour jitter (`episode`). The folder layout (`PreparedEpisodes`) and
    the tar shards (`training.shards.ShardEpisodes`) both go through here, so episode n is the same from either,
    byte for byte, whatever order their readers meet the clips in.
    """

    def __init__(self, k: int, stored: int, resolution: int | None, augment: Augment | None, seed: int):
        self.k, self.stored, self.resolution = k, stored, int(resolution or stored)
        self.augment, self.seed = augment, seed

    def landmarks(self, data) -> dict[str, np.ndarray]:
        """A clip's points (and pupils) from its landmarks.npz (anything indexable by name), rescaled to R."""
        s = self.resolution / self.stored
        arrays = {"points": (data["points"] + 0.5) * s - 0.5}
        if "pupils" in data:
            arrays["pupils"] = (data["pupils"] + 0.5) * s - 0.5
        return arrays

    def rows(self, n: int, count: int) -> tuple[np.random.Generator, np.ndarray]:
        """The generator of episode n, and the K+1 rows it picks among a clip's `count` frames (distinct when the
        clip has enough)."""
        rng = np.random.default_rng((self.seed, n))
        return rng, rng.choice(count, self.k + 1, replace=count < self.k + 1)

    def frame(self, image: np.ndarray | None, what: object) -> np.ndarray:
        """A decoded BGR frame (cv2.imread / cv2.imdecode) -> RGB at R; `what` names it in the error when None."""
        if image is None:
            raise OSError(f"cannot read {what}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.resolution != self.stored:
            interpolation = cv2.INTER_AREA if self.resolution < self.stored else cv2.INTER_CUBIC
            image = cv2.resize(image, (self.resolution, self.resolution), interpolation=interpolation)
        return image

    def episode(self, rng: np.random.Generator, video: int, rows: np.ndarray, frames: np.ndarray,
                arrays: dict[str, np.ndarray]) -> dict:
        """The episode from the chosen frames (K+1, R, R, 3) uint8 and the clip's landmarks at R."""
        points = arrays["points"][rows].astype(np.float64)
        pupils = arrays["pupils"][rows].astype(np.float64) if "pupils" in arrays else None
        if self.augment is not None:
            frames, points, pupils = self._augmented(rng, frames, points, pupils)
        r = self.resolution
        lms = np.stack(
            [draw_landmarks(p, r, None if pupils is None else pupils[i]) for i, p in enumerate(points)]
        )
        return {
            "frames": to_tensor(frames),
            "landmarks": to_tensor(lms),
            "points": torch.from_numpy(points).float(),
            "video": torch.tensor(video, dtype=torch.int64),
        }

    def _augmented(self, rng: np.random.Generator, frames: np.ndarray, points: np.ndarray, pupils):
        aug = self.augment
        assert aug is not None
        if rng.uniform() < aug.flip:
            width = self.resolution
            frames = np.ascontiguousarray(frames[:, :, ::-1])
            points = np.stack([flip_points(p, width) for p in points])
            if pupils is not None:  # (right, left) swap sides in the mirror
                pupils = pupils[:, ::-1].copy()
                pupils[..., 0] = width - 1 - pupils[..., 0]
        m, b = _colour_matrix(rng, aug)
        jittered = frames.reshape(-1, 3).astype(np.float32) / 255.0 @ m + b
        frames = (np.clip(jittered, 0, 1) * 255).round().astype(np.uint8).reshape(frames.shape)
        return frames, points, pupils


def read_manifest(root: Path, split: str | None, min_frames: int) -> list[dict]:
    """The manifest entries of one split (None: all) with at least `min_frames` frames, sorted by clip: the
    clips' order is their video index, the row of the discriminator's W table."""
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run `heads prepare SRC {root}` first")
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    clips = sorted(
        (e for e in entries if (split is None or e["split"] == split) and e["frames"] >= min_frames),
        key=lambda e: e["clip"],
    )
    if not clips:
        raise ValueError(f"{manifest}: no clip in split {split!r} with at least {min_frames} frames")
    return clips


class PreparedEpisodes(torch.utils.data.Dataset):
    """Episodes of K+1 frames from the clips of one split of a prepared folder."""

    def __init__(
        self,
        root: str | Path,
        k: int = 8,
        split: str | None = "train",
        resolution: int | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        min_frames: int = 1,
    ):
        """split: "train", "test" or None for all clips; resolution: R (default: as stored); augment: None for
        none; min_frames: clips with fewer frames (e.g. single photos) are left out."""
        self.root = Path(root)
        self.clips = read_manifest(self.root, split, min_frames)
        self.stored = int(self.clips[0]["resolution"])
        self.maker = EpisodeMaker(k, self.stored, resolution, augment, seed)
        self.resolution = self.maker.resolution
        self.k, self.seed, self.augment = k, seed, augment
        self.num_videos = len(self.clips)
        self._landmarks: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.num_videos

    def _arrays(self, video: int) -> dict[str, np.ndarray]:
        """The clip's landmarks at R, loaded once per worker (a few KB per clip)."""
        if video not in self._landmarks:
            with np.load(self.root / "clips" / self.clips[video]["clip"] / "landmarks.npz") as data:
                self._landmarks[video] = self.maker.landmarks(data)
        return self._landmarks[video]

    def _frame(self, video: int, row: int) -> np.ndarray:
        path = self.root / "clips" / self.clips[video]["clip"] / f"{row:05d}.jpg"
        return self.maker.frame(cv2.imread(str(path), cv2.IMREAD_COLOR), path)

    def points(self, video: int) -> np.ndarray:
        """(F, 68, 2) float64: every frame's landmarks of clip `video`, in pixels at R."""
        return self._arrays(video)["points"].astype(np.float64)

    def read(self, video: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames `rows` of clip `video`, (K, R, R, 3) uint8 RGB, and their (K, 68, 2) landmarks: the frames a
        caller needs, read on demand (a clip held whole at 256 px takes 50 MB)."""
        rows = np.asarray(rows, int)
        return np.stack([self._frame(video, int(row)) for row in rows]), self.points(video)[rows]

    def __getitem__(self, n: int) -> dict:
        video = n % self.num_videos
        arrays = self._arrays(video)
        rng, rows = self.maker.rows(n, len(arrays["points"]))
        frames = np.stack([self._frame(video, int(r)) for r in rows])  # (K+1, R, R, 3) uint8
        return self.maker.episode(rng, video, rows, frames, arrays)
