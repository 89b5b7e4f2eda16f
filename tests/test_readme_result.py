"""scripts/readme_result.py, the README's result image, at tiny settings: it must keep working when the model in
weights/ is swapped, and its neural row must show the model's output rather than the untouched source."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "readme_result.py"


def _script(monkeypatch):
    """The script as a module; dataclasses look their module up in sys.modules, so it is registered there."""
    spec = importlib.util.spec_from_file_location("readme_result", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_grid_has_a_labelled_row_per_renderer_and_a_neural_row_that_moves(tmp_path, monkeypatch):
    from demo.pipeline import Pipeline

    script = _script(monkeypatch)
    out = tmp_path / "grid.png"
    image = script.main(["--frames", "2", "--max-frames", "12", "--tile", "64", "--out", str(out)])
    count = 5 if Pipeline(device="cpu").mouth is not None else 4  # with the mouth refiner's row where it ships
    assert image.shape == (script.HEADER + count * 64, script.LABEL_WIDTH + 2 * 64, 3)
    assert np.array_equal(cv2.imread(str(out))[..., ::-1], image)
    rows = [image[script.HEADER + r * 64 : script.HEADER + (r + 1) * 64, script.LABEL_WIDTH :] for r in range(count)]
    landmarks, still, neural = (rows[i].astype(np.int16) for i in (0, 1, -1))
    assert np.abs(neural - still).mean() > 2.0  # the face follows the driver instead of standing still
    assert landmarks.max() > 0 and (landmarks == 0).mean() > 0.5  # coloured strokes on black
