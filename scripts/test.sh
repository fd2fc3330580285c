#!/usr/bin/env bash
# Every test, from a fresh checkout: sets up .venv (scripts/setup.sh), then
#   0. ruff: lint and format check of the Python ([tool.ruff] in pyproject.toml),
#   1. the C++ host tests (CMake + ctest: index math, the CUDA kernels replayed on the host),
#   2. pytest (all CPU tests; CUDA-marked tests skip without a GPU),
#   3. every benchmark once as a smoke test (--benchmark-disable),
#   4. the GPU check's stages on CPU with tiny sizes (benchmarks/gpu_check.sh --cpu-smoke),
#   5. the C++ code under ASan + UBSan: ctest and the op tests (scripts/sanitize.sh),
#   6. the package: sdist, wheel, installed into a fresh venv, smoke test (scripts/check_package.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${FCN_VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
# Each stage's heading with the minutes spent so far: CI's whole run must stay well under its 90 minutes.
stage() { echo "== [$((SECONDS / 60)) min] $*"; }

stage "ruff: lint, and the format check (fix with: ruff check --fix ...; ruff format ...)"
ruff check fcn_kernels tests benchmarks
ruff format --check fcn_kernels tests benchmarks

stage "ctest: shared index math, CUDA kernels replayed on the host"
cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cmake -j "${MAX_JOBS:-2}" --target host_tests >/dev/null
ctest --test-dir build/cmake --output-on-failure

if python - <<'PY'
import sys, torch
sys.path.insert(0, "tools")
from cuda_toolkit import find_cuda_home
sys.exit(0 if torch.version.cuda and find_cuda_home() else 1)
PY
then
  stage "CUDA kernels: registers, shared memory, spills (fails on spills)"
  python tools/cuda_resources.py
  export FCN_EXPECT_CUDA_KERNELS=1  # tests/test_cuda_backend.py checks every CUDA kernel is registered
fi

stage "pytest"
python -m pytest -q "$@"

stage "pytest: Triton kernels under the interpreter (TRITON_INTERPRET=1 must be set before triton is imported)"
TRITON_INTERPRET=1 python -m pytest -q -m triton tests  # tests/triton and the op suites' triton parameters

stage "benchmarks (smoke: each once, untimed)"
python -m pytest -q benchmarks --benchmark-disable -p no:cacheprovider

stage "the GPU check's stages on CPU (benchmarks/gpu_check.sh --cpu-smoke)"
PYTHON="$PWD/$venv/bin/python" bash benchmarks/gpu_check.sh --cpu-smoke

stage "sanitizers: ASan + UBSan (scripts/sanitize.sh)"
bash scripts/sanitize.sh

stage "packaging: sdist, wheel, fresh venv, smoke test outside the tree (scripts/check_package.sh)"
bash scripts/check_package.sh
stage "all passed"
