"""app.py as Spaces and tests import it: importing builds nothing, `build` makes the page on a given pipeline."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from demo.animate_config import LimitsConfig
from demo.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]


def _fresh_app():
    sys.modules.pop("app", None)
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("app")
    finally:
        sys.path.remove(str(ROOT))


def test_importing_the_app_builds_no_pipeline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("app.py built a pipeline when imported")

    monkeypatch.setattr(Pipeline, "__init__", refuse)
    app = _fresh_app()
    assert callable(app.build) and callable(app.main)


@pytest.mark.slow
def test_build_uses_the_given_pipeline_and_limits(tmp_path):
    app = _fresh_app()
    pipeline = Pipeline(weights=str(tmp_path / "no-model"), workdir=tmp_path / "work")  # no model: the warp renderer
    blocks = app.build(pipeline, LimitsConfig(max_photos=3))
    names = [fn.api_name for fn in blocks.fns.values()]
    assert "animate" in names
    labels = [getattr(block, "label", None) or "" for block in blocks.blocks.values()]
    assert any("(1–3)" in label for label in labels)  # the photo limit on the page is the one passed in
