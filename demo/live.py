"""Live mode: a camera's frames drive a personalised portrait as they arrive, one frame in, one frame out.

The person is personalised once (`Pipeline.personalize`, cached as for an animation); then each frame costs a
landmark fit, one relative retargeting step and one render. The first frame with a face is the reference: it is
taken to show the photo's own expression and pose, so it gives the photo back, and every later frame adds the
motion since it (`faces.motion.retarget`, relative mode). A new stream, or a pause of more than `RESTART_AFTER`
seconds, starts from its own first frame again (`LiveSession.restart`): the person may have sat back meanwhile.

Torch-free and UI-free: the app's "Live" tab streams webcam frames to `LiveSession.step`; `heads bench live` replays
a clip through `LatestFrame` as if it were a camera. Neither ever falls behind the camera: only the newest frame
is rendered, and frames that arrive while one renders are dropped, not queued. In the app Gradio's streaming does
that (one job per browser session, whose waiting input each new frame overwrites); `LatestFrame` does the same for
any other loop. A slow machine therefore shows fewer frames per second, never an ever-growing delay.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from demo.animate_config import AnimateConfig, Renderer
from demo.compose import watermark
from demo.pipeline import Persona, _smoothing
from faces.config import LimitsConfig, TrackConfig
from faces.detect import LandmarkDetector
from faces.motion import Controls, MotionConfig, retarget
from faces.smoothing import EXPRESSIVE, OneEuroFilter
from faces.track import FaceTracker
from faces.watermark import WATERMARK

# Detection (dlib's HOG on the whole frame) costs several landmark fits; between detections the tracker fits in the
# box predicted from the last frame, and re-detects at once when the face jumps in size. One detection every 30
# frames (2 s at 15 frames/s) finds a face that came back without making every tenth frame late.
LIVE_TRACKING = TrackConfig(detect_every=30)
RESTART_AFTER = 2.0  # seconds without a face after which the next face is the reference again (a loaded server
# may take most of a second a frame: shorter would restart it all the time)
PAGE_JPEG_QUALITY = 75  # what Gradio gave the Live tab's image files (PIL's default): the same picture as before
RATE_WINDOW = 2.0  # seconds of recent frames that `LiveSession.frames_per_second` counts


@dataclass(frozen=True)
class LiveConfig(Controls):
    """Drive one person (1-32 photos or a painting) live from a camera: the app's "Live" tab and `heads bench live`."""

    source: tuple[str, ...]
    """1 to 32 photos of one person, or one painting. The first one is the face that moves."""
    box: tuple[float, float, float, float] | None = None
    """For one photo where no face is detected (a painting, a drawing): the face box x0 y0 x1 y1 in pixels."""
    renderer: Renderer = "auto"
    """As `heads animate --renderer`: auto, neural, mouth or warp (instant personalization; no fine-tuning live)."""
    output: Literal["photo", "face"] = "photo"
    """photo: the whole photo, shrunk to --max-side; face: the face crop alone, --resolution px square."""
    resolution: int = 256
    """Side of the face crop that --output face shows (warp renderer; a neural one shows its model's)."""
    pose_strength: float = 1.0
    """Strength of the camera's head motion, 0 (head still) to 2."""
    smoothing: float = 0.25
    """Temporal smoothing of the camera's landmarks, 0 (off) to 1. Live smoothing can only look back, so it lags:
    lighter than an animation's default (0.5), and the lips and eyelids are smoothed less than the head."""
    watermark: bool = True
    """Write a visible "synthetic" mark in a corner."""
    max_side: int = 512
    """Long side the photo is shrunk to, in pixels: the warp's cost follows the photo's pixels (it works at the
    photo's own resolution), and 512 keeps a frame within the live budget on one CPU core (docs/app.md)."""
    weights: str | None = None
    """Model folder, as `heads animate --weights` (the pipeline's own when run in the app)."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.motion()
        self.personalization()  # checks the photos, the box, the sizes and the smoothing as `heads animate` does

    def personalization(self) -> AnimateConfig:
        """The person as `heads animate` makes it (and the pipeline caches it): instant, no gaze (tracking irises
        costs a second landmark model per frame), no identity score."""
        return AnimateConfig(driving="", source=self.source, box=self.box, renderer=self.renderer,
                             output=self.output, resolution=self.resolution, max_side=self.max_side,
                             smoothing=self.smoothing, gaze="off", identity_score=False, weights=self.weights,
                             limits=self.limits, progress=False)

    def motion(self) -> MotionConfig:
        """Relative motion from the first live frame, with the controls."""
        return MotionConfig(mode="relative", pose_strength=self.pose_strength, reference="first",
                            **self.controls())


@dataclass(frozen=True)
class LiveFrame:
    """One rendered frame and what it cost: `seconds` per step of `LiveSession.step`, and whether a face was found
    (without one the last frame shown is shown again)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    found: bool
    seconds: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def page_image(image: np.ndarray) -> str:
    """(H, W, 3) uint8 RGB -> the frame as the Live tab shows it: a JPEG in a `data:` URL, which travels inside the
    stream's own event message. An image component's frame went as a file that the page then fetched: the second
    round trip per frame halved the frames a browser showed (docs/app.md, `heads bench live-browser`)."""
    bgr = np.ascontiguousarray(image[..., ::-1])
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, PAGE_JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode a frame of shape {image.shape} as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


class LiveSession:
    """One camera driving one persona: call `step` with each frame (the newest one: see the module docstring).

    `detectors` lends a landmark detector for one step (`Pipeline.detector`): the tracker's state (the last face and
    its box) is the session's own, while the detector, a large model that is not documented thread-safe, is borrowed
    per frame from the pipeline's pool, so live sessions and animations share the few that are loaded.
    """

    def __init__(self, persona: Persona, config: LiveConfig,
                 detectors: Callable[[], AbstractContextManager[LandmarkDetector]]):
        self.persona, self.config, self.detectors = persona, config, detectors
        self.motion = config.motion()
        self.source = persona.renderer.sources.points[0].astype(np.float64)
        self._tracker: FaceTracker | None = None
        self._smoothing = _smoothing(config.smoothing)
        self._filter: OneEuroFilter | None = None
        self.reference: np.ndarray | None = None  # (68, 2) the camera's landmarks in the first frame with a face
        self._seen: float | None = None  # the time of the last frame with a face
        self.last: np.ndarray = self._shown(persona.renderer.render(self.source[None])[0])  # the photo, as shown
        self.frames = 0  # frames rendered with a face
        self._times: deque[float] = deque()  # when recent steps ended (time.monotonic), for the rate shown

    def restart(self) -> None:
        """The next frame with a face becomes the reference again (the person sat back, or someone else sits)."""
        self.reference, self._filter, self._seen = None, None, None
        if self._tracker is not None:
            self._tracker.reset()

    @property
    def frames_per_second(self) -> float:
        """Frames shown per second over the last `RATE_WINDOW` seconds (0 before two frames)."""
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def _tick(self) -> None:
        now = time.monotonic()
        if self._times and now - self._times[-1] > RESTART_AFTER:
            self._times.clear()
        self._times.append(now)
        while now - self._times[0] > RATE_WINDOW:
            self._times.popleft()

    def _shown(self, face: np.ndarray) -> np.ndarray:
        """The frame the page shows: the visible label where asked for, then the invisible mark, always, as in every
        file the app writes (a screen recording of the live tab still reads as synthetic with `heads verify`)."""
        image = self.persona.compose(face)
        return WATERMARK.embed(watermark(image) if self.config.watermark else image)

    def _smooth(self, points: np.ndarray, t: float) -> np.ndarray:
        """Online One-Euro filtering (it can only look back), with the lips and eyelids at a higher cut-off so that
        blinks and syllables are not flattened; speed in face sizes per second."""
        if not self._smoothing.enabled:
            return points
        if self._filter is None:
            scale = float(max(np.ptp(points, axis=0).max(), 1.0))
            self._filter = OneEuroFilter.from_config(self._smoothing, scale)
            cutoff = np.full((len(points), 1), self._smoothing.min_cutoff)
            cutoff[EXPRESSIVE] = max(self._smoothing.expression_cutoff, self._smoothing.min_cutoff)
            self._filter.min_cutoff = cutoff
        return self._filter(points, t).astype(np.float64)

    def step(self, frame: np.ndarray, t: float | None = None) -> LiveFrame:
        """The persona moved as the face in `frame` ((H, W, 3) uint8 RGB) moved since the reference frame; `t`, the
        frame's time in seconds (default: now), paces the smoothing."""
        t = time.monotonic() if t is None else t
        if self._seen is not None and t - self._seen > RESTART_AFTER:
            self.restart()
        seconds: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[name] = now - clock
            clock = now

        with self.detectors() as detector:
            if self._tracker is None:
                self._tracker = FaceTracker(detector, LIVE_TRACKING)
            self._tracker.detector = detector
            face = self._tracker(frame)
        lap("landmarks")
        if face is None:
            self._tick()
            return LiveFrame(self.last, False, seconds)
        points = self._smooth(face.points.astype(np.float64), t)
        self._seen = t
        if self.reference is None:
            self.reference = points
        target = retarget(np.stack([self.reference, points]), self.source, self.motion, reference=0)[1]
        lap("motion")
        rendered = self.persona.renderer.render(target[None])[0]
        lap("render")
        self.last = self._shown(rendered)
        lap("compose")
        self.frames += 1
        self._tick()
        return LiveFrame(self.last, True, seconds)


class LatestFrame:
    """A one-frame mailbox between a camera and a renderer: `put` replaces the waiting frame (counting it as
    dropped), `take` waits for one and empties the box. However slow the renderer, it only ever sees the newest
    frame, so its delay behind the camera stays one frame's work and never grows."""

    def __init__(self):
        self._frame: tuple[object, float] | None = None
        self._ready = threading.Condition()
        self.closed = False
        self.dropped = 0

    def put(self, frame: object, t: float) -> None:
        with self._ready:
            if self._frame is not None:
                self.dropped += 1
            self._frame = (frame, t)
            self._ready.notify()

    def close(self) -> None:
        """The camera has stopped: `take` returns None once the box is empty."""
        with self._ready:
            self.closed = True
            self._ready.notify()

    def take(self) -> tuple[object, float] | None:
        """The newest frame (whatever the camera put: an image, or its JPEG) and its time, waiting for one; None
        once closed and empty."""
        with self._ready:
            self._ready.wait_for(lambda: self._frame is not None or self.closed)
            frame, self._frame = self._frame, None
            return frame


def lend(detector: LandmarkDetector) -> Callable[[], AbstractContextManager[LandmarkDetector]]:
    """`LiveSession`'s `detectors` for a caller that owns its detector (a benchmark, a test): lends that one."""

    @contextlib.contextmanager
    def borrow():
        yield detector

    return borrow
