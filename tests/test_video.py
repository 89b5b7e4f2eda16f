"""Video I/O: streaming decode, rotation, resampling, H.264 + AAC encoding, and clear errors for bad files."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from faces.video import VideoError, VideoReader, VideoWriter, probe, read_frames

CLIP = "DPE/data/s.mp4"  # 256x256, 25 fps, 228 frames, no audio
CLIP_WITH_AUDIO = "LivePortrait/assets/examples/driving/d10.mp4"  # 512x512, 30 fps, AAC


def _pattern(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A frame with a bright top-left block (shows orientation) and a grey level that encodes i."""
    frame = np.full((h, w, 3), 40 + 6 * (i % 30), np.uint8)
    frame[: h // 3, : w // 3] = (250, 30, 30)
    return frame


def _write_raw(path: Path, frames: int, fps: int = 25, rotation: int = 0) -> None:
    """A small H.264 file written with PyAV directly, optionally with a display-matrix rotation."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_pattern(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, fps=25) as writer:
        for i in range(20):
            writer.write(_pattern(i, 47, 63))  # odd sizes are padded to even
    info = probe(path)
    assert (info.width, info.height, info.fps, info.frames, info.codec) == (64, 48, 25.0, 20, "h264")
    assert not info.has_audio
    frames = list(read_frames(path))
    assert len(frames) == 20 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert abs(int(frames[5][40, 50, 0]) - (40 + 6 * 5)) < 6  # the grey level survived compression
    assert frames[0][5, 5, 0] > 200 and frames[0][5, 5, 1] < 80  # red block top-left
    with av.open(str(path)) as container:  # browser-playable: yuv420p, moov atom before the media data
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_rotation_metadata_gives_upright_frames(tmp_path):
    path = tmp_path / "rotated.mp4"
    _write_raw(path, 5, rotation=90)  # displayed turned 90° counter-clockwise
    reader = VideoReader(path)
    assert reader.info.rotation == 90 and (reader.info.width, reader.info.height) == (48, 64)
    first = next(iter(reader))
    reader.close()
    assert first.shape == (64, 48, 3)
    assert first[-5, 5, 0] > 200  # the top-left block is now bottom-left


def test_fps_resampling_and_cap(tmp_path):
    path = tmp_path / "30fps.mp4"
    _write_raw(path, 30, fps=30)
    with VideoReader(path) as reader:
        pairs = list(reader.sample(fps=15))
    assert len(pairs) == 15 and [i for i, _ in pairs][:4] == [0, 2, 4, 6]
    assert len(list(read_frames(path, max_frames=7))) == 7
    with VideoReader(path) as reader:  # asking for more than the source has keeps every frame
        assert len(list(reader.sample(fps=60))) == 30


@pytest.mark.media
def test_streams_a_real_clip(media):
    info = probe(media / CLIP)
    assert (info.width, info.height, info.frames) == (256, 256, 228)
    count = 0
    for frame in read_frames(media / CLIP, threads=1):
        assert frame.shape == (256, 256, 3)
        count += 1
    assert count == 228


@pytest.mark.media
def test_audio_is_carried_over(media, tmp_path):
    path = tmp_path / "with_audio.mp4"
    with VideoWriter(path, fps=30, audio_from=media / CLIP_WITH_AUDIO, audio_offset=1.0) as writer:
        for frame in read_frames(media / CLIP_WITH_AUDIO, max_frames=45):
            writer.write(frame)
    info = probe(path)
    assert info.has_audio and info.frames == 45
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        seconds = float(audio.duration * audio.time_base)
    assert abs(seconds - 1.5) < 0.1  # cut to the video's length


def test_silent_audio_source_makes_a_silent_video(tmp_path):
    source, path = tmp_path / "silent.mp4", tmp_path / "out.mp4"
    _write_raw(source, 3)
    with VideoWriter(path, fps=25, audio_from=source) as writer:
        writer.write(_pattern(0))
    assert not probe(path).has_audio


def test_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError), VideoWriter(path, fps=25) as writer:
        writer.write(_pattern(0))
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="differs"), VideoWriter(path, fps=25) as writer:
        writer.write(_pattern(0))
        writer.write(_pattern(0, 32, 32))
    assert list(tmp_path.iterdir()) == []


def _expect_error(path: Path, match: str) -> None:
    start = time.perf_counter()
    with pytest.raises(VideoError, match=match) as error:
        list(read_frames(path))
    assert path.name in str(error.value)
    assert time.perf_counter() - start < 10  # an error, never a hang


@pytest.mark.media
def test_truncated_clip(media, tmp_path):
    data = (media / CLIP).read_bytes()
    half, head = tmp_path / "half.mp4", tmp_path / "head.mp4"
    half.write_bytes(data[: len(data) // 2])  # moov intact, media data cut
    head.write_bytes(data[:2000])  # moov itself cut
    _expect_error(half, "truncated|damaged")
    _expect_error(head, "not a readable video")


def test_text_empty_and_missing_files(tmp_path):
    text, empty = tmp_path / "notes.mp4", tmp_path / "empty.mp4"
    text.write_text("this is not a video\n" * 10)
    empty.write_bytes(b"")
    _expect_error(text, "not a readable video")
    _expect_error(empty, "empty")
    _expect_error(tmp_path / "missing.mp4", "no such file")


def test_audio_only_file(tmp_path):
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        t = np.arange(16000) / 16000
        frame = av.AudioFrame.from_ndarray(
            (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    _expect_error(path, "no video stream")
