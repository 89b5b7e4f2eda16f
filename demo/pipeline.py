"""The animation pipeline behind both `heads animate` and the web app: photos (or an avatar file) and a driving
clip in, a browser-playable mp4 out. It knows nothing about any UI: progress goes to a callback, problems with the
inputs are `UserError`s whose message is meant for the person, and notices are returned with the result.

Two streaming passes over the driving clip keep memory flat however long it is: the first tracks landmarks (kept:
68 points a frame), which are then smoothed over the whole track and retargeted onto the source face; the second
decodes again and renders, composes and encodes frame batch by frame batch.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import math
import shutil
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import repeat
from pathlib import Path

import numpy as np
import onnxruntime as ort

from base.errors import InputError, UserError
from demo import tuning
from demo.animate_config import AnimateConfig, EditConfig
from demo.avatar_file import attach_sources, bake_embedding, read_sources
from demo.compose import Canvas, save_still, side_by_side, tag_synthetic, watermark
from demo.engine import Engine, OnnxModel, SessionSettings
from demo.identity import IdentityMeter, IdentityScore
from demo.limits import cut_notice, driving_info
from demo.renderers import ModelFolder, MouthRenderer, NeuralRenderer, RefiningRenderer, WarpRenderer
from demo.video_source import FADE_SECONDS, SourceVideoRenderer, at_times, source_frames
from demo.weights import requested, resolve_weights, weights_label
from faces.config import DetectorConfig, LimitsConfig, SmoothingConfig
from faces.crop import CropTransform
from faces.detect import DetectorUnavailable, LandmarkDetector, load_detector
from faces.image_io import ImageError, load_image
from faces.landmark_image import draw_landmarks
from faces.motion import retarget, retarget_irises, retarget_still, retarget_video
from faces.smoothing import smooth_irises, smooth_landmarks
from faces.source_faces import Crops, SourceFace, check_file, crop_pupils, crops, load_faces, with_irises
from faces.track import FaceTracker
from faces.video import VideoError, VideoReader, VideoWriter
from faces.watermark import WATERMARK

IDENTITY_FRAMES = 8  # result frames scored for identity, evenly spread over the clip
REPORT_EVERY = 0.25  # seconds between progress reports within a stage


@dataclass(frozen=True)
class Progress:
    """One progress report: `done` of `total` units (None: unknown yet) of a stage, and the time it has taken."""

    stage: str  # "faces", "personalizing", "fine-tuning", "source" (video-to-video), "landmarks", "rendering"
    done: int
    total: int | None
    elapsed: float  # seconds since the stage began

    @property
    def eta(self) -> float | None:
        """Seconds left in this stage at the pace so far."""
        if not self.total or not self.done:
            return None
        return self.elapsed * (self.total - self.done) / self.done


ProgressCallback = Callable[[Progress], None]


class _Stage:
    """Reports a stage's progress at most every REPORT_EVERY seconds, and always its start and end."""

    def __init__(self, callback: ProgressCallback | None, stage: str, total: int | None):
        self.callback, self.stage, self.total = callback, stage, total
        self.start = self.last = time.perf_counter()
        self.reported = -1
        self(0)

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        due = force or done == 0 or done == self.total or now - self.last >= REPORT_EVERY
        if self.callback is None or not due or done == self.reported:
            return
        self.last, self.reported = now, done
        self.callback(Progress(self.stage, done, self.total, now - self.start))


@dataclass
class Persona:
    """One person ready to animate: a renderer holding their face, and what the output is composed from."""

    renderer: WarpRenderer | MouthRenderer | NeuralRenderer | RefiningRenderer | SourceVideoRenderer
    description: str  # e.g. "neural, feed-forward from 3 photos"
    canvas: Canvas | None  # the first photo, where faces go back (whole-photo output); None: the face crop alone
    avatar: Path | None = None  # the personalised .onnx behind a neural renderer, when one was written or loaded
    view: CropTransform | None = None  # face output of a renderer that works on a wider square: the crop shown

    def compose(self, face: np.ndarray) -> np.ndarray:
        """A rendered face as the output shows it: in the whole photo, cut to the face crop, or as it is."""
        if self.canvas is not None:
            return self.canvas.paste(face)
        return face if self.view is None else self.view.crop(face)


@dataclass
class Result:
    video: Path
    frames: int
    fps: float
    renderer: str
    identity: IdentityScore | None
    notices: list[str]
    avatar: Path | None  # the personalised .onnx (config.save_avatar), when asked for
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step of the work, summed over frames
    wall: float | None = None  # seconds the animation took: less than the steps' sum, as encoding runs alongside

    @property
    def seconds(self) -> float:
        return self.wall if self.wall is not None else sum(self.timings.values())


@dataclass
class Edited:
    """What `Pipeline.edit` made: the PNG, and notices about the photo (several faces, a small one)."""

    image: Path
    notices: list[str]


class _Timings(dict):
    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start

    def iterate(self, name: str, items):
        """Yield from `items`, charging the time spent producing each one to `name` (decoding, for a reader)."""
        items = iter(items)
        while True:
            with self(name):
                item = next(items, None)
            if item is None:
                return
            yield item


def _smoothing(strength: float) -> SmoothingConfig:
    """Slider 0..1 -> One-Euro cut-off at rest: 4 Hz (light) to 0.25 Hz (strong); 0.5 is the library default."""
    return SmoothingConfig(enabled=strength > 0, min_cutoff=4.0 * 16.0 ** (-strength))


class Pipeline:
    """Loads the detector once and models on demand; personalizes (with a small cache) and animates.

    Thread-safe for the app's queue: personas are cached behind a lock, and nothing else is shared between calls.
    """

    def __init__(
        self,
        weights: str | None = None,
        device: str = "auto",
        torch_model: str | None = None,
        detector: DetectorConfig | None = None,
        workdir: Path | None = None,
        cache_size: int = 4,
    ):
        # The model first: one asked for by name that cannot be loaded ends here, before the detector loads, and
        # is never replaced by the warp (a result from another renderer than the one named would mislead).
        self.model_label = weights_label(weights)
        try:
            self.model: ModelFolder | None = ModelFolder.open(resolve_weights(weights))
            self.model_problem = None
        except UserError:
            if requested(weights) is not None:
                raise
            self.model, self.model_problem = None, "the embedded weights/ folder holds no model"
        self._detector_config = detector or DetectorConfig()
        self._detectors: dict[str, list[LandmarkDetector]] = {
            self._detector_config.backend: [load_detector(self._detector_config)]
        }
        self.settings = SessionSettings(device=device)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="heads-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.torch_model = tuning.torch_model(self.model.path if self.model else None, torch_model)
        # The mouth refiner is an optional part of the folder: a damaged graph leaves the rest usable, and says so.
        try:
            self.mouth = self.model.mouth(self.settings) if self.model is not None else None
            self.mouth_problem = None if self.mouth is not None else "the model folder has no mouth graph"
        except UserError as error:
            self.mouth, self.mouth_problem = None, str(error)
        self._cache: OrderedDict[tuple, Persona] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def detector(self, backend: str | None = None) -> Iterator[LandmarkDetector]:
        """A detector for this call alone (of the pipeline's own backend, or `backend`): dlib's are not documented
        thread-safe, so concurrent requests each borrow one (a second is loaded only when two requests overlap)."""
        config = replace(self._detector_config, backend=backend or self._detector_config.backend)
        with self._lock:
            pool = self._detectors.setdefault(config.backend, [])
            detector = pool.pop() if pool else None
        detector = detector or load_detector(config)
        try:
            yield detector
        finally:
            with self._lock:
                self._detectors[config.backend].append(detector)

    def gaze_backend(self, config: AnimateConfig) -> str | None:
        """The backend that carries the driver's gaze for `config` ("mediapipe"), or None: `config.gaze` off, or
        auto where mediapipe is not installed (or does not load). Asked for by name, a missing one is an error."""
        if config.gaze == "off":
            return None
        if self._detector_config.backend == "mediapipe":
            return "mediapipe"
        if config.gaze == "auto" and importlib.util.find_spec("mediapipe") is None:
            return None
        try:
            with self.detector("mediapipe"):
                return "mediapipe"
        except DetectorUnavailable as error:
            if config.gaze == "auto":
                return None
            raise InputError(f"Gaze needs the mediapipe landmark backend: {error}") from None

    @classmethod
    def from_config(cls, config: AnimateConfig) -> Pipeline:
        return cls(config.weights, config.device, config.torch_model)

    @property
    def can_finetune(self) -> bool:
        """Fine-tuning needs torch, a PyTorch model matching the ONNX graphs, and the graphs themselves."""
        return self.model is not None and self.torch_model is not None and tuning.torch_installed()

    def status(self) -> str:
        """One line on what this installation can do, for the app's header and the CLI's log: the model goes by
        its label, since the app shows this line to every visitor."""
        if self.model is None:
            return f"Neural model: none ({self.model_problem}); the warp renderer is used."
        tune = "fine-tuning available" if self.can_finetune else "no fine-tuning (needs torch and the PyTorch model)"
        return (f"Neural model {self.model.model_id} at {self.model.resolution} px (weights: {self.model_label}); "
                f"{tune}; onnxruntime providers: {', '.join(ort.get_available_providers())}.")

    # -------------------------------------------------------------------------------------------- personalization

    def personalize(self, config: AnimateConfig, progress: ProgressCallback | None = None) -> tuple[Persona, list[str]]:
        """The person of `config` (photos or avatar file) as a Persona, and notices about how it was made."""
        notices: list[str] = []
        faces: list[SourceFace] = []
        if config.source:
            stage = _Stage(progress, "faces", len(config.source))
            with self.detector() as detector:
                faces, notices = load_faces(list(config.source), detector, config.limits, config.box)
            stage(len(faces), force=True)
        if config.avatar is not None:
            return self._from_avatar(config, faces), notices
        renderer = config.renderer
        if renderer == "auto" and config.finetune_steps:
            renderer = "neural"  # fine-tuning is asked of the neural renderer alone
        elif renderer == "auto":
            renderer, why = (self.model.default(len(faces)) if self.model is not None
                             else ("warp", "no neural model is installed"))
            notices.append(f"Renderer: {renderer}, because {why}.")
        if renderer == "neural" and self.model is None:
            notices.append(f"No neural model is installed ({self.model_problem}), so the classical warp renderer "
                           "is used.")
            renderer = "warp"
        if renderer == "mouth" and self.mouth is None:
            notices.append(f"No mouth refiner is installed ({self.mouth_problem}), so the classical warp renderer "
                           "is used.")
            renderer = "warp"
        if renderer == "neural" and config.finetune_steps and not self.can_finetune:
            raise InputError("Fine-tuning needs torch and the PyTorch model (see docs/app.md); choose Instant.")
        # the warp moves irises (also under the mouth refiner), models do not
        gaze = self.gaze_backend(config) if renderer in ("warp", "mouth") else None
        key = (tuple(f.digest for f in faces), config.box, renderer, config.finetune_steps, config.precision,
               config.output, config.max_side, config.resolution, gaze)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key], notices
        if gaze is not None and any(f.pupils is None for f in faces):
            with self.detector(gaze) as detector:
                faces = with_irises(faces, detector)
        persona = self._make(faces, renderer, config, progress)
        with self._lock:
            self._cache[key] = persona
            while len(self._cache) > self._cache_size:
                evicted = self._cache.popitem(last=False)[1].avatar
                if evicted is not None and evicted.is_relative_to(self.workdir):  # never an uploaded file
                    shutil.rmtree(evicted.parent, ignore_errors=True)
        return persona, notices

    def _make(self, faces: list[SourceFace], renderer: str, config: AnimateConfig,
              progress: ProgressCallback | None) -> Persona:
        if renderer in ("warp", "mouth"):
            return self._warp_persona(faces, config, self.mouth if renderer == "mouth" else None)
        assert self.model is not None
        source = crops(faces, self.model.resolution)
        steps = config.finetune_steps
        if not steps:
            stage = _Stage(progress, "personalizing", 1)
            engine = self.model.engine(source, config.precision, self.settings)
            stage(1)
            return self._neural_persona(engine, faces, source, f"neural, feed-forward from {len(faces)} photo(s)",
                                        config)
        stage = _Stage(progress, "fine-tuning", steps)
        assert self.torch_model is not None
        out = Path(tempfile.mkdtemp(dir=self.workdir)) / "avatar.onnx"
        bought = tuning.finetune_avatar(self.torch_model, source, steps, self.model.model_id, out,
                                        lambda done, _: stage(done))
        stage(steps, force=True)  # the held-out photo may have stopped it early
        attach_sources(out, source)
        engine = Engine.load(out, self.settings)
        description = f"neural, fine-tuned on {len(faces)} photo(s): {bought}"
        return self._neural_persona(engine, faces, source, description, config, out)

    def _neural_persona(self, engine: Engine, faces: list[SourceFace], source: Crops, description: str,
                        config: AnimateConfig, avatar: Path | None = None) -> Persona:
        """A model's persona. A refining model works over the warp's work square at the photo's own resolution and
        is shown as the warp is; any other renders at its own resolution, resized into the photo."""
        if not engine.refines:
            canvas = self._canvas(faces[0] if faces else None, engine.resolution, config)
            return Persona(NeuralRenderer(engine, source, description), description, canvas, avatar)
        if faces:
            canvas, square = self._work_square(faces, config)
            refining = RefiningRenderer(engine, square, source, canvas.face_view(engine.resolution), description)
            shown, view = self._shown(canvas, config)
            return Persona(refining, description, shown, avatar, view)
        # An avatar file without its photos: the work square is its first crop, at the model's resolution.
        whole = CropTransform(1.0, (0.0, 0.0), engine.resolution)
        refining = RefiningRenderer(engine, source, source, whole, description)
        return Persona(refining, description, None, avatar, whole if config.output == "face" else None)

    @classmethod
    def _warp_persona(cls, faces: list[SourceFace], config: AnimateConfig, mouth: OnnxModel | None = None
                      ) -> Persona:
        """The warp renderer on the first photo's work square (`_work_square`), shown as `_shown` says; with
        `mouth`, the mouth refiner corrects its mouth there, at the photo's resolution."""
        canvas, square = cls._work_square(faces, config)
        shown, view = cls._shown(canvas, config)
        if mouth is not None:
            return Persona(MouthRenderer(square, mouth), f"warp of {len(faces)} photo(s) + mouth refiner", shown,
                           view=view)
        return Persona(WarpRenderer(square), f"warp of {len(faces)} photo(s)", shown, view=view)

    @staticmethod
    def _work_square(faces: list[SourceFace], config: AnimateConfig) -> tuple[Canvas, Crops]:
        """The first photo's canvas with the warp's work square at the photo's own resolution (face output: at the
        face crop's density where that is lower, `Canvas.at_density`), and the photos cut to that square pixel for
        pixel (the others framed alike), so that nothing is resampled on the way in or out."""
        canvas = Canvas.native(faces[0].image, faces[0].points, config.max_side)
        if config.output == "face":
            canvas = canvas.at_density(faces[0].image, faces[0].points, config.resolution)
        frame, points = canvas.face()
        square = Crops(frame[None], points[None], crop_pupils(faces[:1], points[None]))
        if len(faces) > 1:  # the other photos framed alike, so that crop pixels mean the same place on the face
            rest = crops(faces[1:], canvas.transform.size, Canvas.WARP_FRAMING)
            everyone = np.concatenate([square.points, rest.points])
            square = Crops(np.concatenate([square.frames, rest.frames]), everyone, crop_pupils(faces, everyone))
        return canvas, square

    @staticmethod
    def _shown(canvas: Canvas, config: AnimateConfig) -> tuple[Canvas | None, CropTransform | None]:
        """What a work-square renderer's output is composed into: the whole photo, or (face output) the face crop
        of the square at --resolution."""
        if config.output == "face":
            return None, canvas.shown_face(config.resolution)
        return canvas, None

    @staticmethod
    def _canvas(face: SourceFace | None, resolution: int, config: AnimateConfig) -> Canvas | None:
        """Where a model's faces go back: the first photo, for whole-photo output."""
        if face is None or config.output == "face":
            return None
        return Canvas.model(face.image, face.points, face.transform(resolution), config.max_side)

    def avatar_file(self, persona: Persona, config: AnimateConfig) -> Path | None:
        """The persona's personalised .onnx, baked from its embedding the first time a feed-forward one is asked
        for; None for the warp renderer, which has no generator to save."""
        renderer = persona.renderer
        if persona.avatar is None and isinstance(renderer, NeuralRenderer) and renderer.engine.embedding is not None:
            assert self.model is not None
            out = Path(tempfile.mkdtemp(dir=self.workdir)) / "avatar.onnx"
            generator = self.model.generator(config.precision, self.settings)
            persona.avatar = bake_embedding(generator, renderer.engine.embedding, renderer.sources, out)
        return persona.avatar

    def _from_avatar(self, config: AnimateConfig, faces: list[SourceFace]) -> Persona:
        path = check_file(config.avatar, config.limits, "avatar file")
        engine = Engine.load(path, self.settings)
        source = read_sources(engine)
        if source is None:
            if not faces:
                raise InputError(f"{path.name} carries no source faces: add the photos it was made from.")
            source = crops(faces, engine.resolution)
        meta = engine.generator.metadata
        description = f"neural avatar {path.name} (T={meta.get('T', '?')}, {meta.get('steps', '?')} steps)"
        return self._neural_persona(engine, faces, source, description, config, path)

    # -------------------------------------------------------------------------------------------------- animation

    def _track(self, path: Path, cap: int, total: int | None, progress: ProgressCallback | None,
               timings: _Timings, backend: str | None = None, what: str = "driving video",
               max_side: int | None = None) -> tuple[np.ndarray, list[int], bool, np.ndarray | None]:
        """Pass 1: the driver's raw landmark track (T, 68, 2) with gaps filled, where new tracks start, whether
        the clip had frames beyond `cap` (decoding one more tells, for clips that do not state their length), and
        the iris centres (T, 2, 2) when the detector (the pipeline's own, or `backend`) saw them in every frame it
        found the face in (else None). A source video (`what`) is tracked in its frames as the output shows them
        (shrunk to `max_side`), and reports as the stage "source"."""
        stage = _Stage(progress, "landmarks" if max_side is None else "source", total)
        points: list[np.ndarray | None] = []
        pupils: list[np.ndarray | None] = []
        starts: list[int] = []
        truncated = False
        with self.detector(backend) as detector, VideoReader(path) as reader:
            tracker = FaceTracker(detector)
            frames = (reader.sample(max_frames=cap + 1) if max_side is None
                      else enumerate(source_frames(reader, max_side, cap + 1)))
            for _, frame in timings.iterate("decode", frames):
                if len(points) == cap:
                    truncated = True
                    break
                with timings("landmarks"):
                    face = tracker(frame)
                if face is not None and tracker.new_track:
                    starts.append(len(points))
                points.append(None if face is None else face.points)
                pupils.append(None if face is None else face.pupils)
                stage(len(points))
        stage(len(points), force=True)
        found = [i for i, p in enumerate(points) if p is not None]
        if not found:
            raise InputError(f"No face was found in the {what}: record or upload a clip in which one face is clearly "
                             "visible.")
        for i, p in enumerate(points):  # hold the nearest detection through frames where the face was lost
            if p is None:
                nearest = min(found, key=lambda j: abs(j - i))
                points[i], pupils[i] = points[nearest], pupils[nearest]
        irises = None if any(p is None for p in pupils) else np.stack(pupils).astype(np.float64)
        return np.stack(points).astype(np.float64), sorted(set(starts) | {0}), truncated, irises

    def _motion(self, track: np.ndarray, breaks: list[int], fps: float, source: np.ndarray,
                config: AnimateConfig, irises: np.ndarray | None = None,
                source_irises: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Smooth each continuous piece of the track, then retarget the driver's motion onto the source face: the
        targets (T, 68, 2), and their iris centres (T, 2, 2) when the driver's `irises` and the photo's are known
        (else None)."""
        smoothing = _smoothing(config.smoothing)
        pieces = _pieces(breaks, len(track))
        smooth = self._smoothed(track, breaks, fps, config)
        motion = config.motion()
        targets = retarget(smooth, source, motion)
        if irises is None or source_irises is None:
            return targets, None
        gaze = np.concatenate([smooth_irises(track[a:b], irises[a:b], smooth[a:b], fps, smoothing) for a, b in pieces])
        return targets, retarget_irises(smooth, gaze, source, source_irises, targets, motion)

    @staticmethod
    def _smoothed(track: np.ndarray, breaks: list[int], fps: float, config: AnimateConfig) -> np.ndarray:
        """The driver's track (T, 68, 2) smoothed piece by piece: never across a break, where a new track starts."""
        smoothing = _smoothing(config.smoothing)
        pieces = _pieces(breaks, len(track))
        return np.concatenate([smooth_landmarks(track[a:b], fps, smoothing) for a, b in pieces]).astype(np.float64)

    def animate(self, persona: Persona, config: AnimateConfig, progress: ProgressCallback | None = None,
                notices: list[str] | None = None) -> Result:
        """Render `persona` with the motion of `config.driving` into `config.out`."""
        notices = list(notices or [])
        timings = _Timings()
        start = time.perf_counter()
        driving = Path(config.driving)
        info, cap, cut = driving_info(driving, config.limits)
        notices += cut
        total = min(cap, info.frames) if info.frames else None
        renderer = persona.renderer
        # The driver's gaze is tracked only for a renderer that can move the photo's irises (the warp, where the
        # photo's irises were found): a model's landmarks stay those of the pipeline's own detector.
        gaze = self.gaze_backend(config) if getattr(renderer, "moves_irises", False) else None
        try:
            track, breaks, truncated, irises = self._track(driving, cap, total, progress, timings, gaze)
            if truncated and not cut:  # a clip that did not say how long it was
                notices.append(cut_notice(cap, info.fps))
            with timings("motion"):
                own = renderer.sources.pupils[0] if gaze is not None else None
                targets, target_irises = self._motion(track, breaks, info.fps, renderer.sources.points[0], config,
                                                      irises, own)
            result = self._render(persona, config, driving, info.fps, targets, progress, timings, notices,
                                  target_irises)
            result.wall = time.perf_counter() - start
            return result
        except VideoError as error:
            raise InputError(f"The driving video could not be decoded to the end: {error}") from None

    def _render(self, persona: Persona, config: AnimateConfig, driving: Path, fps: float, targets: np.ndarray,
                progress: ProgressCallback | None, timings: _Timings, notices: list[str],
                irises: np.ndarray | None = None, audio: Path | None = None) -> Result:
        """Pass 2: decode again, render in batches, compose, encode; the audio is copied from the driving clip (or
        from `audio`). `irises` (T, 2, 2), the targets' iris centres, go to a renderer that moves irises. The
        side-by-side view holds the driving clip's last frame where it is shorter than the targets (a source video)."""
        renderer, out = persona.renderer, Path(config.out)
        count = len(targets)
        if config.output == "photo" and persona.canvas is None and config.source_video is None:
            notices.append("Whole-photo output needs the source photo: the face crop is shown instead.")
        meter = None
        scored = set()
        if config.identity_score:
            with timings("identity"):
                meter = IdentityMeter(renderer.sources.frames[0], renderer.sources.points[0])
            scored = set(np.linspace(0, count - 1, min(IDENTITY_FRAMES, count)).round().astype(int).tolist())
        stage = _Stage(progress, "rendering", count)
        done = 0
        with VideoReader(driving) as reader, \
                VideoWriter(out, fps, audio_from=audio or driving, watermark=WATERMARK) as writer, \
                _Encoder(writer, timings) as encoder:
            # Only the side-by-side view shows the driving frames: otherwise pass 2 need not decode them again.
            frames = (_held(timings.iterate("decode", (f for _, f in reader.sample(max_frames=count))), count)
                      if config.side_by_side else repeat(None, count))
            for batch in _batches(frames, config.batch):
                points = targets[done : done + len(batch)]
                with timings("render"):
                    if irises is None:
                        faces = renderer.render(points)
                    else:
                        faces = renderer.render(points, irises[done : done + len(batch)])
                for k, (frame, face, target) in enumerate(zip(batch, faces, points, strict=True)):
                    if meter is not None and done + k in scored:
                        with timings("identity"):
                            meter.add(face, target)
                    with timings("compose"):
                        image = persona.compose(face)
                        if config.side_by_side:
                            image = side_by_side(frame, draw_landmarks(target, renderer.resolution), image)
                        if config.watermark:
                            image = watermark(image)
                    encoder.put(image)
                done += len(batch)
                stage(done)
            encoder.finish()
        stage(done, force=True)
        with timings("encode"):
            unsigned = tag_synthetic(out)
        if unsigned is not None:
            notices.append(unsigned)
        avatar = None
        if config.save_avatar:
            made = self.avatar_file(persona, config)
            if made is None:  # the warp has no generator to save; auto may pick it, and then says nothing of it
                if config.renderer != "auto":
                    notices.append("No avatar file was written: the warp renderer has no generator to save.")
            else:
                avatar = Path(config.save_avatar)
                avatar.parent.mkdir(parents=True, exist_ok=True)
                if avatar.resolve() != made.resolve():
                    shutil.copyfile(made, avatar)
        return Result(out, done, fps, persona.description, meter.score() if meter else None, notices, avatar,
                      dict(timings))

    # ---------------------------------------------------------------------------------------------- still editing

    def edit(self, config: EditConfig) -> Edited:
        """One photo with the expression of one driving frame (or none) and the retargeting controls: the whole
        photo, edited by the warp at its own resolution, written to `config.out` as a PNG tagged synthetic. The
        photo's persona is cached as an animation's is, so moving a slider and editing again costs one warp."""
        personal = config.personalization()
        persona, notices = self.personalize(personal)
        renderer = persona.renderer
        gaze = self.gaze_backend(personal) if renderer.moves_irises else None
        frame = irises = None
        if config.driving:
            frame, irises = self._frame_face(Path(config.driving), config.limits, gaze)
        own = renderer.sources.pupils[0] if gaze is not None else None
        points, moved = retarget_still(renderer.sources.points[0], config, frame, own, irises)
        face = renderer.render(points[None], None if moved is None else moved[None])[0]
        image = persona.compose(face)
        if config.watermark:
            image = watermark(image)
        path, unsigned = save_still(Path(config.out), image)
        return Edited(path, notices + [unsigned] * (unsigned is not None))

    def _frame_face(self, path: Path, limits: LimitsConfig, backend: str | None) -> tuple[np.ndarray,
                                                                                           np.ndarray | None]:
        """The largest face in a driving image, or in a driving video's first frame: its landmarks (68, 2) by the
        pipeline's own detector (or `backend`, the gaze's), and its iris centres (2, 2) where that one sees both."""
        path = check_file(path, limits, "driving image or video")
        try:
            image = load_image(path)
        except ImageError:
            try:
                with VideoReader(path) as reader:
                    image = next(iter(reader))
            except (VideoError, StopIteration):
                raise InputError(f"{path.name} cannot be read as an image or a video: use a photo (JPEG, PNG, WebP) "
                                 "or a clip (mp4, mov, webm), whose first frame is used.") from None
        with self.detector(backend) as detector:
            faces = detector.detect(image)
        if not faces:
            raise InputError(f"No face was found in the driving frame ({path.name}): use an image, or a clip whose "
                             "first frame, shows one face clearly.")
        pupils = faces[0].pupils
        if pupils is not None and not np.isfinite(pupils).all():
            pupils = None
        return faces[0].points.astype(np.float64), None if pupils is None else pupils.astype(np.float64)

    # --------------------------------------------------------------------------------------------- video-to-video

    def animate_video(self, config: AnimateConfig, progress: ProgressCallback | None = None) -> Result:
        """Video-to-video (`config.source_video`): the source video's frames, each with the driver's expression at
        the same time (`faces.motion.retarget_video`, by the warp), into `config.out`. The result has the source's
        length (up to the limits) and frame rate, and its audio (`config.audio`: or the driving clip's). A driving
        clip longer than the source is cut to it; after a shorter one ends, the source plays on as it was."""
        notices: list[str] = []
        timings = _Timings()
        start = time.perf_counter()
        source, driving = Path(config.source_video or ""), Path(config.driving)
        info, cap, cut = driving_info(source, config.limits, "source video")
        drive, drive_cap, _ = driving_info(driving, config.limits)  # both checked before any work
        notices += cut
        try:
            total = min(cap, info.frames) if info.frames else None
            points, _, truncated, _ = self._track(source, cap, total, progress, timings, what="source video",
                                                  max_side=config.max_side)
            if truncated and not cut:
                notices.append(cut_notice(cap, info.fps, "source video"))
            count = len(points)
            wanted = min(drive_cap, math.ceil(count * drive.fps / info.fps) + 1)  # the driver over the source's time
            track, breaks, _, _ = self._track(driving, wanted, min(wanted, drive.frames or wanted), progress,
                                              timings)
            with timings("motion"):
                driver = at_times(self._smoothed(track, breaks, drive.fps, config), drive.fps, info.fps, count)
                targets = retarget_video(driver, points, config.motion(), fade=round(FADE_SECONDS * info.fps))
            if len(driver) < count:
                notices.append(f"The driving video is shorter than the source video: its expression ends at "
                               f"{len(driver) / info.fps:.1f} s, and the source plays on as it was.")
            audio, sound = (source, info) if config.audio == "source" else (driving, drive)
            if not sound.has_audio:
                notices.append(f"The {'source' if config.audio == 'source' else 'driving'} video has no audio "
                               "track, so the result is silent.")
            with SourceVideoRenderer(source, points, config.max_side) as renderer:
                persona = Persona(renderer, f"warp of the source video ({count} frames)", None)
                result = self._render(persona, config, driving, info.fps, targets, progress, timings, notices,
                                      audio=audio)
        except VideoError as error:
            raise InputError(f"A video could not be decoded to the end: {error}") from None
        result.wall = time.perf_counter() - start
        return result

    def run(self, config: AnimateConfig, progress: ProgressCallback | None = None) -> Result:
        """Personalize, then animate: everything `heads animate` and the app's button do (video-to-video, where the
        source is a video: `animate_video`)."""
        if config.source_video is not None:
            return self.animate_video(config, progress)
        driving_info(config.driving, config.limits)  # a bad clip fails now, not after minutes of fine-tuning
        persona, notices = self.personalize(config, progress)
        return self.animate(persona, config, progress, notices)


class _Encoder:
    """Encodes frames on a thread of its own while the next batch renders: H.264 and the YUV conversion take
    10–15 ms a frame at 720², the warp about as much, and on two cores they overlap. At most `ahead` frames wait,
    so memory stays flat; an encoding error surfaces at the next `put` or at `finish`."""

    def __init__(self, writer: VideoWriter, timings: _Timings, ahead: int = 16):
        self.writer, self.timings, self.ahead = writer, timings, ahead
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="encode")
        self._pending: deque[concurrent.futures.Future] = deque()

    def _write(self, image: np.ndarray) -> None:
        with self.timings("encode"):
            self.writer.write(image)

    def put(self, image: np.ndarray) -> None:
        self._pending.append(self._pool.submit(self._write, image))
        while len(self._pending) > self.ahead or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()

    def finish(self) -> None:
        """Wait for every frame to be written (before the writer closes)."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(self, *exc) -> None:
        for future in self._pending:  # on an error elsewhere: drop what has not started
            future.cancel()
        self._pool.shutdown(wait=True)


def _pieces(breaks: list[int], length: int) -> list[tuple[int, int]]:
    """The continuous pieces [a, b) of a track of `length` frames that starts new tracks at `breaks`."""
    edges = [*breaks, length]
    return list(zip(edges, edges[1:], strict=False))


def _held(items, count: int) -> Iterator:
    """`count` items: those of `items`, then its last one repeated (None if it had none)."""
    last = None
    for last in items:
        if count == 0:
            return
        count -= 1
        yield last
    yield from repeat(last, count)


def _batches(items, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
