"""Options of `heads animate`, `heads edit` and the web app (`heads bench animate` times the same `AnimateConfig`).

Torch-free and light to import: the CLI parses these before anything heavy loads, and the app builds the same
`AnimateConfig` (and `EditConfig`) from its widgets, so both run exactly the same pipeline. The retargeting controls
(per-part strengths, held eyes and lips, head-turn offsets) are `faces.motion.Controls`, inherited by both configs:
one name, one default and one check for each, wherever it is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from base.errors import ConfigError
from faces.config import LimitsConfig
from faces.motion import Controls, MotionConfig

Renderer = Literal["auto", "neural", "mouth", "warp"]
Precision = Literal["auto", "fp32", "int8", "fp16"]  # generator variants (animate, bench animate)


def _is_video(path: str) -> bool:
    """Whether a source file is a video, by its extension (an upload keeps its own): a video is not read as a photo."""
    from faces.video import VIDEO_SUFFIXES  # here, not at the top: importing this module stays light (no PyAV)

    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class AnimateConfig(Controls):
    """Animate one person (1-32 photos, a painting, a saved avatar, or a video of them) with the motion of a driving
    video."""

    driving: str
    """Driving video (mp4, mov, webm, ...); its audio is carried into the result (with a source video: see --audio)."""
    source: tuple[str, ...] = ()
    """1 to 32 photos of one person, or one painting (JPEG, PNG, WebP). The first one is the face that moves. Or one
    video of the person (mp4, mov, webm, ...: told by its extension): video-to-video, where each output frame is the
    source frame at the same time, its head motion and background kept, with the driver's expression applied
    (relative, by the warp); the result has the source video's length and frame rate. Its head moves as the source's
    does (--pose-strength has no part), and its eyes look where the source's look (--gaze has no part)."""
    audio: Literal["source", "driver"] = "source"
    """Video-to-video: the audio the result carries, the source video's or the driving clip's. With photos the
    driving clip's audio is always used."""
    out: str = "animated.mp4"
    """Output mp4 (H.264, yuv420p: plays in browsers)."""
    avatar: str | None = None
    """A personalised .onnx saved earlier (--save-avatar): skips personalization; --source is then optional."""
    save_avatar: str | None = None
    """Also write the person's personalised generator here as .onnx (neural renderer only)."""
    box: tuple[float, float, float, float] | None = None
    """For one photo where no face is detected (a painting, a drawing): the face box x0 y0 x1 y1 in pixels."""
    renderer: Renderer = "auto"
    """auto: whichever the model folder's own evaluation on the test split found best (a learned renderer only
    where it beat the warp; see docs/fewshot.md), with a one-line notice of why; neural: the few-shot generator
    (ONNX); mouth: the warp with its mouth corrected by the mouth refiner (ONNX, docs/warp-guided.md); warp:
    classical piecewise-affine warp of the photos (instant, CPU). Without the model (or the mouth graph) in the
    weights folder, neural and mouth fall back to warp with a notice."""
    finetune_steps: int = 0
    """0: instant feed-forward personalization (onnxruntime only). N > 0: fine-tune first, with the default (light)
    recipe, for at most N steps (a held-out photo stops it sooner; needs torch and the PyTorch model, see
    docs/app.md). The option `FinetuneSettings.steps` of `heads finetune`, with the same meaning; the app's slider
    proposes its default for the photos given (`training.fewshot_config.default_steps`)."""
    mode: Literal["relative", "absolute"] = "relative"
    """relative: the driver's motion applied to the source's own face shape (landmark adaptation); absolute: the
    driver's landmarks themselves (the paper's setting; the driver's face shape leaks into the result)."""
    pose_strength: float = 1.0
    """Strength of the driver's head motion, 0 (head still) to 2."""
    smoothing: float = 0.5
    """Temporal smoothing of the driver's landmarks, 0 (off) to 1 (strong; steadier but laggier on fast motion)."""
    reference: Literal["first", "neutral"] = "neutral"
    """Driver frame taken to show the source's expression: the first, or the most neutral (mouth closed, frontal)."""
    gaze: Literal["auto", "off", "mediapipe"] = "auto"
    """Carry the driver's gaze onto the photo's irises (warp renderer): mediapipe tracks the driving clip (68 points
    and irises) and finds the photo's irises; auto does so where mediapipe is installed, else works as off; off: the
    eyes look where the photo looks, and the clip is tracked by the pipeline's own detector (dlib)."""
    side_by_side: bool = False
    """Output driving | landmarks | result side by side."""
    output: Literal["photo", "face"] = "photo"
    """photo: the whole (first) source photo animated, at its own size up to --max-side, the face warped at the
    photo's own resolution; face: the face crop alone, --resolution px square."""
    watermark: bool = True
    """Write a visible "synthetic" mark in a corner (the file's metadata says so in any case)."""
    identity_score: bool = True
    """Measure how much the result still looks like the source (cosine of dlib face descriptors)."""
    max_side: int = 1920
    """Long side of whole-photo output, in pixels: larger photos are shrunk to it (H.264 wants even sides)."""
    resolution: int = 512
    """Side of the face crop that --output face shows with the warp renderer (the neural one shows its model's
    resolution)."""
    weights: str | None = None
    """Model folder made by `heads export`, or a Hugging Face repo id; default $HEADS_WEIGHTS, else weights/."""
    torch_model: str | None = None
    """PyTorch model folder (save_pretrained, or a run directory) that fine-tuning starts from; default: the torch/
    folder inside the weights folder. It must be the model the ONNX graphs were exported from."""
    precision: Precision = "auto"
    """Generator variant: auto picks int8 on CPU and fp16 on GPU when the folder has them, else fp32."""
    device: Literal["auto", "cpu"] = "auto"
    """auto: CUDA (or TensorRT) when onnxruntime can use it, else CPU."""
    batch: int = 8
    """Frames rendered per generator call."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.source and self.avatar is None:
            raise ConfigError("pass --source photos, or --avatar FILE.onnx")
        if len(self.source) > self.limits.max_photos:
            raise ConfigError(f"at most {self.limits.max_photos} source photos, got {len(self.source)}")
        if self.finetune_steps < 0 or self.batch < 1:
            raise ConfigError("finetune_steps must be >= 0 and batch >= 1")
        self.motion()  # checks pose_strength
        if not 0.0 <= self.smoothing <= 1.0:
            raise ConfigError("smoothing must be in [0, 1]")
        if self.box is not None and (self.box[2] <= self.box[0] or self.box[3] <= self.box[1]):
            raise ConfigError("box must be x0 y0 x1 y1 with x1 > x0 and y1 > y0")
        if not 64 <= self.max_side <= 4096 or not 64 <= self.resolution <= 2048:
            raise ConfigError("max_side must be in 64..4096 and resolution in 64..2048")
        if self.audio not in ("source", "driver"):
            raise ConfigError(f"audio must be source or driver, got {self.audio!r}")
        self._check_video_source()

    @property
    def source_video(self) -> str | None:
        """The source video, when the source is one (video-to-video), else None: the one place that tells."""
        return self.source[0] if len(self.source) == 1 and _is_video(self.source[0]) else None

    def _check_video_source(self) -> None:
        """A source video is warped frame by frame onto its own head motion: the options that need photos (a model,
        an avatar, a face box) or another motion (absolute landmarks, a face crop that would follow the head) do not
        apply, and are refused rather than silently ignored."""
        if self.source_video is None:
            if any(_is_video(s) for s in self.source):
                raise ConfigError("a source video is animated on its own: pass one video, or photos only")
            return
        refused = {"avatar": self.avatar is not None, "renderer neural": self.renderer == "neural",
                   "renderer mouth": self.renderer == "mouth",
                   "finetune_steps": self.finetune_steps > 0, "box": self.box is not None,
                   "mode absolute": self.mode == "absolute", "output face": self.output == "face"}
        named = [name for name, given in refused.items() if given]
        if named:
            raise ConfigError(f"video-to-video (a source video) warps each source frame: {', '.join(named)} cannot "
                              "be used with it")

    def motion(self) -> MotionConfig:
        """How the driver's motion reaches the photo's landmarks (`faces.motion.retarget`)."""
        return MotionConfig(mode=self.mode, pose_strength=self.pose_strength, reference=self.reference,
                            **self.controls())


@dataclass(frozen=True)
class EditConfig(Controls):
    """Edit the expression of one photo: one driving frame's expression and/or the controls -> one PNG."""

    source: str
    """The photo to edit (JPEG, PNG, WebP)."""
    driving: str | None = None
    """A driving image, or a video whose first frame is used: its eyes, mouth (and gaze, see --gaze) are carried onto
    the photo, read against the same frame with the mouth closed and the eyes open. One frame says nothing of how
    the head turned, so the head moves only by --yaw, --pitch and --roll. None: the controls alone."""
    out: str = "edited.png"
    """Output PNG: the whole photo at its own size (up to --max-side), edited; tagged synthetic in its metadata."""
    box: tuple[float, float, float, float] | None = None
    """Where no face is detected in the photo (a painting, a drawing): the face box x0 y0 x1 y1 in pixels."""
    gaze: Literal["auto", "off", "mediapipe"] = "auto"
    """Carry the driving frame's gaze onto the photo's irises: as `heads animate --gaze`."""
    watermark: bool = True
    """Write a visible "synthetic" mark in a corner (the file's metadata says so in any case)."""
    max_side: int = 1920
    """Long side of the output, in pixels: larger photos are shrunk to it."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.personalization()  # checks the box and max_side as `heads animate` does

    def personalization(self) -> AnimateConfig:
        """The photo's persona as `heads animate` makes it (and caches it) for the warp at the photo's own
        resolution: a still is edited by the warp, which returns the photo's own pixels wherever nothing moves."""
        return AnimateConfig(driving=self.driving or "", source=(self.source,), box=self.box, renderer="warp",
                             gaze=self.gaze, output="photo", max_side=self.max_side, limits=self.limits,
                             identity_score=False, progress=False)
