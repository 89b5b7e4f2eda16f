"""Configs of the face pipeline and of `heads prepare` / `heads bench prepare`.

Importable without torch, OpenCV or dlib, so that the CLI parses options before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from tyro.conf import Positional, arg

from base.errors import ConfigError

Backend = Literal["dlib", "face-alignment", "mediapipe"]


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
    # A second face at least this fraction of the main face's area makes a detection ambiguous.
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
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    crop: CropConfig = field(default_factory=CropConfig)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.min_frames < 1 or (self.max_frames is not None and self.max_frames < 1):
            raise ConfigError("workers, min_frames and max_frames must be at least 1")
        if not 0.0 <= self.test_fraction < 1.0 or (self.fps is not None and self.fps <= 0):
            raise ConfigError("test_fraction must be in [0, 1) and fps positive")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality must be in 1..100")


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
