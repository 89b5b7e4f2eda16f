"""Options of `heads animate`, the web app and `heads bench animate`.

Torch-free and light to import: the CLI parses these before anything heavy loads, and the app builds the same
`AnimateConfig` from its widgets, so both run exactly the same pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from base.errors import ConfigError

Renderer = Literal["neural", "warp"]
MAX_PHOTOS = 32  # the paper's largest T; the fine-tuning code refuses more


@dataclass(frozen=True)
class LimitsConfig:
    """What one request may ask of the machine; everything above a limit fails (or is cut) with a clear message."""

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
    max_photos: int = MAX_PHOTOS
    """Most source photos per request (1 to 32)."""

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.max_video_side < 64 or self.max_image_side < 64 or self.max_upload_mb <= 0:
            raise ConfigError("limits must be positive (video and image sides at least 64 px)")
        if not 1 <= self.max_photos <= MAX_PHOTOS:
            raise ConfigError(f"max_photos must be in 1..{MAX_PHOTOS}")
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
class AnimateConfig:
    """Animate one person (1-32 photos, a painting, or a saved avatar) with the motion of a driving video."""

    driving: str
    """Driving video (mp4, mov, webm, ...); its audio is carried into the result."""
    source: tuple[str, ...] = ()
    """1 to 32 photos of one person, or one painting (JPEG, PNG, WebP). The first one is the face that moves."""
    out: str = "animated.mp4"
    """Output mp4 (H.264, yuv420p: plays in browsers)."""
    avatar: str | None = None
    """A personalised .onnx saved earlier (--save-avatar): skips personalization; --source is then optional."""
    save_avatar: str | None = None
    """Also write the person's personalised generator here as .onnx (neural renderer only)."""
    box: tuple[float, float, float, float] | None = None
    """For one photo where no face is detected (a painting, a drawing): the face box x0 y0 x1 y1 in pixels."""
    renderer: Renderer = "neural"
    """neural: the few-shot generator (ONNX); warp: classical piecewise-affine warp of the photos (instant, CPU).
    Without a neural model in the weights folder, neural falls back to warp with a notice."""
    finetune_steps: int = 0
    """0: instant feed-forward personalization (onnxruntime only). N > 0: fine-tune N steps first (needs torch and
    the PyTorch model, see docs/app.md)."""
    mode: Literal["relative", "absolute"] = "relative"
    """relative: the driver's motion applied to the source's own face shape (landmark adaptation); absolute: the
    driver's landmarks themselves (the paper's setting; the driver's face shape leaks into the result)."""
    expression: float = 1.0
    """Strength of the driver's expressions, 0 (none) to 2 (exaggerated)."""
    pose: float = 1.0
    """Strength of the driver's head motion, 0 (head still) to 2."""
    smoothing: float = 0.5
    """Temporal smoothing of the driver's landmarks, 0 (off) to 1 (strong; steadier but laggier on fast motion)."""
    reference: Literal["first", "neutral"] = "neutral"
    """Driver frame taken to show the source's expression: the first, or the most neutral (mouth closed, frontal)."""
    side_by_side: bool = False
    """Output driving | landmarks | result side by side."""
    paste_back: bool = False
    """Paste the animated face back into the (first) source photo instead of showing the face crop."""
    watermark: bool = True
    """Write a visible "synthetic" mark in a corner (the file's metadata says so in any case)."""
    identity_score: bool = True
    """Measure how much the result still looks like the source (cosine of dlib face descriptors)."""
    output_side: int = 512
    """Long side of pasted-back frames, in pixels (face crops keep the renderer's resolution)."""
    warp_resolution: int = 256
    """Side of the face crop the warp renderer works at."""
    weights: str | None = None
    """Model folder made by `heads export`, or a Hugging Face repo id; default $HEADS_WEIGHTS, else weights/."""
    torch_model: str | None = None
    """PyTorch model folder (save_pretrained, or a run directory) that fine-tuning starts from; default: the torch/
    folder inside the weights folder. It must be the model the ONNX graphs were exported from."""
    precision: Literal["auto", "fp32", "int8", "fp16"] = "auto"
    """Generator variant: auto picks int8 on CPU and fp16 on GPU when the folder has them, else fp32."""
    device: Literal["auto", "cpu"] = "auto"
    """auto: CUDA (or TensorRT) when onnxruntime can use it, else CPU."""
    batch: int = 8
    """Frames rendered per generator call."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if not self.source and self.avatar is None:
            raise ConfigError("pass --source photos, or --avatar FILE.onnx")
        if len(self.source) > self.limits.max_photos:
            raise ConfigError(f"at most {self.limits.max_photos} source photos, got {len(self.source)}")
        if self.finetune_steps < 0 or self.batch < 1:
            raise ConfigError("finetune_steps must be >= 0 and batch >= 1")
        for name in ("expression", "pose"):
            if not 0.0 <= getattr(self, name) <= 2.0:
                raise ConfigError(f"{name} must be in [0, 2]")
        if not 0.0 <= self.smoothing <= 1.0:
            raise ConfigError("smoothing must be in [0, 1]")
        if self.box is not None and (self.box[2] <= self.box[0] or self.box[3] <= self.box[1]):
            raise ConfigError("box must be x0 y0 x1 y1 with x1 > x0 and y1 > y0")
        if self.output_side < 64 or self.warp_resolution not in (64, 128, 256, 512):
            raise ConfigError("output_side must be >= 64 and warp_resolution one of 64, 128, 256, 512")


@dataclass(frozen=True)
class AnimateBenchConfig:
    """End-to-end frames/s of `heads animate` (decode, landmarks, adaptation, render, encode) per renderer."""

    driving: str | None = None
    """Driving clip; default: the first driving clip listed in ../shared/media/MANIFEST.tsv."""
    source: str | None = None
    """Source photo; default: the first portrait photo listed there."""
    frames: int = 150
    """Frames of the clip to animate per case."""
    renderers: tuple[str, ...] = ("warp-256", "neural-compact-128", "neural-compact256-256")
    """warp-R: the warp renderer at R px; neural-PRESET-R: that preset at R px (random weights, exported to ONNX,
    when no trained model is given with --weights)."""
    weights: str | None = None
    """A model folder made by `heads export` to time instead of random weights."""
    precisions: tuple[Literal["auto", "fp32", "int8", "fp16"], ...] = ("fp32", "int8")
    """Generator variants to time in each neural case."""
    out: Path = Path("runs/bench/animate.json")

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ConfigError("frames must be at least 2")
