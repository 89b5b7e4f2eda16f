"""`heads prepare`: videos -> face crops, landmarks and a manifest, offline and deterministic.

Layout of the output folder (see docs/data.md):
    config.json           the PrepareConfig of the last run
    shard.json            with --shard K/N only: K, N and what the shard saw of the source (see `merge`)
    manifest.jsonl        one line per prepared clip: its meta.json plus its split
    rejects.jsonl         one line per rejected clip with the reason
    clips/<clip>/         00000.jpg ... (R×R crops), landmarks.npz, meta.json

Each clip is written to a temporary folder and renamed into place when complete, so an interrupted run leaves
no half clip, and a re-run skips what is done. One bad clip is a reject, never the end of the run.

`--shard K/N` prepares the clips whose path hashes to K (`faces.sources.shard_of`), so that N machines share a
source without talking to each other; `merge` joins their folders into the one an unsharded run would write.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np

from base.errors import UserError
from faces.config import MergeConfig, PrepareConfig
from faces.crop import CropTransform, clip_transforms, head_square, photo_transform
from faces.detect import Face, LandmarkDetector, load_detector
from faces.image_io import IMAGE_SUFFIXES, ImageError, load_image
from faces.smoothing import segments, smooth_landmarks
from faces.sources import Source, find_sources, read_identities, shard_of, split_of
from faces.track import FaceTracker
from faces.video import FrameRegion, VideoError, VideoReader, header_size

FRAMES_FPS = 25.0  # VoxCeleb frame folders hold 25 fps video frames
FRAME_BUFFER_BYTES = 256 << 20  # what a clip's first pass keeps for its crops; the rest is decoded again
KEEP_MARGIN = 0.15  # an HD frame keeps its raw head square plus this much of its side on each side (see _keep_box)
COMPATIBLE = ("crop", "detector", "shard")  # config entries that must match to add clips to an existing output folder
# Config entries that may differ between the shards of one dataset: where they ran and how; all others must match.
PER_RUN = ("src", "dst", "workers", "retry_rejects", "progress", "shard", "identities")
SHARD_FILE = "shard.json"
BALANCE_CLIPS = 64  # up to this many clips per worker, `--workers N` starts the biggest first (see _balanced)

REJECT_REASONS = ("unreadable", "no face", "several faces", "too short", "error")


class Reject(Exception):
    """A clip that cannot be used; `reason` is one of REJECT_REASONS, the message says why in a sentence."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ClipResult:
    clip: str
    source: str
    frames: int  # frames stored (0 when rejected)
    decoded: int  # frames read from the source
    seconds: float
    reason: str | None = None
    detail: str = ""


# ---------------------------------------------------------------------------------------------------- one clip


@contextmanager
def _open_frames(source: Source, config: PrepareConfig, wanted: Collection[int] | None = None) -> Iterator[
        tuple[float, Iterator[tuple[int, np.ndarray | av.VideoFrame]], VideoReader | None]]:
    """(rate of the sampled frames, iterator of (source frame number, frame), the video's reader or None) for any
    kind of source. A video's frames come decoded but not converted (`reader.rgb` converts one), images as RGB.
    With `wanted`, only those frame numbers are yielded (or loaded), and a video is decoded no further than the last
    of them."""
    if source.kind == "video":
        with VideoReader(source.path, threads=1) as reader:
            fps = reader.info.fps if config.fps is None else min(config.fps, reader.info.fps)
            last = max(wanted, default=-1) if wanted is not None else None

            def frames() -> Iterator[tuple[int, av.VideoFrame]]:
                for index, frame in reader.decoded(config.fps, config.max_frames):
                    if wanted is None or index in wanted:
                        yield index, frame
                    if last is not None and index >= last:
                        return

            yield fps, frames(), reader
    elif source.kind == "frames":
        files = sorted(p for p in source.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        step = 1 if config.fps is None else max(1, round(FRAMES_FPS / config.fps))
        chosen = list(enumerate(files))[::step][: config.max_frames]
        chosen = [(index, path) for index, path in chosen if wanted is None or index in wanted]
        yield FRAMES_FPS / step, ((index, load_image(path)) for index, path in chosen), None
    else:
        yield FRAMES_FPS, iter([(0, load_image(source.path))]), None


@dataclass(frozen=True, eq=False)
class _Kept:
    """What the first pass keeps of one frame to cut its crop from once the crops are known: the whole RGB frame,
    or, when a clip's frames would not fit in FRAME_BUFFER_BYTES (HD video), a rectangle around the face (as YUV
    4:2:0 when the video decodes to it: half the bytes), so that such clips need no second decoding either."""

    x: int  # the rectangle's left and top edges in the frame (0 for a whole frame)
    y: int
    pixels: np.ndarray | FrameRegion
    frame_size: tuple[int, int]  # (width, height) of the frame

    @property
    def width(self) -> int:
        return self.pixels.shape[1] if isinstance(self.pixels, np.ndarray) else self.pixels.width

    @property
    def height(self) -> int:
        return self.pixels.shape[0] if isinstance(self.pixels, np.ndarray) else self.pixels.height

    def crop(self, transform: CropTransform, scalers: dict) -> np.ndarray | None:
        """The crop `transform.crop(frame)` would cut from the whole frame, pixel for pixel; None when the pixels it
        reads are not all kept (the frame is then decoded again)."""
        need = _read_by_crop(transform, *self.frame_size)
        if need is None:  # the square misses the frame: all black
            return np.zeros((transform.size, transform.size, 3), np.uint8)
        if not (self.x <= need[0] and self.y <= need[1] and need[2] <= self.x + self.width
                and need[3] <= self.y + self.height):
            return None
        if isinstance(self.pixels, FrameRegion):
            image, x, y = self.pixels.rgb(need, scalers)
        else:
            image, x, y = self.pixels, self.x, self.y
        if x == 0 and y == 0:
            return transform.crop(image)
        # The same square in the rectangle's coordinates: it reads the same pixels (those of `need`, which the
        # rectangle holds), and x0 - x is exact in floating point since 0 <= x <= x0.
        shifted = CropTransform(transform.scale, (transform.offset[0] - x, transform.offset[1] - y), transform.size)
        return shifted.crop(image)


def _read_by_crop(transform: CropTransform, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The frame pixels (x0, y0, x1, y1) that `CropTransform.crop` reads for this square, None when none."""
    x0, y0, x1, y1 = transform.box
    rx0, ry0 = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
    rx1, ry1 = min(width, int(np.ceil(x1)) + 1), min(height, int(np.ceil(y1)) + 1)
    return None if rx1 <= rx0 or ry1 <= ry0 else (rx0, ry0, rx1, ry1)


class _LazyFrame:
    """An HD video frame as the dlib backend reads it, converted to RGB only where it is read: fitting landmarks
    between detections reads the face's region (a tenth of a 1080p frame), detection the whole frame. Each part
    equals the same pixels of the whole converted frame (checked once per clip, `_FirstPass`)."""

    ndim = 3
    dtype = np.dtype(np.uint8)

    def __init__(self, first: _FirstPass, frame: av.VideoFrame):
        self._first, self._frame = first, frame
        self.shape = (frame.height, frame.width, 3)
        self._whole: np.ndarray | None = None

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._whole is None:
            self._whole = self._first.reader.rgb(self._frame)
        return self._whole if dtype is None else self._whole.astype(dtype)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        if self._whole is not None or not (isinstance(key, tuple) and len(key) == 2
                                           and all(isinstance(k, slice) for k in key)):
            return np.asarray(self)[key]
        ys, xs = key
        (y0, y1, ystep), (x0, x1, xstep) = ys.indices(self.shape[0]), xs.indices(self.shape[1])
        if ystep != 1 or xstep != 1:
            return np.asarray(self)[key]
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), np.uint8)
        region = self._first.reader.region(self._frame, (x0, y0, x1, y1))
        if region is None:  # a frame unlike the first (the stream changed format)
            return np.asarray(self)[key]
        rgb, x, y = region.rgb((x0, y0, x1, y1), self._first.scalers)
        return rgb[y0 - y : y1 - y, x0 - x : x1 - x]


class _FirstPass:
    """How the first pass treats a clip's frames, decided on its first frame: what the tracker is given (RGB, or
    for an HD video and the dlib backend a `_LazyFrame`) and what is kept of each frame for its crop (`_Kept`),
    within FRAME_BUFFER_BYTES; frames beyond it are decoded again for their crops."""

    def __init__(self, config: PrepareConfig, reader: VideoReader | None):
        self.config, self.reader = config, reader
        self.bytes = 0
        self.whole: bool | None = None  # keep whole frames (else rectangles around the face)
        self.regions = False  # keep the rectangles as YUV (else as RGB copies)
        self.lazy = False  # give the tracker `_LazyFrame`s
        self.scalers: dict = {}  # RGB conversions of regions, one per size

    def _decide(self, frame: av.VideoFrame) -> None:
        config, reader = self.config, self.reader
        expected = min(config.max_frames or 1 << 30, reader.info.frames or 1 << 30)
        self.whole = config.crop.mode == "fixed" or reader.info.width * reader.info.height * 3 * expected <= \
            FRAME_BUFFER_BYTES
        if self.whole:
            return
        # Do regions convert to the whole frame's very pixels (they do with ffmpeg 8.1)? Checked on one; else copies.
        w, h = reader.info.width, reader.info.height
        box = (w // 4, h // 4, w // 4 + max(2, w // 3), h // 4 + max(2, h // 3))
        region = reader.region(frame, box)
        if region is not None:
            whole = reader.rgb(frame)
            rgb, x, y = region.rgb(box, self.scalers)
            self.regions = np.array_equal(rgb, whole[y : y + rgb.shape[0], x : x + rgb.shape[1]])
        self.lazy = self.regions and config.detector.backend == "dlib"

    def image(self, frame: np.ndarray | av.VideoFrame) -> np.ndarray | _LazyFrame:
        """What the tracker reads of a frame."""
        if self.reader is None:
            return frame
        if self.whole is None:
            self._decide(frame)
        return _LazyFrame(self, frame) if self.lazy else self.reader.rgb(frame)

    def keep(self, image: np.ndarray | _LazyFrame, frame: np.ndarray | av.VideoFrame,
             points: np.ndarray) -> _Kept | None:
        """What is kept of a frame with a face for its crop; None when over the budget."""
        height, width = image.shape[:2]
        if self.reader is None or self.whole:
            kept = _Kept(0, 0, np.asarray(image), (width, height))
            size = kept.pixels.nbytes
        else:
            box = _keep_box(points, self.config, width, height)
            region = self.reader.region(frame, box) if self.regions else None
            if region is not None:
                kept, size = _Kept(region.x, region.y, region, (width, height)), region.nbytes
            else:
                pixels = np.asarray(image)[box[1] : box[3], box[0] : box[2]].copy()
                kept, size = _Kept(box[0], box[1], pixels, (width, height)), pixels.nbytes
        if self.bytes + size > FRAME_BUFFER_BYTES:
            return None
        self.bytes += size
        return kept


def _keep_box(points: np.ndarray, config: PrepareConfig, width: int, height: int) -> tuple[int, int, int, int]:
    """Where an HD frame's crop will lie: the head square of its raw landmarks widened by KEEP_MARGIN of its side
    on each side (room for the smoothing of the crop over time), within the frame."""
    cx, cy, side = head_square(np.asarray(points[:68], np.float64), config.crop)
    half = side * (0.5 + KEEP_MARGIN) + 4
    x0, y0 = max(0, int(np.floor(cx + 0.5 - half))), max(0, int(np.floor(cy + 0.5 - half)))
    x1, y1 = min(width, int(np.ceil(cx + 0.5 + half))), min(height, int(np.ceil(cy + 0.5 + half)))
    return x0, y0, max(x0 + 1, x1), max(y0 + 1, y1)


def _track(source: Source, config: PrepareConfig, detector: LandmarkDetector):
    """First pass: landmarks of the followed face on every sampled frame, and what each frame's crop will need."""
    tracker = FaceTracker(detector, config.track)
    rows, points, pupils, starts, kept = [], [], [], [], []
    decoded, last_sample = 0, -2
    with _open_frames(source, config) as (fps, frames, reader):
        first = _FirstPass(config, reader)
        for sample, (index, frame) in enumerate(frames):
            decoded += 1
            image = first.image(frame)
            face: Face | None = tracker(image)
            if face is None:
                continue
            rows.append(index)
            points.append(face.points)
            pupils.append(face.pupils)
            starts.append(tracker.new_track or sample != last_sample + 1)  # smoothing restarts after a gap
            last_sample = sample
            kept.append(first.keep(image, frame, face.points))
    return fps, tracker, rows, points, pupils, starts, kept, decoded


def _check(source: Source, config: PrepareConfig, tracker: FaceTracker, found: int, decoded: int) -> None:
    if decoded == 0:
        raise Reject("unreadable", "no frame could be read")
    if found == 0:
        raise Reject("no face", f"no face found in {decoded} frames ({tracker.detections} detector runs)")
    if tracker.ambiguous > config.max_ambiguous * tracker.detections:
        raise Reject(
            "several faces",
            f"{tracker.ambiguous} of {tracker.detections} detections saw {tracker.faces_seen} faces of similar size",
        )
    if source.kind != "image" and found < config.min_frames:
        raise Reject("too short", f"only {found} frames with a face (need {config.min_frames})")


def _crops(points: np.ndarray, starts: list[bool], fps: float, config: PrepareConfig) -> tuple:
    """Smoothed landmarks and crop transforms, smoothing within continuous runs only."""
    if len(points) == 1:
        return points.copy(), [photo_transform(points[0], config.crop)]
    runs = segments(np.cumsum(starts), max_gap=0)  # a new run wherever the track restarts
    smooth = np.concatenate([smooth_landmarks(points[r], fps, config.smoothing) for r in runs])
    if config.crop.mode == "fixed":
        return smooth, clip_transforms(smooth[:, :68], fps, config.crop, config.smoothing.crop_sigma)
    transforms: list[CropTransform] = []
    for r in runs:
        transforms += clip_transforms(smooth[r, :68], fps, config.crop, config.smoothing.crop_sigma)
    return smooth, transforms


def _write_frames(source: Source, config: PrepareConfig, folder: Path, rows: list[int], kept: list[_Kept | None],
                  transforms: list[CropTransform]) -> None:
    """Cut and write every row's crop from what the first pass kept; the rows it could not keep (memory, or a crop
    that moved out of the kept rectangle) from a second decoding, which is deterministic: the same frames come back."""
    params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]

    def write(row: int, crop: np.ndarray) -> None:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for row {row}")
        (folder / f"{row:05d}.jpg").write_bytes(data.tobytes())

    scalers: dict = {}
    missing: dict[int, int] = {}  # frame number -> row
    for row, (frame, transform) in enumerate(zip(kept, transforms, strict=True)):
        crop = None if frame is None else frame.crop(transform, scalers)
        if crop is None:
            missing[rows[row]] = row
        else:
            write(row, crop)
    if not missing:
        return
    count = 0
    with _open_frames(source, config, missing) as (_, frames, reader):
        for index, frame in frames:
            row = missing[index]
            write(row, transforms[row].crop(frame if reader is None else reader.rgb(frame)))
            count += 1
    if count != len(missing):
        raise VideoError(f"the second decoding pass gave {count} of the {len(missing)} frames it had to")


def process_clip(source: Source, config: PrepareConfig, detector: LandmarkDetector, dst: Path) -> ClipResult:
    """Prepare one clip into dst/clips/<clip>, or return why it was rejected. Never raises for a bad input."""
    start = time.perf_counter()
    decoded = 0
    tmp = dst / "clips" / f".tmp-{source.clip}-{os.getpid()}"
    try:
        fps, tracker, rows, points, pupils, starts, kept, decoded = _track(source, config, detector)
        _check(source, config, tracker, len(rows), decoded)
        has_pupils = all(p is not None for p in pupils)
        track = np.stack(points).astype(np.float32)
        if has_pupils:
            track = np.concatenate([track, np.stack(pupils)], axis=1)  # smoothed together with the face
        smooth, transforms = _crops(track, starts, fps, config)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write_frames(source, config, tmp, rows, kept, transforms)
        del kept
        crop_points = np.stack([t.to_crop(p) for t, p in zip(transforms, smooth, strict=True)])
        raw_points = np.stack([t.to_crop(p) for t, p in zip(transforms, track, strict=True)])
        arrays = {
            "points": crop_points[:, :68],
            "points_raw": raw_points[:, :68],
            "transforms": np.stack([t.to_array() for t in transforms]),
            "frame_index": np.asarray(rows, np.int64),
        }
        if has_pupils:
            arrays["pupils"] = crop_points[:, 68:70]
        np.savez(tmp / "landmarks.npz", **arrays)
        meta = {
            "clip": source.clip,
            "identity": source.identity,
            "source": source.relative,
            "kind": source.kind,
            "frames": len(rows),
            "fps": fps,
            "resolution": config.crop.resolution,
            "decoded": decoded,
            "detector": config.detector.backend,
            "detections": tracker.detections,
            "pupils": has_pupils,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        final = dst / "clips" / source.clip
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return ClipResult(source.clip, source.relative, len(rows), decoded, time.perf_counter() - start)
    except Exception as e:  # a clip's failure must never end the run: it becomes a reject with the reason
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Reject):
            reason, detail = e.reason, str(e)
        elif isinstance(e, VideoError | ImageError):
            reason, detail = "unreadable", str(e)
        else:
            reason, detail = "error", f"{type(e).__name__}: {e}"
        return ClipResult(source.clip, source.relative, 0, decoded, time.perf_counter() - start, reason, detail)


# ---------------------------------------------------------------------------------------------------- workers

_worker_detector: LandmarkDetector | None = None


def _init_worker(config: PrepareConfig) -> None:
    """One thread per worker: parallelism comes from processes, and idle OpenMP threads must not spin."""
    global _worker_detector
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["OMP_NUM_THREADS"] = "1"
    cv2.setNumThreads(1)
    _worker_detector = load_detector(config.detector)


def _worker_process(source: Source, config: PrepareConfig, dst: Path) -> ClipResult:
    assert _worker_detector is not None
    return process_clip(source, config, _worker_detector, dst)


def _cost(source: Source, config: PrepareConfig) -> int:
    """Roughly what a clip costs to prepare, from its container's header (no decoding): frames × (pixels + the
    ~600 k pixels' worth that a frame costs whatever its size: landmark fitting, detection, writing)."""
    cap = config.max_frames or 1 << 30
    if source.kind == "video":
        width, height, frames = header_size(source.path)
        return min(frames or cap, cap) * (width * height + 600_000)
    if source.kind == "frames":
        return min(len(os.listdir(source.path)), cap) * (224 * 224 + 600_000)
    return 1_000_000


def _balanced(jobs: list[Source], config: PrepareConfig) -> list[Source]:
    """The clips, biggest first, when there are few per worker: one HD clip started last would keep one worker
    busy long after the others ran out of work (8 clips on 2 workers: 20-25% longer). Many small clips balance
    themselves, and sizing them all would cost the parent a few ms each, so their order is kept."""
    if len(jobs) > BALANCE_CLIPS * config.workers:
        return jobs
    costs = {source.clip: _cost(source, config) for source in jobs}
    return sorted(jobs, key=lambda source: -costs[source.clip])


def _run_parallel(jobs: list[Source], config: PrepareConfig) -> Iterator[ClipResult]:
    """Results as they finish. A worker that dies (e.g. a crash inside a native library) costs only the clips it
    was holding, which become rejects; a fresh pool takes the rest."""
    if not jobs:
        return
    pending: deque[Source] | None = None
    # Spawned, not forked: a forked worker inherits OpenCV's thread pool in whatever state the parent left it, and
    # hangs in its first cv2 call when the parent had used it (seen with `heads bench prepare`).
    context = get_context("spawn")
    while pending is None or pending:
        with ProcessPoolExecutor(
            config.workers, mp_context=context, initializer=_init_worker, initargs=(config,)
        ) as pool:
            if pending is None:  # start the workers (about a second each) while the clips are sized
                for _ in range(config.workers):
                    pool.submit(int)
                pending = deque(_balanced(jobs, config))
            inflight: dict[Future, Source] = {}
            try:
                while pending or inflight:
                    while pending and len(inflight) < 2 * config.workers:
                        source = pending.popleft()
                        inflight[pool.submit(_worker_process, source, config, config.dst)] = source
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        inflight.pop(future)
                        yield future.result()
            except BrokenProcessPool:
                for source in inflight.values():
                    detail = "a worker process died while this clip (or one beside it) was being prepared"
                    yield ClipResult(source.clip, source.relative, 0, 0, 0.0, "error", detail)


def _run_serial(jobs: list[Source], config: PrepareConfig) -> Iterator[ClipResult]:
    detector = load_detector(config.detector)
    for source in jobs:
        yield process_clip(source, config, detector, config.dst)


# ---------------------------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class PrepareSummary:
    clips: int  # clips found in the source
    skipped: int  # already prepared or rejected by an earlier run
    prepared: int  # prepared by this run
    rejected: int  # rejected by this run
    frames: int  # frames stored by this run
    decoded: int  # frames read by this run
    seconds: float
    reasons: dict[str, int]

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_compatible(config: PrepareConfig) -> None:
    """Refuse to mix clips made with different crops or detectors in one folder."""
    path = config.dst / "config.json"
    if not path.is_file():
        return
    before = json.loads(path.read_text())
    now = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    for key in COMPATIBLE:
        if before.get(key) != now[key]:
            raise UserError(
                f"{config.dst} was prepared with different {key} settings ({before.get(key)}); "
                "use another output folder or the same settings"
            )


def write_manifest(dst: Path, test_fraction: float) -> list[dict]:
    """manifest.jsonl from every clips/*/meta.json, each with its identity's split; returns the entries."""
    entries = []
    for meta in sorted((dst / "clips").glob("*/meta.json")):
        entry = json.loads(meta.read_text())
        entry["split"] = split_of(entry["identity"], test_fraction)
        entries.append(entry)
    _write_atomic(dst / "manifest.jsonl", "".join(json.dumps(e) + "\n" for e in entries))
    return entries


def _file_digest(path: Path | None) -> str | None:
    return None if path is None else hashlib.sha1(Path(path).read_bytes()).hexdigest()


def prepare(config: PrepareConfig) -> PrepareSummary:
    """Prepare every clip under config.src (or shard K of N of them) into config.dst (see the module docstring)."""
    identities = read_identities(config.identities) if config.identities else None
    sources = find_sources(config.src, config.images, identities)
    found, shard = len(sources), config.shard_index
    if shard is not None:
        sources = [s for s in sources if shard_of(s.relative, shard[1]) == shard[0]]
    dst = config.dst
    _check_compatible(config)
    (dst / "clips").mkdir(parents=True, exist_ok=True)
    for leftover in (dst / "clips").glob(".tmp-*"):  # from an interrupted run
        shutil.rmtree(leftover, ignore_errors=True)
    _write_atomic(dst / "config.json", json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")
    if shard is not None:  # what `merge` checks: every shard cut the same source into the same N parts
        record = {"index": shard[0], "count": shard[1], "found": found, "clips": len(sources),
                  "identities_sha1": _file_digest(config.identities)}
        _write_atomic(dst / SHARD_FILE, json.dumps(record, indent=2) + "\n")

    done = {p.parent.name for p in (dst / "clips").glob("*/meta.json")}
    rejects = {r["clip"]: r for r in _read_jsonl(dst / "rejects.jsonl")}
    skip = done | (set() if config.retry_rejects else set(rejects))
    jobs = [s for s in sources if s.clip not in skip]

    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="clip", disable=not config.progress, smoothing=0.1, dynamic_ncols=True)
    run = _run_serial if config.workers == 1 else _run_parallel
    start = time.perf_counter()
    frames = decoded = prepared = 0
    reasons: dict[str, int] = {}
    with open(dst / "rejects.jsonl", "a") as log:
        for result in run(jobs, config):
            decoded += result.decoded
            if result.reason is None:
                prepared += 1
                frames += result.frames
                rejects.pop(result.clip, None)
            else:
                reasons[result.reason] = reasons.get(result.reason, 0) + 1
                entry = {"clip": result.clip, "source": result.source, "reason": result.reason}
                rejects[result.clip] = {**entry, "detail": result.detail}
                log.write(json.dumps(rejects[result.clip]) + "\n")
                log.flush()
            elapsed = time.perf_counter() - start
            bar.set_postfix(frames_s=f"{frames / elapsed:.1f}", rejected=sum(reasons.values()), refresh=False)
            bar.update()
    bar.close()
    seconds = time.perf_counter() - start
    kept = {p.parent.name for p in (dst / "clips").glob("*/meta.json")}
    _write_atomic(
        dst / "rejects.jsonl", "".join(json.dumps(r) + "\n" for c, r in sorted(rejects.items()) if c not in kept)
    )
    write_manifest(dst, config.test_fraction)
    summary = PrepareSummary(
        len(sources), len(sources) - len(jobs), prepared, sum(reasons.values()), frames, decoded, seconds, reasons
    )
    if config.progress:
        print(
            f"heads prepare: {prepared} clips prepared, {summary.rejected} rejected {reasons or ''}, "
            f"{summary.skipped} already done; {frames} frames in {seconds:.1f} s "
            f"({summary.frames_per_second:.1f} frames/s). Output: {dst}"
        )
    return summary


def run(config: PrepareConfig) -> None:
    """Entry point of `heads prepare`."""
    prepare(config)


# ---------------------------------------------------------------------------------------------------- merging shards


@dataclass(frozen=True)
class _Shard:
    folder: Path
    config: dict  # its config.json
    record: dict  # its shard.json

    @property
    def settings(self) -> dict:
        return {k: v for k, v in self.config.items() if k not in PER_RUN}


def _read_shard(folder: Path) -> _Shard:
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a folder written by `heads prepare` (no config.json)")
    if not (folder / SHARD_FILE).is_file():
        raise UserError(f"{folder} was not prepared with --shard K/N (no {SHARD_FILE}), so it is not a shard to merge")
    return _Shard(folder, json.loads((folder / "config.json").read_text()),
                  json.loads((folder / SHARD_FILE).read_text()))


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ, e.g. `crop.resolution`, as the CLI options spell them."""
    names = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            names += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            names.append(f"{prefix}{key} ({x!r} vs {y!r})")
    return names


def _check_shards(shards: list[_Shard], out: Path, allow_missing: bool) -> list[int]:
    """Refuse shards that do not make one dataset together (and with OUT's earlier merge); returns missing K."""
    first = shards[0]
    for shard in shards[1:]:
        differ = _differences(first.settings, shard.settings)
        if differ:
            raise UserError(f"{shard.folder} was prepared with other settings than {first.folder}: "
                            f"{', '.join(differ)}; prepare every shard with the same options")
        for key, what in (("count", "a different N in --shard K/N"), ("found", "a different source folder"),
                          ("identities_sha1", "a different --identities file")):
            if shard.record.get(key) != first.record.get(key):
                raise UserError(f"{shard.folder} and {first.folder} were prepared from {what} "
                                f"({key}: {shard.record.get(key)} vs {first.record.get(key)})")
    indices = [s.record["index"] for s in shards]
    twice = sorted({k for k in indices if indices.count(k) > 1})
    if twice:
        raise UserError(f"shard {', '.join(map(str, twice))} given more than once")
    missing = sorted(set(range(first.record["count"])) - set(indices))
    if missing and not allow_missing:
        raise UserError(f"shards {', '.join(map(str, missing))} of {first.record['count']} are missing "
                        "(--allow-missing merges the others)")
    if (out / "config.json").is_file():
        before = {k: v for k, v in json.loads((out / "config.json").read_text()).items() if k not in PER_RUN}
        differ = _differences(before, first.settings)
        if differ:
            raise UserError(f"{out} holds clips prepared with other settings: {', '.join(differ)}")
    return missing


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _bring(clip: Path, dst: Path, mode: str) -> None:
    """Put the clip folder `clip` at `dst`, replacing what is there; a copy lands under a temporary name first."""
    _remove(dst)
    if mode == "link":
        dst.symlink_to(os.path.relpath(clip.resolve(), dst.parent.resolve()), target_is_directory=True)
        return
    if mode == "move":
        try:
            os.rename(clip, dst)
            return
        except OSError:  # another file system: copy, then remove the original
            pass
    tmp = dst.with_name(f".tmp-{dst.name}-merge")
    _remove(tmp)
    shutil.copytree(clip, tmp)
    os.replace(tmp, dst)
    if mode == "move":
        shutil.rmtree(clip)


def merge(config: MergeConfig) -> dict:
    """`heads prepare --merge OUT SHARD...`: one dataset from the shards, as one unsharded run would have made it.

    Everything is checked before anything moves: the same settings (all but where and how each shard ran), the
    same source (the number of clips found in it) and identities file, each K once, and every K of N unless
    `allow_missing`. The manifest and split are then rebuilt from the clips (the split is a hash of the identity,
    so it is the one each shard computed), the rejects joined, and config.json is a shard's without the shard: a
    later `heads prepare SRC OUT` with the same settings adds to the merged folder as to any other.
    Returns what merged.json records.
    """
    out = Path(config.out)
    shards = sorted((_read_shard(Path(f)) for f in config.shards), key=lambda s: s.record["index"])
    missing = _check_shards(shards, out, config.allow_missing)
    clips: dict[str, Path] = {}
    for shard in shards:
        for meta in sorted((shard.folder / "clips").glob("*/meta.json")):
            name = meta.parent.name
            if name in clips:
                raise UserError(f"clip {name} is in both {clips[name].parent.parent} and {shard.folder}")
            clips[name] = meta.parent
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for leftover in (out / "clips").glob(".tmp-*"):  # from an interrupted merge or run
        _remove(leftover)
    for name, folder in clips.items():
        _bring(folder, out / "clips" / name, config.mode)
    if config.mode == "move":
        for shard in shards:  # their manifests no longer list clips they do not hold
            write_manifest(shard.folder, shard.config["test_fraction"])

    kept = {p.parent.name for p in (out / "clips").glob("*/meta.json")}
    rejects = {r["clip"]: r for r in _read_jsonl(out / "rejects.jsonl")}
    for shard in shards:
        rejects.update({r["clip"]: r for r in _read_jsonl(shard.folder / "rejects.jsonl")})
    _write_atomic(out / "rejects.jsonl",
                  "".join(json.dumps(r) + "\n" for c, r in sorted(rejects.items()) if c not in kept))
    merged_config = {**shards[0].config, "dst": str(out), "shard": None}
    _write_atomic(out / "config.json", json.dumps(merged_config, indent=2) + "\n")
    entries = write_manifest(out, merged_config["test_fraction"])
    record = {
        "count": shards[0].record["count"],
        "missing": missing,
        "shards": [{"folder": str(s.folder), **s.record} for s in shards],
        "clips": len(entries),
        "rejects": sum(c not in kept for c in rejects),
        "mode": config.mode,
    }
    _write_atomic(out / "merged.json", json.dumps(record, indent=2) + "\n")
    if config.progress:
        print(f"heads prepare --merge: {len(shards)} of {record['count']} shards, {len(entries)} clips "
              f"({sum(e['split'] == 'test' for e in entries)} test), {record['rejects']} rejects -> {out}")
    return record
