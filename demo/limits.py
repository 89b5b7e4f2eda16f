"""Checks of the driving clip (and of a source video, for video-to-video) against `LimitsConfig`, each failing with a
sentence the person uploading can act on (the source photos are checked in `faces.source_faces`)."""

from __future__ import annotations

import math
from pathlib import Path

from base.errors import InputError
from faces.config import LimitsConfig
from faces.source_faces import check_file
from faces.video import VideoError, VideoInfo, probe


def driving_info(path: str | Path, limits: LimitsConfig, what: str = "driving video") -> tuple[VideoInfo, int,
                                                                                               list[str]]:
    """Probe the driving clip (or the clip named by `what`, e.g. "source video"): its info, the most frames to
    animate, and notices about a cut."""
    path = check_file(path, limits, what)
    try:
        info = probe(path)
    except VideoError as error:
        raise InputError(
            f"The {what} {path.name} cannot be read as a video ({_reason(error)}). Upload an mp4, mov or webm clip"
            f"{', or record one with the webcam' if what == 'driving video' else ''}."
        ) from None
    if max(info.width, info.height) > limits.max_video_side:
        raise InputError(
            f"The {what} is {info.width}x{info.height}; this server takes clips up to {limits.max_video_side} px on "
            "the long side. Export it at a lower resolution (720p is plenty: only the face is used)."
        )
    # Always capped: a webcam recording may not state its duration at all.
    cap = max(1, math.floor(limits.max_seconds * info.fps))
    if limits.max_frames is not None:
        cap = min(cap, limits.max_frames)
    known = info.frames or math.floor(info.duration * info.fps)  # 0 when the file does not say
    return info, cap, [cut_notice(cap, info.fps, what)] if known > cap else []


def cut_notice(cap: int, fps: float, what: str = "driving video") -> str:
    """Said when the clip has more frames than `cap`, the most a request may animate."""
    return (f"The {what} is longer than this server animates: only its first {cap / fps:.1f} s ({cap} frames) "
            "are used.")


def _reason(error: Exception) -> str:
    """The part of a VideoError after the file name, which the message names already."""
    text = str(error)
    return text.split(": ", 1)[1].rstrip(".") if ": " in text else text
