"""Still images in as upright RGB: EXIF rotation applied, transparency flattened, greyscale expanded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ImageError(Exception):
    """A file that cannot be read as an image; the message is a sentence naming the file."""


def load_image(path: str | Path, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """(H, W, 3) uint8 RGB. Transparent pixels (cut-out portraits) show `background`, not whatever colour the
    file stored under alpha 0, which is often black and would read as hair or shadow."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, (*background, 255))
                flat.alpha_composite(rgba)
                image = flat
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({e}).") from e
