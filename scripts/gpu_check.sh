#!/usr/bin/env bash
# The GPU check of issue 21 (docs/inference.md): train the paper preset under torchrun (NCCL, bf16, torch.compile) on
# synthetic faces and on prepared clips, export, time the generator; JSON in OUT/gpu_check.json. About 8 minutes
# on one GPU. `--tiny` runs it with the tiny model on the CPU in about a minute (tests/test_gpu_check.py).
#
#   scripts/gpu_check.sh OUT [--tiny] [--steps N] [--nproc N] [--prepared DIR]
#
# It runs under whatever python3 the machine has ($PYTHON overrides), with the checkout on PYTHONPATH rather than
# installed. Wheels that machine lacks can travel with the checkout in scripts/wheels/ (or $HEADS_WHEELS): they
# are installed without a registry into OUT/site-packages first. The environment step of the JSON lists what is
# still missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 OUT [--tiny] [--steps N] [--nproc N] [--prepared DIR]" >&2
    exit 2
fi
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
shift
PY="${PYTHON:-python3}"
export OMP_WAIT_POLICY=PASSIVE  # spinning OpenMP threads slow the loader's workers and the other ranks
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WHEELS="${HEADS_WHEELS:-$ROOT/scripts/wheels}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$OUT/site-packages" "$WHEELS"/*.whl
    export PYTHONPATH="$PYTHONPATH:$OUT/site-packages"  # after the machine's own packages: they win
fi
exec "$PY" "$ROOT/scripts/gpu_check.py" "$OUT" "$@"
