#!/usr/bin/env bash
# The C++ code under AddressSanitizer and UndefinedBehaviorSanitizer (CPU only; any report fails):
#   1. the ctest host tests (index math, the CUDA kernels' per-element math replayed on the host),
#   2. the CPU extension, built into build/sanitize/ (never over fcn_kernels/_C.so), and the op
#      tests run against it: every op (the losses' and the labels' too) forward and backward, every
#      dtype and layout, batch 0, crop windows at both edges, the property-based tests, the overflow
#      and numerical edge cases.
# Needs the environment of scripts/setup.sh (FCN_VENV, default .venv); pytest arguments replace the
# default test selection.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FCN_VENV:-.venv}
out=build/sanitize
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"
# halt_on_error: the first report ends the run. detect_leaks=0: CPython and torch never free their
# interned objects, registries and arenas at exit, so LeakSanitizer would report thousands of
# allocations that are not ours (and the kernels allocate only through ATen). allocator_may_return_null:
# an allocation too large to serve raises (as with glibc) instead of aborting the process.
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:allocator_may_return_null=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

echo "== sanitizers: ctest host tests (ASan + UBSan)"
cmake -S . -B "$out/cmake" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$sanitize -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS="$sanitize" >/dev/null
cmake --build "$out/cmake" -j "${MAX_JOBS:-2}" --target host_tests >/dev/null
ctest --test-dir "$out/cmake" --output-on-failure

echo "== sanitizers: the CPU extension (ASan + UBSan) in $out/lib"
FCN_KERNELS_NO_CUDA=1 FCN_KERNELS_SANITIZE=1 MAX_JOBS=${MAX_JOBS:-2} "$venv/bin/python" setup.py -q build_ext \
  --build-temp "$out/temp" --build-lib "$out/lib" 2>&1 | grep -v -e "^\[" -e "No CUDA runtime" || true
[ -f "$out/lib/fcn_kernels/_C.so" ] || { echo "sanitize.sh: the sanitized extension did not build" >&2; exit 1; }
# The package's Python files beside the sanitized _C.so: the tests import this copy.
(cd fcn_kernels && find . -name '*.py' -print0 | xargs -0 -I{} install -D -m 644 {} "../$out/lib/fcn_kernels/{}")

# -P: no current directory on sys.path, so `import fcn_kernels` finds the copy on PYTHONPATH. The ASan
# runtime must be the process's first library, so it is preloaded into the (uninstrumented) Python, with
# libstdc++: ASan's __cxa_throw interceptor needs the real one at start-up, or the first C++ exception
# thrown by a library loaded later (triton's, at import) aborts in a CHECK.
run() {
  LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)" PYTHONPATH="$PWD/$out/lib" \
    "$venv/bin/python" -P "$@"
}
run -c "import fcn_kernels, sys; f = fcn_kernels._ext._C.__file__; print('sanitized extension:', f); \
sys.exit(0 if f.startswith('$PWD/$out/lib/') else 1)"
echo "== sanitizers: op tests against the sanitized extension"
if [ $# -eq 0 ]; then
  # test_upsample_argmax's near ties: the forward's scores and upsample_argmax's are summed by different code
  # (aligned rows, the blocks) that must round alike in this -O1 build too, where the compiler contracts no
  # multiply-add
  set -- tests/test_upsample_skip.py tests/test_upsample_skip_cases.py tests/test_upsample_skip_errors.py \
    tests/test_rarefied_conv2d.py tests/test_upsample_argmax.py tests/test_interpolate_argmax.py \
    tests/test_upsample_cross_entropy.py tests/test_interpolate_cross_entropy.py tests/test_losses.py \
    tests/test_property.py tests/test_overflow.py tests/test_numerics.py \
    -k "not compile"
fi
# --capture=sys: a sanitizer report is written to file descriptor 2, which must not be a capture file.
run -m pytest -q -p no:cacheprovider --capture=sys "$@"
