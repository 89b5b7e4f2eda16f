"""demo.live: a camera's frames driving a portrait one by one. On a real clip the result follows the driver (its
mouth opens when the driver's does, measured with landmarks on the rendered frames) and the first frame gives the
photo back; the session starts over after a pause and shows the last frame while no face is in view; a camera
faster than the renderer has its frames dropped, never queued. Speeds are measured by `heads bench live`, not here.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from demo.compose import shrink
from demo.live import LatestFrame, LiveConfig, LiveFrame, LiveSession, lend, page_image
from demo.pipeline import Persona, Pipeline
from demo.renderers import WarpRenderer
from export_onnx.bench_live import run_live
from faces.bench_warp import synthetic_face
from faces.config import DetectorConfig
from faces.detect import Face, LandmarkDetector, box_of, load_detector
from faces.image_io import load_image
from faces.motion import mouth_opening
from faces.source_faces import Crops
from faces.video import VideoReader
from faces.watermark import WATERMARK

PHOTO = "LivePortrait/assets/examples/driving/d30.jpg"  # the mouth closed: an opening is the driver's
CLIP = "LivePortrait/assets/examples/driving/d18.mp4"  # a still head, the mouth closed and then opening wide


class _Scripted(LandmarkDetector):
    """A detector that 'finds' the landmarks the test put in the frame's first pixel row (or none)."""

    name = "scripted"

    def __init__(self, faces: dict[int, np.ndarray]):
        super().__init__(DetectorConfig())
        self.faces = faces

    def _face(self, image: np.ndarray) -> list[Face]:
        points = self.faces.get(int(image[0, 0, 0]))
        return [] if points is None else [Face(points.astype(np.float32), box_of(points), 1.0)]

    def detect(self, image: np.ndarray) -> list[Face]:
        return self._face(image)

    def fit(self, image: np.ndarray, box) -> Face | None:
        found = self._face(image)
        return found[0] if found else None


def _synthetic_session(faces: dict[int, np.ndarray], config: LiveConfig | None = None) -> LiveSession:
    size = 128
    texture = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    persona = Persona(WarpRenderer(Crops(texture[None], synthetic_face(size)[None].astype(np.float64))), "warp", None)
    config = config or LiveConfig(source=("photo.jpg",), watermark=False, smoothing=0.0)
    return LiveSession(persona, config, lend(_Scripted(faces)))


def _frame(code: int) -> np.ndarray:
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[0, 0, 0] = code
    return frame


def test_first_frame_gives_the_photo_back_and_a_pause_starts_over():
    size = 128
    still, opened = synthetic_face(size), synthetic_face(size, mouth=1.0)
    session = _synthetic_session({1: still, 2: opened, 3: opened + 5.0})
    photo = session.persona.renderer.sources.frames[0]
    first = session.step(_frame(1), t=0.0)
    # The reference maps onto the photo exactly (and every shown frame carries the invisible mark).
    assert first.found and np.array_equal(first.image, WATERMARK.embed(photo))
    assert set(first.seconds) == {"landmarks", "motion", "render", "compose"}
    moved = session.step(_frame(2), t=0.1)
    assert moved.found and np.abs(moved.image.astype(int) - photo).mean() > 1  # the mouth opened
    lost = session.step(_frame(0), t=0.2)  # no face: the last frame again
    assert not lost.found and lost.image is moved.image
    # After a pause, the next face is the reference, whatever it shows: the photo again.
    again = session.step(_frame(3), t=5.0)
    assert again.found and np.array_equal(again.image, WATERMARK.embed(photo))
    assert np.allclose(session.reference, opened + 5.0)


def test_latest_frame_keeps_only_the_newest():
    box = LatestFrame()
    for k in range(3):
        box.put(k, float(k))
    assert box.take() == (2, 2.0) and box.dropped == 2
    box.put(3, 3.0)
    box.close()
    assert box.take() == (3, 3.0) and box.take() is None


class _Slow:
    """A session that takes `seconds` a frame."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.seen: list[np.ndarray] = []

    def step(self, frame, t):
        time.sleep(self.seconds)
        self.seen.append(frame)
        return LiveFrame(frame, True, {"render": self.seconds})


def test_a_slow_renderer_drops_frames_and_does_not_fall_behind():
    """A 30 frames/s camera and a renderer of 10 frames/s: about two frames in three are dropped, and the delay of
    the last frames is no longer than that of the first (it would grow by 67 ms a frame with a queue)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, "JPEG")
    session = _Slow(0.1)
    result = run_live(session, [buffer.getvalue()], fps=30.0, seconds=1.5)
    assert result["frames_shown"] + result["frames_dropped"] == result["frames_offered"] == 45
    assert result["frames_shown"] <= 20 and result["frames_dropped"] >= 25
    assert result["latency_ms"]["max"] < 600  # a queue would reach 1.5 s - 0.1 s x 15 shown + ... ≈ 1 s


@pytest.mark.slow
@pytest.mark.media
def test_live_session_follows_the_driver_on_a_real_clip(media):
    """d18 drives d30 live: the first frame gives the photo back, and the rendered mouth (dlib landmarks on the
    rendered frames) opens and closes with the driver's."""
    pipeline = Pipeline(device="cpu")
    config = LiveConfig(source=(str(media / PHOTO),), renderer="warp", watermark=False)
    persona, _ = pipeline.personalize(config.personalization())
    session = LiveSession(persona, config, pipeline.detector)
    detector = load_detector()
    photo, _ = shrink(load_image(media / PHOTO), config.max_side)
    driver, result = [], []
    with VideoReader(media / CLIP) as reader:
        fps = reader.info.fps
        for i, frame in enumerate(reader):
            if i == 150:
                break
            shown = session.step(frame, t=i / fps)
            assert shown.found, i
            if i == 0:
                assert shown.image.shape == photo.shape
                assert np.abs(shown.image.astype(int) - WATERMARK.embed(photo)).mean() < 1.0  # the photo, to rounding
                assert WATERMARK.read(shown.image) == WATERMARK.config.payload  # marked, as every output is
            if i % 5 == 0:
                driver.append(mouth_opening(detector.detect(frame)[0].points))
                result.append(mouth_opening(detector.detect(shown.image)[0].points))
    driver, result = np.array(driver), np.array(result)
    assert driver.max() - driver.min() > 0.2  # the clip's mouth does open
    assert np.corrcoef(driver, result)[0, 1] > 0.8
    opened = driver > driver.min() + 0.5 * (driver.max() - driver.min())
    assert result[opened].mean() > result[~opened].mean() + 0.1


def test_the_browser_bench_reads_latency_and_frame_rate_off_the_page_records():
    """`heads bench live-browser`'s analysis on records made up with a known answer: a preview at 25 frames/s
    switching state every 1.6 s, and rendered frames every 80 ms showing the state of 200 ms before (thumbnails of
    two distinct images, with noise). The latency found lies between 200 ms and 200 + one frame interval; the frame
    rate is 12.5."""
    from heads.bench_live_browser import analyse

    rng = np.random.default_rng(0)
    closed, opened = rng.uniform(0, 255, (2, 64 * 64))

    def state(t: float) -> int:
        return int(t // 1600) % 2

    camera = [[t, state(t)] for t in np.arange(0.0, 16000.0, 40.0)]
    shown = [[t, ((opened if state(t - 200) else closed) + rng.normal(0, 5, 64 * 64)).tolist()]
             for t in np.arange(230.0, 16000.0, 80.0)]
    result = analyse(camera, shown)
    assert result["switches"] == 9 and result["switches_measured"] == 9
    assert result["latency_ms"]["min"] >= 200 and result["latency_ms"]["max"] <= 280, result["latency_ms"]
    assert result["frames_per_second"] == pytest.approx(12.5, abs=0.01)
    assert result["camera_fps"] == pytest.approx(25, abs=0.1)


def test_a_frame_goes_to_the_page_as_a_jpeg_data_url():
    """The Live tab's result travels inside the event's message (`page_image`), not as a file the page fetches: a
    data: URL the browser decodes to the frame, to JPEG's rounding, the colours in RGB order."""
    import base64

    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32] = (200, 30, 30)  # red on the left, blue on the right: flat blocks that JPEG keeps
    frame[:, 32:] = (30, 30, 200)
    url = page_image(frame)
    assert url.startswith("data:image/jpeg;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)
    assert back.shape == frame.shape
    assert np.abs(back[8:40, 4:28] - (200, 30, 30)).mean() < 12
    assert np.abs(back[8:40, 36:60] - (30, 30, 200)).mean() < 12
