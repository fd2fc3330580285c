#!/usr/bin/env bash
# The GPU check, staged: one call on a bare GPU machine (torch, triton, nvcc, no internet) builds, checks
# and measures everything within 9 minutes on an H200, and brings every log back in one folder.
#
#   bash benchmarks/gpu_check.sh               on a GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke   the same stages on a CPU, tiny sizes (CI: keeps the script working)
#
# Stages, each under its own timeout, each logging to $out/<stage>.log; a failing stage does not stop the
# later ones; the summary ($out/summary.txt) gives rc and seconds per stage; the exit status is 1 if any failed.
#   build       the extension in place, CUDA for sm_90 only (smoke: reuses a built extension, else a CPU build)
#   doctor      python -m fcn_kernels.app.doctor --json doctor.json
#   cuda-tests  every CUDA kernel registered (FCN_EXPECT_CUDA_KERNELS=1), then pytest -m cuda
#   triton-tests  pytest tests/triton, autotuning cut to one config (FCN_KERNELS_TRITON_AUTOTUNE=0); smoke: a
#               few cases under TRITON_INTERPRET=1
#   memcheck, racecheck, initcheck  compute-sanitizer over tools/cuda_sanitize.py, without PyTorch's
#               caching allocator (PYTORCH_NO_CUDA_MEMORY_CACHING=1: a read past a small tensor then lands
#               outside any allocation); smoke: the same calls on the cpu backend, no sanitizer
#   head-bench  fcn-kernels bench: the FCN-8s head at batch 1 and 16, fp32 (depthwise and dense weights) and
#               bf16 (depthwise), fwd and fwd+bwd (head-<dtype>.json); fp32 stock columns with TF32 (cuDNN's
#               default) and IEEE fp32
#   rarefied-bench  a few rarefied_conv2d shapes (rarefied.json), torch.compile once per shape
# Environment: PYTHON (default python3; every tool runs as `$PYTHON -m ...`), FCN_GPU_CHECK_OUT (the results
# folder; default benchmarks/results/<date>-<gpu>/, smoke: build/gpu-check-smoke/), MAX_JOBS (default 16).
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
case "${1:-}" in
  --cpu-smoke) SMOKE=1 ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--cpu-smoke]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SMOKE PY

if [ "$SMOKE" = 1 ]; then
  out=${FCN_GPU_CHECK_OUT:-build/gpu-check-smoke}
else
  gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_') if torch.cuda.is_available() else 'no-gpu')")
  out=${FCN_GPU_CHECK_OUT:-benchmarks/results/$(date -u +%Y-%m-%d)-$gpu}
fi
mkdir -p "$out"
export OUT_DIR="$out"

# Seconds per stage, summing to under 9 minutes: estimates, not yet measured on a GPU.
declare -A LIMIT=([build]=120 [doctor]=35 [cuda-tests]=75 [triton-tests]=70 [memcheck]=50 [racecheck]=45
                  [initcheck]=35 [head-bench]=70 [rarefied-bench]=45)
[ "$SMOKE" = 1 ] || export FCN_KERNELS_TRITON_AUTOTUNE=0
PT_TIMEOUT=(); [ "$SMOKE" = 1 ] || PT_TIMEOUT=(--timeout=25)
export PT_TIMEOUT_STR="${PT_TIMEOUT[*]}"
[ "$SMOKE" = 1 ] && LIMIT=([build]=600 [doctor]=120 [cuda-tests]=120 [triton-tests]=120 [memcheck]=120
                           [head-bench]=120 [rarefied-bench]=300)

stage_build() {
  if [ "$SMOKE" = 1 ]; then
    "$PY" -c "import fcn_kernels, sys; sys.exit('cpu' not in fcn_kernels.available_backends())" \
      && { echo "reusing the built extension"; return 0; }
    FCN_KERNELS_NO_CUDA=1 MAX_JOBS=${MAX_JOBS:-2} "$PY" setup.py -q build_ext --inplace
  else
    TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-16} "$PY" setup.py -q build_ext --inplace || return
  fi
  "$PY" - <<'PY'
import sys, fcn_kernels, torch
print("backends:", fcn_kernels.available_backends())
if torch.cuda.is_available() and "cuda" not in fcn_kernels.available_backends():
    sys.exit(f"no CUDA kernels in the build: {fcn_kernels._ext.EXTENSION_ERROR or 'built without CUDA'}")
PY
}

stage_doctor() { FCN_KERNELS_TRITON_AUTOTUNE=0 "$PY" -m fcn_kernels.app.doctor --json "$OUT_DIR/doctor.json"; }

stage_cuda_tests() {
  if [ "$SMOKE" != 1 ]; then  # every CUDA kernel registered (else every GPU test would skip and pass)
    FCN_EXPECT_CUDA_KERNELS=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_backend.py \
      -k test_cuda_kernels_registered || return
  fi
  "$PY" -m pytest -v -p no:cacheprovider $PT_TIMEOUT_STR -m cuda tests --ignore=tests/triton -rs --junitxml="$OUT_DIR/cuda-tests.xml"
}

stage_triton_tests() {
  local smoke=()  # smoke: a few cases through Triton's interpreter (the whole suite is CI's own step)
  [ "$SMOKE" = 1 ] && { export TRITON_INTERPRET=1; smoke=(-k cases_float64); }
  [ "$SMOKE" = 1 ] || smoke=(--ignore=tests/triton/test_triton_property.py -k "cases or lower_precision or dot or batch_zero or opcheck or deterministic or channels_last or non_contiguous")
  FCN_KERNELS_TRITON_AUTOTUNE=0 "$PY" -m pytest -v -p no:cacheprovider $PT_TIMEOUT_STR tests/triton -rs "${smoke[@]}" \
    --junitxml="$OUT_DIR/triton-tests.xml"
}

sanitize() {  # sanitize TOOL
  if [ "$SMOKE" = 1 ]; then
    "$PY" tools/cuda_sanitize.py --device cpu
    return
  fi
  local sanitizer home
  sanitizer=$(command -v compute-sanitizer || true)
  home=$("$PY" -c "import sys; sys.path.insert(0, 'tools'); from cuda_toolkit import find_cuda_home; print(find_cuda_home() or '')")
  [ -z "$sanitizer" ] && [ -x "$home/bin/compute-sanitizer" ] && sanitizer="$home/bin/compute-sanitizer"
  [ -n "$sanitizer" ] || { echo "compute-sanitizer not found"; return 1; }
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$sanitizer" --tool "$1" --report-api-errors no --error-exitcode 1 "$PY" tools/cuda_sanitize.py
}
stage_memcheck() { sanitize memcheck; }
stage_racecheck() { sanitize racecheck; }
stage_initcheck() { sanitize initcheck; }

stage_head_bench() {
  local backends dtype rc=0
  backends=$("$PY" -c "import fcn_kernels as f, sys; print(' '.join(b for b in (('cpu',) if sys.argv[1] == '1' else ('cuda', 'triton')) if b in f.available_backends()))" "$SMOKE")
  for dtype in float32 bfloat16; do
    if [ "$SMOKE" = 1 ]; then
      "$PY" -m fcn_kernels.app.cli bench --device cpu --batch 1 --weights depthwise --dtype "$dtype" --backward \
        --image 64 --repeat 1 --no-compile --backend $backends --json "$OUT_DIR/head-$dtype.json" || rc=1
    else
      # bf16: depthwise only (FCN's own upsampling), to keep the compiles within the stage's time
      "$PY" -m fcn_kernels.app.cli bench --device cuda --batch 1 16 --weights depthwise \
        $([ "$dtype" = float32 ] && echo dense) --dtype "$dtype" --backward --repeat 10 --backend $backends \
        --json "$OUT_DIR/head-$dtype.json" || rc=1
    fi
  done
  return $rc
}

stage_rarefied_bench() {
  # fp32 and bf16, forward and forward+backward, on dense 512->512 at r 2 and depthwise 64 channels at
  # r 2 and 8; torch.compile(stock) once per shape (fp32 forward)
  local select="(dense and -2-) or (depthwise and -64- and (-2- or -8-))"
  if [ "$SMOKE" = 1 ]; then
    "$PY" -m pytest -q -p no:cacheprovider benchmarks/bench_rarefied_conv2d.py --benchmark-disable -k "$select"
  else
    FCN_BENCH_FULL=1 "$PY" -m pytest -q -p no:cacheprovider benchmarks/bench_gpu_rarefied_conv2d.py \
      -k "($select) and (not compiled or (fp32 and not fwdbwd))" --benchmark-max-time=0.1 \
      --benchmark-group-by=group --benchmark-columns=median,iqr --benchmark-json="$OUT_DIR/rarefied.json"
  fi
}
export -f stage_build stage_doctor stage_cuda_tests stage_triton_tests sanitize stage_memcheck stage_racecheck \
  stage_initcheck stage_head_bench stage_rarefied_bench

STAGES=(build doctor cuda-tests triton-tests memcheck racecheck initcheck head-bench rarefied-bench)
[ "$SMOKE" = 1 ] && STAGES=(build doctor cuda-tests triton-tests memcheck head-bench rarefied-bench)

{
  echo "gpu_check $([ "$SMOKE" = 1 ] && echo "--cpu-smoke ")$(date -u +%Y-%m-%dT%H:%M:%SZ), $("$PY" -V 2>&1), $(git rev-parse --short HEAD 2>/dev/null)"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')" 2>&1
} > "$out/summary.txt"
failed=0
for name in "${STAGES[@]}"; do
  t0=$SECONDS
  echo "== $name (at most ${LIMIT[$name]}s) -> $out/$name.log"
  timeout -k 10 "${LIMIT[$name]}" bash -c "stage_${name//-/_}" > "$out/$name.log" 2>&1
  rc=$?
  [ $rc = 0 ] || failed=1
  [ $rc = 124 ] && echo "(timed out after ${LIMIT[$name]}s)" >> "$out/$name.log"
  tail -n 3 "$out/$name.log"
  printf '%-15s rc=%-3s %4ss%s\n' "$name" "$rc" "$((SECONDS - t0))" "$([ $rc = 124 ] && echo ' (timed out)')" \
    >> "$out/summary.txt"
done
echo "== summary ($out/summary.txt)"
cat "$out/summary.txt"
exit $failed
