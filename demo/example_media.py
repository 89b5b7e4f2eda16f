"""The app's examples, drawn in code: a portrait and a short talking clip (with a voice-like sound track) of two
made-up people, so the gallery ships nothing the project did not make itself.

The faces are simple shaded drawings, but realistic enough in layout that the dlib HOG detector and the 68-point
predictor find them, which is all the pipeline needs. Deterministic: `python -m demo.example_media` rewrites the
same files.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faces.video import VideoWriter

FOLDER = Path(__file__).resolve().parent / "examples"
PORTRAIT, DRIVING = FOLDER / "portrait.jpg", FOLDER / "driving.mp4"
FPS, SECONDS, RATE = 25, 4.0, 16000


@dataclass(frozen=True)
class Look:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    backdrop: tuple[float, float, float]
    width: float  # half-width of the face, in units of the image side


PERSON = Look((0.93, 0.74, 0.62), (0.22, 0.14, 0.08), (0.25, 0.3, 0.45), (0.55, 0.62, 0.70), 0.17)
DRIVER = Look((0.80, 0.60, 0.47), (0.08, 0.07, 0.07), (0.55, 0.2, 0.2), (0.75, 0.72, 0.62), 0.16)


def draw_face(look: Look, size: int, mouth: float = 0.0, yaw: float = 0.0, blink: float = 0.0,
              seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8 RGB: `mouth` 0 closed to 1 open, `yaw` -1..1 (features shift sideways), `blink` 0..1."""
    img = np.empty((size, size, 3), np.float32)
    yy, xx = np.mgrid[:size, :size] / size
    img[:] = np.array(look.backdrop, np.float32) * (0.8 + 0.2 * yy[..., None])

    def ellipse(centre, axes, angle=0.0, blur=0.0) -> np.ndarray:
        mask = np.zeros((size, size), np.float32)
        cv2.ellipse(mask, (round(centre[0] * size), round(centre[1] * size)),
                    (max(1, round(axes[0] * size)), max(1, round(axes[1] * size))), angle, 0, 360, 1.0, -1,
                    cv2.LINE_AA)
        return cv2.GaussianBlur(mask, (0, 0), blur * size / 512) if blur else mask

    def paint(mask: np.ndarray, colour) -> None:
        img[:] = img * (1 - mask[..., None]) + np.array(colour, np.float32) * mask[..., None]

    cx, shift = 0.5 + 0.04 * yaw, 0.02 * yaw
    paint(ellipse((0.5, 0.85), (0.32, 0.2)), look.shirt)
    paint(ellipse((0.5, 0.7), (0.08, 0.12)), np.array(look.skin) * 0.9)
    paint(ellipse((cx, 0.38), (look.width + 0.05, 0.22), blur=2), look.hair)
    skin = ellipse((cx, 0.5), (look.width, 0.23), blur=1.5)
    paint(skin, look.skin)
    rounding = 0.8 + 0.2 * np.exp(-((xx - cx) / 0.15) ** 2)  # cheeks darken towards the sides
    img[:] *= rounding[..., None] * skin[..., None] + (1 - skin[..., None])
    for side in (-1, 1):
        x = cx + side * 0.065 + shift
        paint(ellipse((x, 0.44), (0.045, 0.012), -side * 8, blur=1), np.array(look.hair) * 0.9)
        lid = 0.018 * (1 - blink) + 0.002
        paint(ellipse((x, 0.485), (0.035, lid), blur=0.7), (0.97, 0.97, 0.95))
        paint(ellipse((x + 0.006 * yaw, 0.485), (0.014, min(lid, 0.014)), blur=0.7), (0.15, 0.1, 0.07))
        paint(ellipse((x, 0.485 - 0.6 * lid), (0.038, 0.006), blur=1.5), np.array(look.skin) * 0.6)
    nose = cx + 1.5 * shift
    paint(ellipse((nose, 0.56), (0.022, 0.012), blur=2), np.array(look.skin) * 0.65)
    paint(ellipse((nose + 0.012, 0.5), (0.006, 0.05), blur=3), np.array(look.skin) * 0.85)
    gap = 0.006 + 0.035 * mouth
    lips = cx + 0.75 * shift
    paint(ellipse((lips, 0.63 + gap / 2), (0.05, gap), blur=1), (0.35, 0.08, 0.08))
    paint(ellipse((lips, 0.628), (0.05, 0.008), blur=1), (0.72, 0.38, 0.38))
    noise = np.random.default_rng(seed).normal(0.0, 0.01, img.shape)
    return np.clip((img + noise) * 255, 0, 255).astype(np.uint8)


def _speech(t: np.ndarray) -> np.ndarray:
    """Mouth opening over time: syllables at ~4 Hz, grouped in words with pauses."""
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None)
    words = (np.sin(2 * np.pi * 0.6 * t + 0.5) > -0.3).astype(np.float64)
    return syllables * words


def _voice(path: Path) -> None:
    """A buzzy 120 Hz 'voice' whose loudness follows the mouth, as 16-bit mono WAV."""
    t = np.arange(int(SECONDS * RATE)) / RATE
    buzz = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 8))
    samples = (0.25 * _speech(t) * buzz / 2.6 * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(samples.tobytes())


def make_examples(folder: Path = FOLDER, size: int = 256) -> tuple[Path, Path]:
    """Write portrait.jpg (512 px) and driving.mp4 (`size` px, SECONDS long, with sound) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    portrait, driving = folder / PORTRAIT.name, folder / DRIVING.name
    cv2.imwrite(str(portrait), draw_face(PERSON, 512)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    wav = folder / ".voice.wav"
    _voice(wav)
    try:
        with VideoWriter(driving, FPS, audio_from=wav) as writer:
            for i in range(int(SECONDS * FPS)):
                t = i / FPS
                blink = max(0.0, 1 - abs(t % 2.3 - 1.2) * 8)  # a blink every 2.3 s
                yaw = 0.8 * math.sin(2 * math.pi * t / SECONDS)
                frame = draw_face(DRIVER, size, float(_speech(np.array([t]))[0]), yaw, blink, seed=i)
                nod = cv2.getRotationMatrix2D((size / 2, size * 0.6), 4 * math.sin(2 * math.pi * t / 1.7), 1.0)
                writer.write(cv2.warpAffine(frame, nod, (size, size), borderMode=cv2.BORDER_REPLICATE))
    finally:
        wav.unlink(missing_ok=True)
    return portrait, driving


if __name__ == "__main__":
    for path in make_examples():
        print(f"wrote {path}")
