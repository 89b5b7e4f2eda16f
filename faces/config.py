"""Configs of the face pipeline and of `heads prepare` / `heads bench prepare`.

Importable without torch, OpenCV or dlib, so that the CLI parses options before anything heavy loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Literal

from tyro.conf import Positional, arg

from base.errors import ConfigError

Backend = Literal["dlib", "face-alignment", "mediapipe"]
MAX_SHOTS = 32
"""The most source images of one person (T: photos, or frames of a clip) anything here takes: the paper's largest
T. The one limit behind `heads finetune`, `heads evaluate`, the app's photo count and `personalize`."""


@dataclass(frozen=True)
class DetectorConfig:
    backend: Backend = "dlib"
    # Images are shrunk so that their long side is at most this before detection (HOG time grows with area).
    max_side: int = 640
    # Smaller images are enlarged to this long side, so that faces reach the HOG's 80 px window.
    min_side: int = 200
    # When nothing is found, search once more at twice the size (small or distant faces).
    upsample_retry: bool = True
    # Faces whose detection score is below this are ignored (dlib HOG: ~0 weak, >1 a clear frontal face).
    min_score: float = 0.0
    # Torch device for the face-alignment backend.
    device: str = "cpu"


@dataclass(frozen=True)
class TrackConfig:
    # Run the detector every N frames and track landmarks in between; 1 detects on every frame.
    detect_every: int = 10
    # A second face at least this fraction of the main face's area makes a detection ambiguous; while a face is
    # followed, re-detections look only for faces this large (on a smaller image with dlib: faster).
    second_face_ratio: float = 0.5
    # Re-detect at once when a tracked face changes size by more than this fraction from one frame to the next.
    max_size_change: float = 0.25


@dataclass(frozen=True)
class SmoothingConfig:
    # Turn landmark smoothing off to store the detector's raw points.
    enabled: bool = True
    # One-Euro cut-off at rest (Hz): lower removes more jitter from still faces.
    min_cutoff: float = 0.5
    # How fast the cut-off rises with speed, in Hz per (face size per second): higher follows fast motion better.
    beta: float = 4.0
    # Cut-off (Hz) of the speed estimate that drives the adaptive cut-off.
    d_cutoff: float = 1.0
    # One-Euro cut-off at rest (Hz) for the eyelid and lip points, after the head pose is factored out: high, so that
    # a blink (2-4 frames) and fast lip motion survive; min_cutoff applies instead where it is higher.
    expression_cutoff: float = 8.0
    # One-Euro cut-off at rest (Hz) for the gaze (an iris's place within its eye): a gaze is held for a fifth of a
    # second or more between saccades, which the speed term lets through; min_cutoff applies instead where higher.
    gaze_cutoff: float = 3.0
    # Offline runs filter forwards and backwards and average, which cancels the filter's lag.
    bidirectional: bool = True
    # Standard deviation (seconds) of the Gaussian that steadies crop boxes: a VoxCeleb-style slow-following crop.
    crop_sigma: float = 0.5


@dataclass(frozen=True)
class CropConfig:
    # Side of the stored square crops, in pixels.
    resolution: int = 256
    # Crop side = (1 + margin) × the long side of the landmark box (0.8: face ~55% of the crop, as in VoxCeleb2).
    margin: float = 0.8
    # Move the crop centre up by this fraction of the landmark box (negative moves it down, towards the neck).
    shift: float = 0.0
    # follow: a smoothed box that follows the head; fixed: one box holding the head over the whole clip.
    mode: Literal["follow", "fixed"] = "follow"


@dataclass(frozen=True)
class LimitsConfig:
    """What one request may ask of the machine; everything above a limit fails (or is cut) with a clear message.

    Read by the source-face loader (`faces.source_faces`) as well as by the demo, hence its home here.
    """

    max_seconds: float = 30.0
    """Driving clips longer than this are cut to their first max_seconds (with a notice)."""
    max_frames: int | None = None
    """Also cut after this many frames (None: no cap besides max_seconds); tests and benchmarks use it."""
    max_video_side: int = 2160
    """Driving clips whose long side exceeds this many pixels are refused (decoding them would be too slow)."""
    max_image_side: int = 2048
    """Larger photos are shrunk to this long side on loading: detection and cropping need no more."""
    max_upload_mb: float = 200.0
    """Largest photo, driving clip or avatar file accepted, in megabytes."""
    max_photos: int = MAX_SHOTS
    """Most source photos per request (1 to MAX_SHOTS)."""

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.max_video_side < 64 or self.max_image_side < 64 or self.max_upload_mb <= 0:
            raise ConfigError("limits must be positive (video and image sides at least 64 px)")
        if not 1 <= self.max_photos <= MAX_SHOTS:
            raise ConfigError(f"max_photos must be in 1..{MAX_SHOTS}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError("max_frames must be at least 1")

    @classmethod
    def from_env(cls, prefix: str = "HEADS_") -> LimitsConfig:
        """Defaults overridden by environment variables such as HEADS_MAX_SECONDS=20 (how a Space configures it)."""
        values = {}
        for f in fields(cls):
            raw = os.environ.get(prefix + f.name.upper())
            if raw not in (None, ""):
                values[f.name] = float(raw) if f.name in ("max_seconds", "max_upload_mb") else int(raw)
        return cls(**values)


@dataclass(frozen=True)
class PrepareConfig:
    """Turn videos (VoxCeleb layout or any folder) into face crops, landmarks and a manifest for training."""

    # Source folder: VoxCeleb1/2 (id*/video_id/*.mp4 or frame folders of jpg/png), or any folder of videos.
    src: Positional[Annotated[Path, arg(metavar="SRC")]]
    # Output folder; re-running with the same folder skips the clips already prepared or rejected.
    dst: Positional[Annotated[Path, arg(metavar="DST")]]
    # Also take single images (jpg/png/webp) as one-frame clips, each its own video.
    images: bool = False
    # TSV/CSV mapping source files to people (columns: file, identity; file relative to src). Files not listed
    # are their own identity, unless a VoxCeleb id folder names it.
    identities: Path | None = None
    # Frames per second to keep (lower skips frames); None keeps every frame.
    fps: float | None = 25.0
    # At most this many frames per clip (taken from the start); None keeps all.
    max_frames: int | None = 250
    # Clips with fewer frames with a face than this are rejected ("too short"); images are exempt.
    min_frames: int = 8
    # Reject a clip when more than this fraction of its detections saw a second face of comparable size.
    max_ambiguous: float = 0.25
    # JPEG quality of the stored frames.
    jpeg_quality: int = 95
    # Parallel worker processes (1 runs in this process).
    workers: int = 1
    # Fraction of identities held out as the test split (by a hash of the identity name, so it is stable).
    test_fraction: float = 0.1
    # Prepare again the clips that rejects.jsonl lists (by default they are skipped like finished ones).
    retry_rejects: bool = False
    # Show a progress bar.
    progress: bool = True
    # K/N: prepare only shard K of N (K counts from 0, as job-array indices do), the clips whose source path hashes
    # to K, into a folder of its own; `heads prepare --merge` joins the N folders. None prepares every clip.
    shard: str | None = None
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    crop: CropConfig = field(default_factory=CropConfig)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.min_frames < 1 or (self.max_frames is not None and self.max_frames < 1):
            raise ConfigError("workers, min_frames and max_frames must be at least 1")
        if self.shard is not None:
            parse_shard(self.shard)  # a bad K/N stops here, before any work
        if not 0.0 <= self.test_fraction <= 1.0 or (self.fps is not None and self.fps <= 0):
            raise ConfigError("test_fraction must be in [0, 1] and fps positive")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality must be in 1..100")

    @property
    def shard_index(self) -> tuple[int, int] | None:
        """(K, N) of `shard`, or None when every clip is prepared."""
        return None if self.shard is None else parse_shard(self.shard)


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` -> (K, N), with 0 <= K < N: the form job arrays fill in (`--shard $SLURM_ARRAY_TASK_ID/64`)."""
    k, _, n = text.partition("/")
    if not (k.strip().isdigit() and n.strip().isdigit()) or not 0 <= int(k) < int(n):
        raise ConfigError(f"shard must be K/N with 0 <= K < N (K counts from 0), not {text!r}")
    return int(k), int(n)


@dataclass(frozen=True)
class MergeConfig:
    """Join the folders of `heads prepare --shard K/N` runs into one prepared dataset: clips, manifest, rejects and
    train/test split, as one unsharded run would have written them."""

    # Folder of the merged dataset (created; an earlier merge there is updated).
    out: Positional[Annotated[Path, arg(metavar="OUT")]]
    # The shard folders: one per K of the same N, in any order, all prepared with the same settings.
    shards: Positional[Annotated[tuple[Path, ...], arg(metavar="SHARD")]]
    # How the clips reach OUT: move (a rename on one file system: instant, and it empties the shard folders), copy,
    # or link (relative symbolic links into the shard folders, which must then stay beside OUT).
    mode: Literal["move", "copy", "link"] = "move"
    # Merge although some of the N shards are missing (to start training while the last ones still run).
    allow_missing: bool = False
    # Print a summary line.
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.shards:
            raise ConfigError("give at least one shard folder after OUT")
        if Path(self.out).resolve() in {Path(s).resolve() for s in self.shards}:
            raise ConfigError(f"OUT ({self.out}) must be a folder of its own, not one of the shards")


@dataclass(frozen=True)
class PrepareBenchConfig:
    """Frames/s of `heads prepare` end to end on real clips: detect every frame vs detect-and-track, 1 and 2
    workers."""

    # A folder of videos to measure on (e.g. ../shared/media).
    src: Positional[Annotated[Path, arg(metavar="SRC")]]
    # How many clips, spread over the sorted list of videos found in src.
    clips: int = 8
    # Frames per clip.
    max_frames: int = 100
    # Worker counts to measure.
    workers: tuple[int, ...] = (1, 2)
    # Detector intervals to measure (1 = detect every frame).
    detect_every: tuple[int, ...] = (1, 10)
    # Where to write the JSON results.
    out: Path = Path("runs/bench/prepare.json")

    def __post_init__(self) -> None:
        if self.clips < 1 or self.max_frames < 1 or min(self.workers, default=0) < 1 or min(self.detect_every,
                                                                                             default=0) < 1:
            raise ConfigError("clips, max_frames, workers and detect_every must be at least 1")


@dataclass(frozen=True)
class ShardsConfig:
    """Convert a prepared folder into WebDataset tar shards (one sample per clip: its frames and landmarks) and a
    JSON index, for training loaders that stream a few large files instead of opening millions of small ones."""

    # A folder written by `heads prepare` (or `heads prepare --merge`).
    prepared: Positional[Annotated[Path, arg(metavar="PREPARED")]]
    # Folder of the shards: train-000000.tar ..., test-000000.tar ..., index.json, manifest.jsonl (created).
    out: Positional[Annotated[Path, arg(metavar="OUT")]]
    # Clips per shard (the last shard of each split holds the rest). Training splits the shards over every
    # DataLoader worker of every process, so a split needs at least processes × workers shards: at 256 px and 250
    # frames a clip is about 5 MB, so 100 clips make shards of about 500 MB, WebDataset's usual size.
    clips_per_shard: int = 100
    # Print a summary line.
    progress: bool = True

    def __post_init__(self) -> None:
        if self.clips_per_shard < 1:
            raise ConfigError("clips_per_shard must be at least 1")
        if Path(self.out).resolve() == Path(self.prepared).resolve():
            raise ConfigError(f"OUT ({self.out}) must be a folder of its own, not the prepared folder")
