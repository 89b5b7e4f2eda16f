"""Shared test fixtures. Real media live in ../shared/media beside the checkout and are never copied here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads starve the other process on 2 cores

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("HEADS_MEDIA", ROOT.parent / "shared" / "media"))


@pytest.fixture(scope="module")
def detector():
    """The app's default landmark detector (dlib), loaded once per test module."""
    from faces.detect import load_detector

    return load_detector()


@pytest.fixture(scope="module")
def warp_pipeline():
    """The app's pipeline with no model (the warp renderer), on the CPU, once per test module."""
    from demo.pipeline import Pipeline

    return Pipeline(weights=None, device="cpu")


@pytest.fixture(scope="session")
def media() -> Path:
    """The public media folder; in CI its absence is a failure, elsewhere a skip."""
    if not (MEDIA / "MANIFEST.tsv").is_file():
        message = f"real media not found at {MEDIA} (set HEADS_MEDIA or put shared/ beside the checkout)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return MEDIA


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    """One intra-op thread per test process: tests run beside other work on a 2-core machine."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
