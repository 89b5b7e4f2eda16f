"""CSIM: cosine similarity of face-recognition embeddings between generated and real frames (the paper uses
ArcFace). The default embedder is dlib's ResNet (training.perceptual, no download) on dlib's own aligned
150-px chips (HOG detector, 5-point predictor, padding 0.25), which is the input it was trained on; a frame where no
face is found is resized whole to 150 px instead, and the count of such frames is reported beside the score.

Any other embedder (ArcFace, when its weights are at hand) plugs in as `embedder`: a function from (N, H, W, 3)
uint8 RGB frames to (N, D) embeddings.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch

from training.data import to_tensor
from training.metrics.perceptual import feature_net
from training.perceptual import dlib_model_path

CHIP, PADDING = 150, 0.25
DETECT_SIDE = 256  # small crops are enlarged to this side first: dlib's HOG detector misses faces under ~80 px

Embedder = Callable[[np.ndarray], np.ndarray]


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path(
        "shape_predictor_5_face_landmarks.dat")))


def face_chip(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """(H, W, 3) uint8 RGB -> dlib's aligned (150, 150, 3) chip of the largest face, and whether one was found."""
    import dlib

    detector, predictor = _dlib_models()
    scale = max(1.0, DETECT_SIDE / min(image.shape[:2]))
    big = np.ascontiguousarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
                               if scale > 1 else image)
    faces = detector(big, 0)
    if len(faces) == 0:
        return cv2.resize(image, (CHIP, CHIP), interpolation=cv2.INTER_AREA), False
    face = max(faces, key=lambda r: r.area())
    return dlib.get_face_chip(big, predictor(big, face), CHIP, PADDING), True


@torch.no_grad()
def dlib_embeddings(images: np.ndarray) -> tuple[np.ndarray, int]:
    """(N, H, W, 3) uint8 -> (N, 128) dlib descriptors, and the number of frames without a detected face."""
    chips, found = zip(*(face_chip(image) for image in images), strict=True)
    return feature_net("dlib").descriptor(to_tensor(np.stack(chips))).double().numpy(), len(found) - sum(found)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) arrays."""
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def csim(fake: np.ndarray, real: np.ndarray, embedder: Embedder | None = None) -> tuple[np.ndarray, int]:
    """(N, H, W, 3) uint8 pairs -> (N,) cosine similarities, and the number of frames (of 2N) that fell back to a
    whole-frame resize because no face was detected (always 0 with a custom embedder)."""
    if fake.shape != real.shape:
        raise ValueError(f"shapes differ: {fake.shape} and {real.shape}")
    if embedder is not None:
        return cosine(embedder(fake), embedder(real)), 0
    (ef, mf), (er, mr) = dlib_embeddings(fake), dlib_embeddings(real)
    return cosine(ef, er), mf + mr
