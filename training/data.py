"""Episodes for meta-learning, and a synthetic source of them that needs no files.

The episode interface every dataset follows: `ds[n]` for any n >= 0 is episode number n of video `n % num_videos`;
its frame choice and augmentation are seeded by n alone, so a run that resumes at step s sees the same batches
as one that never stopped. An episode is a dict
    frames:    float32 (K+1, 3, R, R) in [-1, 1], RGB; index 0 is the target, 1..K the references
    landmarks: float32 (K+1, 3, R, R) in [-1, 1], the landmark images of those frames
    points:    float32 (K+1, 68, 2), the landmarks in pixels of the R×R crop
    video:     int64 scalar, the row of the discriminator's W table
and, for warp-guided models (added by `WarpGuided`),
    guide:     float32 (4, R, R), the reference nearest to the target warped onto its landmarks, plus the mask
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import Sampler

from faces.guide import inner_mouth, refine_region, warp_guide
from faces.landmark_image import draw_landmarks


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


class EpisodeSampler(Sampler[int]):
    """Endless, resumable stream of episode numbers for one process of a (possibly distributed) run.

    Step s, item b of rank r gets episode number n = (s·world + r)·batch + b, mapped to a video through a fresh
    permutation per pass over the videos, so every video is seen equally often.
    """

    def __init__(self, num_videos: int, batch: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1):
        self.num_videos, self.batch, self.seed = num_videos, batch, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self._epoch, self._perm = -1, np.empty(0, np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        """The videos in the order of pass `epoch` over them. The latest is kept: at VoxCeleb2's million clips one
        permutation takes tens of milliseconds, and every episode of a step asks for it."""
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng((self.seed, epoch)).permutation(self.num_videos)
        return self._perm

    def episode(self, n: int) -> int:
        """The dataset index of global episode number n: video perm[n mod V] of pass n // V, numbered so that the
        dataset's seed (seed, index) differs for every episode."""
        epoch, pos = divmod(n, self.num_videos)
        return int(self.permutation(epoch)[pos]) + self.num_videos * n

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = (step * self.world + self.rank) * self.batch
            yield from (self.episode(first + b) for b in range(self.batch))
            step += 1


def _cartoon_template() -> np.ndarray:
    """A plausible frontal 68-point face in a unit box centred at the origin (x right, y down)."""
    t = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)
    jaw = np.stack([0.42 * np.cos(t), 0.05 + 0.45 * np.sin(t)], 1)
    brow = np.stack([np.linspace(-0.36, -0.08, 5), -0.22 - 0.05 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brows = np.concatenate([brow, brow[::-1] * [-1, 1]])
    bridge = np.stack([np.zeros(4), np.linspace(-0.15, 0.05, 4)], 1)
    base = np.stack([np.linspace(-0.08, 0.08, 5), 0.1 + 0.02 * np.abs(np.linspace(-1, 1, 5))], 1)
    a = np.linspace(0, 2 * np.pi, 7)[:-1]
    eye = np.stack([-0.2 - 0.07 * np.cos(a), -0.1 - 0.03 * np.sin(a)], 1)  # outer corner first, upper lid next
    eyes = np.concatenate([eye, eye[[3, 2, 1, 0, 5, 4]] * [-1, 1]])
    a = np.linspace(np.pi, -np.pi, 13)[:-1]
    outer = np.stack([0.16 * np.cos(a), 0.26 - 0.05 * np.sin(a)], 1)
    a = np.linspace(np.pi, -np.pi, 9)[:-1]
    inner = np.stack([0.11 * np.cos(a), 0.26 - 0.015 * np.sin(a)], 1)
    return np.concatenate([jaw, brows, bridge, base, eyes, outer, inner])


class SyntheticEpisodes(torch.utils.data.Dataset):
    """Cartoon faces drawn in code: each video is an identity (skin, hair, face shape, background) that moves,
    blinks and talks. For tests and smoke runs of the trainer; no files, no downloads."""

    def __init__(self, num_videos: int, resolution: int, k: int, seed: int = 0):
        self.num_videos, self.resolution, self.k, self.seed = num_videos, resolution, k, seed
        self.template = _cartoon_template()

    def __len__(self) -> int:
        return self.num_videos

    def _identity(self, video: int) -> dict:
        rng = np.random.default_rng((self.seed, video))
        return {
            "skin": rng.uniform(60, 240, 3),
            "hair": rng.uniform(0, 120, 3),
            "bg": rng.uniform(0, 255, 3),
            "shape": np.array([rng.uniform(0.85, 1.15), rng.uniform(0.9, 1.1)]),
        }

    def _points(self, ident: dict, rng: np.random.Generator) -> np.ndarray:
        pts = self.template * ident["shape"]
        mouth = rng.uniform(0, 0.08)  # jaw drop opens the lower lip and inner mouth
        lower = np.r_[np.arange(55, 60), np.arange(65, 68), 48 + np.array([6])]
        pts[lower, 1] += mouth
        pts[61:64, 1] -= mouth * 0.2
        blink = rng.uniform(0, 1) < 0.2
        if blink:
            for eye in (slice(36, 42), slice(42, 48)):
                pts[eye, 1] = pts[eye, 1].mean()
        angle = rng.normal(0, 0.12)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        scale = self.resolution * rng.uniform(0.6, 0.75)
        centre = self.resolution * (0.5 + rng.normal(0, 0.03, 2))
        return pts @ rot.T * scale + centre

    def _draw(self, ident: dict, pts: np.ndarray) -> np.ndarray:
        r = self.resolution
        img = np.empty((r, r, 3), np.uint8)
        img[:] = ident["bg"]
        ip = lambda p: np.round(p * 16).astype(np.int32)  # noqa: E731 (fixed-point for cv2's shift=4)
        head = np.concatenate([pts[:17], pts[26:16:-1] + [0, -0.08 * r]])
        cv2.fillPoly(img, [ip(head)], ident["hair"].tolist(), cv2.LINE_AA, 4)
        cv2.fillPoly(img, [ip(np.concatenate([pts[:17], pts[26:16:-1]]))], ident["skin"].tolist(), cv2.LINE_AA, 4)
        for eye in (slice(36, 42), slice(42, 48)):
            cv2.fillPoly(img, [ip(pts[eye])], (250, 250, 250), cv2.LINE_AA, 4)
        cv2.fillPoly(img, [ip(pts[48:60])], (150, 40, 50), cv2.LINE_AA, 4)
        cv2.fillPoly(img, [ip(pts[60:68])], (40, 10, 10), cv2.LINE_AA, 4)
        for brow in (slice(17, 22), slice(22, 27)):
            cv2.polylines(img, [ip(pts[brow])], False, ident["hair"].tolist(), max(1, r // 48), cv2.LINE_AA, 4)
        return img

    def __getitem__(self, n: int) -> dict:
        video = n % self.num_videos
        rng = np.random.default_rng((self.seed, n))
        ident = self._identity(video)
        points = [self._points(ident, rng) for _ in range(self.k + 1)]
        frames = np.stack([self._draw(ident, p) for p in points])
        lms = np.stack([draw_landmarks(p, self.resolution) for p in points])
        return {
            "frames": to_tensor(frames),
            "landmarks": to_tensor(lms),
            "points": torch.from_numpy(np.stack(points)).float(),
            "video": torch.tensor(video),
        }


class WarpGuided(torch.utils.data.Dataset):
    """Adds the warp guide to another dataset's episodes, in the loader's workers rather than the training step."""

    def __init__(self, episodes: torch.utils.data.Dataset):
        self.episodes = episodes
        self.num_videos, self.resolution, self.k = episodes.num_videos, episodes.resolution, episodes.k

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, n: int) -> dict:
        return with_guide(self.episodes[n])


class WarpGuidedStream(torch.utils.data.IterableDataset):
    """`WarpGuided` for a stream of episodes (`training.shards.ShardEpisodes`): the guide added as they pass."""

    def __init__(self, episodes: torch.utils.data.IterableDataset):
        self.episodes = episodes
        self.num_videos, self.resolution, self.k = episodes.num_videos, episodes.resolution, episodes.k

    def at(self, step: int, rank: int = 0, world: int = 1, batch: int = 1) -> WarpGuidedStream:
        return WarpGuidedStream(self.episodes.at(step, rank, world, batch))

    def check_workers(self, slots: int) -> None:
        self.episodes.check_workers(slots)

    def __iter__(self) -> Iterator[dict]:
        return map(with_guide, self.episodes)


def with_guide(episode: dict) -> dict:
    """The episode with the reference nearest to its target warped onto the target's landmarks (`guide`, 4 channels
    with the mask), the target's inner mouth (`mouth`) and the region a refining G may change (`region`)."""
    points = episode["points"].double().numpy()
    guide = warp_guide(to_uint8(episode["frames"][1:]), points[1:], points[0])
    region = torch.from_numpy(refine_region(points[0], guide.shape[:2]))[None]
    mouth = torch.from_numpy(inner_mouth(points[0], guide.shape[:2]).astype(np.float32))[None]
    return {**episode, "guide": torch.from_numpy(guide).permute(2, 0, 1), "mouth": mouth,
            "region": region}

