"""The import layers of pyproject.toml hold, and the linter would catch a back-edge (CI runs `lint-imports` too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("base", "faces", "contract", "demo", "training", "export_onnx", "heads")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.onnx",
                                                                                     "examples"))
    return copy


@pytest.fixture(scope="module")
def linter():
    if not LINT_IMPORTS.is_file():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    return _lint


def test_the_layers_hold(linter):
    result = linter(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("lower, upper", [("faces", "demo"), ("demo", "training"), ("contract", "export_onnx")])
def test_a_back_edge_fails_the_linter(linter, tmp_path, lower, upper):
    copy = _copy(tmp_path)
    init = copy / lower / "__init__.py"
    init.write_text(init.read_text() + f"\nimport {upper}  # noqa: F401\n")
    result = linter(copy)
    assert result.returncode != 0 and f"{lower} is not allowed to import {upper}" in result.stdout, result.stdout
