"""Video-to-video (a source video, `AnimateConfig.source_video`): the result keeps the source video's length, frame
rate, head motion and (by choice) audio, and its mouth follows the driver's, measured with landmarks found in the
result; inputs that cannot work fail with a sentence. On real clips of ../shared/media, plus the motion on its own."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from base.errors import ConfigError, InputError
from demo.animate_config import AnimateConfig
from demo.compose import shrink
from faces.config import LimitsConfig
from faces.motion import MotionConfig, mouth_opening, retarget_video
from faces.track import FaceTracker
from faces.video import VideoWriter, probe, read_frames

EXAMPLES = "LivePortrait/assets/examples"
SOURCE = f"{EXAMPLES}/source/s18.mp4"  # a woman, 1280x720 at 30 fps, swaying, mouth closed; with speech audio
DRIVER = f"{EXAMPLES}/driving/d18.mp4"  # a man, 480 px at 30 fps, head still, wide mouth openings; silent audio
TALKER = "SadTalker/examples/ref_video/WDA_KatieHill_000.mp4"  # a woman talking, 512 px at 25 fps, with speech
SIDE = 640  # output long side: the source at a half of its size keeps each test within seconds



def _track(detector, path: Path, side: int = 4096, frames: int | None = None) -> np.ndarray:
    """Landmarks (T, 68, 2) of every frame (shrunk to `side`), found independently of the pipeline; a frame where the
    face is not found holds the previous one's."""
    tracker, points = FaceTracker(detector), []
    for frame in read_frames(path, max_frames=frames):
        face = tracker(shrink(frame, side)[0])
        points.append(face.points if face is not None else points[-1])
    return np.stack(points).astype(np.float64)


def _envelope(path: Path, rate: int = 16000, hop: int = 320) -> np.ndarray:
    """The audio's loudness per 20 ms (mono RMS): compares tracks whatever AAC re-encoding did to their samples."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        samples = np.concatenate([f.to_ndarray().ravel() for frame in container.decode(audio=0)
                                  for f in resampler.resample(frame)]).astype(np.float64)
    count = len(samples) // hop
    return np.sqrt((samples[: count * hop].reshape(count, hop) ** 2).mean(1))


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def _clip(path: Path, out: Path, frames: int, side: int) -> Path:
    """The first `frames` frames of a clip at `side` px, with its audio (cut to their length)."""
    with VideoWriter(out, probe(path).fps, audio_from=path) as writer:
        for frame in read_frames(path, max_frames=frames):
            writer.write(shrink(frame, side)[0])
    return out


@pytest.mark.media
@pytest.mark.slow
def test_a_source_video_keeps_its_head_motion_and_audio_and_takes_the_drivers_mouth(warp_pipeline, detector, media,
                                                                                     tmp_path):
    frames = 84  # the driver's mouth opens wide at 2.1 s and is open to the end, 2.8 s
    config = AnimateConfig(driving=str(media / DRIVER), source=(str(media / SOURCE),), out=str(tmp_path / "v2v.mp4"),
                           max_side=SIDE, identity_score=False, limits=LimitsConfig(max_frames=frames),
                           progress=False)
    assert config.source_video == str(media / SOURCE)
    result = warp_pipeline.run(config)
    info = probe(result.video)
    assert result.frames == info.frames == frames and info.fps == pytest.approx(30.0)
    assert (info.width, info.height) == (SIDE, 360)  # the whole frame, shrunk to max_side
    assert any("source video is longer" in n for n in result.notices)
    # The source's audio (speech), not the driver's (silence).
    assert info.has_audio and _similar(_envelope(result.video), _envelope(media / SOURCE)) > 0.9

    out, source = _track(detector, result.video), _track(detector, media / SOURCE, SIDE, frames)
    driver = _track(detector, media / DRIVER, frames=frames)
    assert np.ptp(mouth_opening(driver)) > 0.3 and np.ptp(mouth_opening(source)) < 0.1
    assert _similar(mouth_opening(out), mouth_opening(driver)) > 0.8  # the driver's mouth ...
    interocular = np.linalg.norm(source[:, 36:42].mean(1) - source[:, 42:48].mean(1), axis=1).mean()
    nose = np.linalg.norm(out[:, 30] - source[:, 30], axis=1) / interocular
    assert nose.mean() < 0.05 and nose.max() < 0.15  # ... on the source's head, where the source's head is
    assert np.ptp(source[:, 30, 0]) > 0.2 * interocular and _similar(out[:, 30, 0], source[:, 30, 0]) > 0.9


@pytest.mark.media
@pytest.mark.slow
def test_heads_animate_with_a_source_video_and_the_drivers_audio(detector, media, tmp_path, capsys):
    """On the command line, with a source video of its own length (not cut by a limit), a driver at another frame
    rate and shorter than it, and the driver's audio: the result has the source's length and rate, the driver's
    audio (for as long as it lasts), and once the driver ends, the source's own frames back."""
    from heads.cli import main

    source = _clip(media / SOURCE, tmp_path / "source.mp4", 40, SIDE)  # 1.33 s at 30 fps
    driver = _clip(media / TALKER, tmp_path / "driver.mp4", 15, 512)  # 0.6 s at 25 fps
    out = tmp_path / "out.mp4"
    main(["animate", "--source", str(source), "--driving", str(driver), "--audio", "driver", "--out", str(out),
          "--no-identity-score", "--no-progress", "--no-watermark"])
    printed = capsys.readouterr().out
    assert f"wrote {out}: 40 frames at 30 fps" in printed and "driving video is shorter" in printed
    info = probe(out)
    assert info.frames == probe(source).frames == 40 and info.fps == pytest.approx(30.0) and info.has_audio
    heard = _envelope(out)
    assert len(heard) * 0.02 == pytest.approx(0.6, abs=0.1)  # the driver's audio, as long as the driver
    assert _similar(heard, _envelope(driver)) > 0.9 and _similar(heard, _envelope(source)) < 0.5
    # After the driver's end (and its expression's fade) the source plays on as it was: its face where it was (the
    # pixels themselves differ a little everywhere: re-encoding, and the invisible watermark).
    last, own = (detector.detect(list(read_frames(path))[-1])[0].points for path in (out, source))
    assert np.linalg.norm(last - own, axis=1).mean() < 1.0


@pytest.mark.media
def test_a_source_video_that_cannot_work_is_refused_clearly(warp_pipeline, media, tmp_path):
    def run(source: Path, **changes) -> None:
        warp_pipeline.run(AnimateConfig(driving=str(media / DRIVER), source=(str(source),), out=str(tmp_path / "o.mp4"),
                                   identity_score=False, progress=False, **changes))

    noise = tmp_path / "noise.mp4"
    with VideoWriter(noise, 25) as writer:
        for value in np.random.default_rng(0).integers(0, 255, (8, 64, 96, 3), dtype=np.uint8):
            writer.write(value)
    with pytest.raises(InputError, match="No face was found in the source video"):
        run(noise)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    with pytest.raises(InputError, match="source video broken.mp4 cannot be read as a video"):
        run(broken)
    with pytest.raises(InputError, match="source video is 1280x720; this server takes clips up to 640 px"):
        run(media / SOURCE, limits=LimitsConfig(max_video_side=640))


def test_options_that_need_photos_are_refused_with_a_source_video():
    base = {"driving": "d.mp4", "source": ("me.mov",)}
    assert AnimateConfig(**base).source_video == "me.mov" and AnimateConfig("d.mp4", ("me.jpg",)).source_video is None
    with pytest.raises(ConfigError, match="one video, or photos only"):
        AnimateConfig("d.mp4", ("me.mp4", "me.jpg"))
    with pytest.raises(ConfigError, match="renderer neural, finetune_steps, output face cannot be used"):
        AnimateConfig(**base, renderer="neural", finetune_steps=10, output="face")
    with pytest.raises(ConfigError, match="avatar"):
        AnimateConfig(**base, avatar="me.onnx")


def _face() -> np.ndarray:
    from faces.motion import MEAN_FACE_3D

    return MEAN_FACE_3D[:, :2] * 2.0 + 200.0


def test_retarget_video_moves_expression_alone_and_fades_after_the_driver():
    face, rng = _face(), np.random.default_rng(1)
    sources = face + rng.normal(0, 3, (12, 1, 2))  # a head that moves about
    angle = np.radians(10)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    driver = np.stack([face, (face - 200) @ turn.T * 1.2 + 230])  # the driver's head turns, zooms and moves only
    config = MotionConfig(reference="first")
    assert np.allclose(retarget_video(driver, sources, config), sources)  # no expression: the source as it is
    talking = driver.copy()
    talking[1, 57] += (0.0, 10.0)  # the driver's lower lip drops 10 px, in a head zoomed 1.2x
    targets = retarget_video(talking, sources, config, fade=4)
    moved = np.linalg.norm(targets - sources, axis=-1)
    assert moved[0].max() < 1e-9 and moved[1, 57] == pytest.approx(10.0 / 1.2, rel=0.05)
    assert np.delete(moved[1], 57).max() < 1e-6  # nothing else moves: no head motion reaches the source
    assert moved[2:6, 57] == pytest.approx(moved[1, 57] * np.array([0.75, 0.5, 0.25, 0.0]), rel=1e-6)
    assert moved[6:].max() < 1e-9  # after the fade, the source's own face
    with pytest.raises(ValueError, match="relative"):
        retarget_video(driver, sources, MotionConfig(mode="absolute"))


@pytest.mark.media
@pytest.mark.slow
def test_the_apps_animate_handler_takes_a_source_video(warp_pipeline, media, tmp_path, monkeypatch):
    """The Animate tab's handler (and so /animate) with one video as `source` and `audio` as its keyword: the
    source's length and audio come back, with no notice of a missing photo."""
    import importlib
    import sys

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root))
    sys.modules.pop("app", None)
    app = importlib.import_module("app")
    monkeypatch.setattr(app, "OUTPUTS", tmp_path)
    source = _clip(media / SOURCE, tmp_path / "me.mp4", 24, 480)
    video, notes, avatar = app.Animator(warp_pipeline, LimitsConfig())(str(media / DRIVER), source=[str(source)],
                                                                  watermark=False, audio="source")
    info = probe(video)
    assert info.frames == 24 and info.has_audio and avatar is None
    assert "**24 frames** at 30 fps · warp of the source video" in notes and "Whole-photo" not in notes
    assert _similar(_envelope(Path(video)), _envelope(source)) > 0.9
