"""Reader for dlib's serialized face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat) in plain
Python, so the port needs no dlib. Format facts: shared/notes/dlib-face-resnet.md.

The file holds the loss settings, one version number per layer from the output inward, the input layer, then
every layer's settings and parameters from the input outward. Tag and skip layers carry no data, so the wiring
is not in the file: the torch module knows it, and this reader returns the layers with data in file order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DatLayer:
    kind: str  # con, affine, fc, relu, max_pool, avg_pool, add_prev
    settings: tuple[int, ...]  # con: filters, rows, cols, stride y/x, padding y/x; pools: the last six
    params: np.ndarray | None  # float32: con [filters, biases], affine [gamma, beta], fc (inputs, outputs)


@dataclass(frozen=True)
class DatNetwork:
    mean_rgb: tuple[float, float, float]  # the input layer's per-channel means, 0–255
    size: int  # input side, 150
    layers: list[DatLayer]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def integer(self) -> int:
        """One byte holding the byte count (0x80 = negative), then the magnitude, least significant first."""
        head = self.data[self.pos]
        size = head & 0x7F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def scalar(self) -> float:
        mantissa = self.integer()
        return float(mantissa * 2.0 ** self.integer())

    def text(self) -> str:
        size = self.integer()
        self.pos += size
        return self.data[self.pos - size : self.pos].decode("ascii")

    def flag(self) -> bool:
        self.pos += 1
        return self.data[self.pos - 1 : self.pos] == b"1"

    def tensor(self) -> np.ndarray:
        """Version, 4 dimensions, then raw little-endian float32 (not the mantissa/exponent form)."""
        self.integer()
        count = int(np.prod([self.integer() for _ in range(4)]))
        values = np.frombuffer(self.data, "<f4", count, self.pos).copy()
        self.pos += 4 * count
        return values

    def alias(self) -> None:
        """An alias_tensor only views part of params; its shape follows from the layer's settings."""
        for _ in range(5):
            self.integer()

    def expect(self, text: str) -> None:
        found = self.text()
        if found != text:
            raise ValueError(f"expected {text!r} at byte {self.pos}, found {found!r}: not a dlib face ResNet")


def _layer(r: _Reader, name: str) -> DatLayer:
    if name == "con_4":
        params = r.tensor()
        settings = tuple(r.integer() for _ in range(7))
        r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.scalar()
        return DatLayer("con", settings, params)
    if name == "affine_":
        params = r.tensor()
        r.alias(), r.alias()
        r.integer()  # mode: per channel
        return DatLayer("affine", (), params)
    if name == "fc_2":
        outputs, inputs = r.integer(), r.integer()
        params = r.tensor()
        r.alias(), r.alias()
        if r.integer() != 1:
            raise ValueError("expected a fully connected layer without bias")
        for _ in range(4):
            r.scalar()
        return DatLayer("fc", (inputs, outputs), params)
    if name in ("max_pool_2", "avg_pool_2"):
        return DatLayer(name[:-2], tuple(r.integer() for _ in range(6)), None)
    if name in ("relu_", "add_prev_"):
        return DatLayer(name[:-1], (), None)
    raise ValueError(f"unsupported layer {name!r} at byte {r.pos}")


def read_dat(path: str | Path) -> DatNetwork:
    r = _Reader(Path(path).read_bytes())
    r.integer()  # the loss layer's version
    r.expect("loss_metric_2")
    r.scalar(), r.scalar()  # margin and distance threshold
    while r.data[r.pos : r.pos + 2] != b"\x01\x15":  # layer versions, up to the input's name (21 chars)
        r.integer()
    r.expect("input_rgb_image_sized")
    mean = (r.scalar(), r.scalar(), r.scalar())
    rows, cols = r.integer(), r.integer()
    if rows != cols:
        raise ValueError(f"expected a square input, got {rows}×{cols}")
    layers = []
    while r.pos < len(r.data):
        layers.append(_layer(r, r.text()))
        r.flag(), r.flag(), r.flag()  # setup called, gradient stale, output disabled
        for _ in range(3):  # gradient buffers, empty in a saved model
            r.tensor()
        if len(layers) == 1:
            r.integer()  # the layer wrapping the input also stores its sample expansion factor
    return DatNetwork(mean, rows, layers)
