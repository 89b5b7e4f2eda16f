"""The person's source faces: photos (or frames of a clip) -> one face each, its 68 landmarks, and square crops at any
resolution framed as training framed them.

The one path from a person's images to what a generator is personalized on, shared by the app, `heads animate` and
`heads finetune`, so that all three check the same things and say the same sentences: the file is there and within
the size limit, it is an image, it holds a face (else: a hint about the face box), and notices when it holds several
faces or a small one. Large images are shrunk to `LimitsConfig.max_image_side` first: detection and cropping need no
more, and a face box or landmarks given in the original pixels are scaled with them.

Crops come from `faces.crop.photo_transform` with the default CropConfig, as `heads prepare` makes them, so the
generator sees the framing it learned on. Errors are `InputError`s whose message is meant for the person.

Irises, where a second detector that sees them is given (`with_irises`), ride along: a face keeps the landmarks of the
detector that found it (dlib's refuse animals, which mediapipe's face detector takes for faces), and gains the iris
centres that the iris detector fits in the same place. Into a crop or a shrunk canvas they are carried by their place
within each eye (`faces.motion.gaze_coordinates`), which no crop, scale or shift changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from base.errors import InputError
from faces.config import CropConfig, LimitsConfig
from faces.crop import CropTransform, photo_transform
from faces.detect import Box, LandmarkDetector, box_of
from faces.image_io import ImageError, load_image
from faces.motion import check_points, gaze_coordinates, gaze_positions
from faces.video import VideoError, VideoReader

MIN_FACE = 40  # px: smaller landmark boxes still animate, but the crop is upscaled and blurry


@dataclass(frozen=True)
class SourceFace:
    name: str  # file name (and frame number, for a clip), for messages
    image: np.ndarray  # (H, W, 3) uint8 RGB, upright, shrunk to the limits
    points: np.ndarray  # (68, 2) float32 landmarks in `image` pixels
    digest: str  # `image_hash` of the file (or of a clip frame's pixels): identifies the person's images for caching
    pupils: np.ndarray | None = None  # (2, 2) iris centres (subject's right, left) in `image` pixels, NaN if unseen

    def transform(self, resolution: int, framing: CropConfig | None = None) -> CropTransform:
        """Its face crop at `resolution`, framed as training framed faces unless `framing` says otherwise."""
        config = replace(framing or CropConfig(), resolution=resolution)
        return photo_transform(self.points.astype(np.float64), config)


@dataclass(frozen=True)
class Crops:
    """The T faces at one resolution: what the renderers read and what fine-tuning trains on."""

    frames: np.ndarray  # (T, R, R, 3) uint8
    points: np.ndarray  # (T, 68, 2) float64, crop pixels
    pupils: np.ndarray | None = None  # (T, 2, 2) float64 iris centres in crop pixels, NaN where unseen; None: no iris


def irises_in(points: np.ndarray, face: SourceFace) -> np.ndarray:
    """`face`'s iris centres (NaN when it has none) placed in its (68, 2) landmarks `points` moved into another frame
    (a crop, a shrunk canvas): each keeps its place within its eye."""
    if face.pupils is None:
        return np.full((2, 2), np.nan)
    return gaze_positions(points, gaze_coordinates(face.points, face.pupils))


def crop_pupils(faces: Sequence[SourceFace], points: np.ndarray) -> np.ndarray | None:
    """(T, 2, 2) iris centres of `faces` in their (T, 68, 2) crop `points`, or None when no face has irises."""
    if all(face.pupils is None for face in faces):
        return None
    return np.stack([irises_in(p, face) for p, face in zip(points, faces, strict=True)])


def crops(faces: Sequence[SourceFace], resolution: int, framing: CropConfig | None = None) -> Crops:
    transforms = [face.transform(resolution, framing) for face in faces]
    frames = np.stack([t.crop(face.image) for t, face in zip(transforms, faces, strict=True)])
    points = np.stack([t.to_crop(face.points) for t, face in zip(transforms, faces, strict=True)]).astype(np.float64)
    return Crops(frames, points, crop_pupils(faces, points))


def with_irises(faces: Sequence[SourceFace], detector: LandmarkDetector) -> list[SourceFace]:
    """`faces` with the iris centres that `detector` (a backend that sees irises, e.g. mediapipe) fits around each
    face's landmarks, in the same image pixels; their landmarks stay as they are. A face the detector does not find
    there, or finds without irises, keeps none."""
    out = []
    for face in faces:
        x0, y0, x1, y1 = box_of(face.points)
        pad = 0.1 * max(x1 - x0, y1 - y0)  # the detectors' boxes reach a little beyond the landmarks (brows, chin)
        fitted = detector.fit(face.image, (x0 - pad, y0 - pad, x1 + pad, y1 + pad))
        pupils = None if fitted is None or fitted.pupils is None else np.asarray(fitted.pupils, np.float64)
        out.append(replace(face, pupils=pupils))
    return out


def image_hash(data: bytes | np.ndarray) -> str:
    """SHA-256 of a source image: its file's bytes, or the raw pixels of an in-memory image (a clip frame, a crop)."""
    raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
    return hashlib.sha256(raw).hexdigest()


def check_file(path: str | Path, limits: LimitsConfig, what: str) -> Path:
    """`path` as a Path once it exists, is not empty and is within the upload size limit."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The {what} {path.name} was not found (was the upload interrupted?).")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"The {what} {path.name} is empty (0 bytes).")
    if size > limits.max_upload_mb * 1e6:
        raise InputError(
            f"The {what} {path.name} is {size / 1e6:.0f} MB; this server accepts at most {limits.max_upload_mb:.0f} MB."
        )
    return path


def read_points(path: str | Path) -> np.ndarray:
    """68 (x, y) landmarks from .npy, or .json as a list of pairs or {"points": [...]}: for a painting or drawing
    on which no landmark predictor works, even inside a face box."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            values = np.load(path)
        else:
            data = json.loads(path.read_text())
            values = np.asarray(data["points"] if isinstance(data, dict) else data, np.float64)
        return check_points(values)
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: expected 68 (x, y) landmarks as .npy or .json ({error})") from error


def load_faces(
    paths: Sequence[str | Path],
    detector: LandmarkDetector,
    limits: LimitsConfig | None = None,
    box: Box | None = None,
    points: np.ndarray | None = None,
) -> tuple[list[SourceFace], list[str]]:
    """One face per photo (the largest), and notices for the person (several faces, a small face).

    For a single photo in which no face is detected (a painting), `box` is the face box in the photo's original
    pixels, inside which the landmark predictor is fitted, or `points` are its 68 landmarks there, used as given.
    """
    limits = limits or LimitsConfig()
    if not paths:
        raise InputError("Add at least one photo of the person to animate.")
    if len(paths) > limits.max_photos:
        raise InputError(f"{len(paths)} photos were given; this server takes at most {limits.max_photos}.")
    if (box is not None or points is not None) and len(paths) != 1:
        raise InputError("A manual face box describes one photo: use it with exactly one photo.")
    faces, notices = [], []
    for path in map(Path, paths):
        data = check_file(path, limits, "photo").read_bytes()
        try:
            image = load_image(path)
        except ImageError:
            raise InputError(f"{path.name} is not a readable image: upload a JPEG, PNG or WebP photo.") from None
        faces.append(_face(path.name, image, image_hash(data), detector, limits, notices, box, points))
    return faces, notices


def clip_faces(
    path: str | Path, count: int, detector: LandmarkDetector, limits: LimitsConfig | None = None
) -> tuple[list[SourceFace], list[str]]:
    """`count` frames evenly spaced over a clip of the person, each with its face, and notices as `load_faces`
    gives them. A frame's digest is the hash of its pixels, as the clip file alone does not say which were taken."""
    limits = limits or LimitsConfig()
    path = check_file(path, limits, "video")
    try:
        with VideoReader(path) as reader:
            total = max(reader.info.frames, 1)
            wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
            picked = [(i, f) for i, f in reader.sample() if i in wanted]
    except VideoError as error:
        raise InputError(str(error)) from None
    if len(picked) < count:
        raise InputError(f"{path.name}: only {len(picked)} frames could be read, {count} were asked for.")
    notices: list[str] = []
    faces = [_face(f"{path.name} frame {i}", frame, image_hash(frame), detector, limits, notices)
             for i, frame in picked]
    return faces, notices


def _face(
    name: str,
    image: np.ndarray,
    digest: str,
    detector: LandmarkDetector,
    limits: LimitsConfig,
    notices: list[str],
    box: Box | None = None,
    points: np.ndarray | None = None,
) -> SourceFace:
    """The largest face of one upright image (or the given box's or landmarks'), after shrinking it to the limits;
    appends notices to `notices`."""
    scale = limits.max_image_side / max(image.shape[:2])
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        scale = 1.0
    pupils = None
    if points is not None:  # in the upright image's own pixels, before any shrinking
        found = np.asarray(points, np.float64) * scale
    elif box is not None:
        fitted = detector.fit(image, tuple(v * scale for v in box))
        if fitted is None:  # a backend that detects inside the box (mediapipe) and saw no face there
            raise InputError(f"No face could be fitted in the face box you gave for {name}: check its corners.")
        found, pupils = fitted.points, fitted.pupils
        notices.append(f"{name}: landmarks fitted in the face box you gave.")
    else:
        detected = detector.detect(image)
        if not detected:
            raise InputError(
                f"No human face was found in {name}. Use a photo in which one person's face is clearly visible "
                "(animals and cartoons are not supported); for a painting or drawing, enter the face box by hand."
            )
        found, pupils = detected[0].points, detected[0].pupils
        if len(detected) > 1:
            notices.append(f"{name}: {len(detected)} faces found; animating the largest one.")
    side = float(np.ptp(found, axis=0).max())
    if side < MIN_FACE:
        notices.append(f"{name}: the face is only {side:.0f} px wide, so the result will be blurry.")
    pupils = None if pupils is None else np.asarray(pupils, np.float64)
    return SourceFace(name, image, np.asarray(found, np.float32), digest, pupils)
