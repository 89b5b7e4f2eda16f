#!/usr/bin/env bash
# Set up a virtualenv in .venv with the training and dev extras, lint, and run every test (slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE  # spinning OpenMP threads slow parallel work 10x on 2 cores
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[train,dev]"
.venv/bin/ruff check .
.venv/bin/pytest -q "$@"
