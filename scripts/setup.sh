#!/usr/bin/env bash
# Creates (or reuses) .venv with torch and fcn-kernels built from this checkout.
#   FCN_TORCH       the torch requirement (default torch==2.14.1, a CUDA 13 build: the CUDA kernels are
#                   compiled too, GPU or not; torch==2.13.0 is the smaller CPU build)
#   FCN_VENV        where the environment goes (default .venv)
#   MAX_JOBS        parallel compile jobs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FCN_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip() { "$venv/bin/python" -m pip "$@"; }
pip install -q --disable-pip-version-check --upgrade pip setuptools wheel ninja 2>&1 | grep -v "is ignored: it is neither" || true
pip install -q --disable-pip-version-check "${FCN_TORCH:-torch==2.14.1}" numpy 2>&1 | grep -v "is ignored: it is neither" || true
# Triton for the triton backend (tested on CPU through its interpreter). CUDA builds of torch bring the
# triton they were built with; only a CPU torch needs one here (3.6: the GPU image's version).
"$venv/bin/python" -c "import triton" 2>/dev/null ||
  pip install -q --disable-pip-version-check "triton==3.6.0" 2>&1 | grep -v "is ignored: it is neither" || true
"$venv/bin/python" -c "import torch" || { echo "setup.sh: torch did not install" >&2; exit 1; }
MAX_JOBS=${MAX_JOBS:-2} pip install -q --disable-pip-version-check --no-build-isolation -e ".[test]" \
  2>&1 | grep -v "is ignored: it is neither" || true
"$venv/bin/python" - <<'PY'
import fcn_kernels, torch
print(f"fcn-kernels {fcn_kernels.__version__}, torch {torch.__version__}, backends {fcn_kernels.available_backends()}")
if "cpu" not in fcn_kernels.available_backends():
    raise SystemExit(f"setup.sh: the C++ extension did not build or load: {fcn_kernels._ext.EXTENSION_ERROR}")
PY
