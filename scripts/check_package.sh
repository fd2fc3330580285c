#!/usr/bin/env bash
# Packaging, CPU only: an sdist, a wheel built from that sdist in a fresh venv without build
# isolation (so the sdist must hold everything setup.py reads), the wheel installed there, and a
# smoke test run from outside the source tree. The fresh venv gets torch from FCN_PACKAGE_TORCH
# (default torch==2.13.0+cpu, a CPU build on this machine's disk). Needs the environment of
# scripts/setup.sh (FCN_VENV, default .venv) for the sdist.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FCN_VENV:-.venv}
out=$PWD/build/package
rm -rf "$out"
mkdir -p "$out/dist" "$out/run"
# Runs a command, showing its output only if it fails.
quiet() {
  "$@" >"$out/step.log" 2>&1 || { local rc=$?; cat "$out/step.log"; return $rc; }
}

quiet "$venv/bin/python" -m build --sdist --no-isolation --outdir "$out/dist" .
sdist=$(ls "$out"/dist/*.tar.gz)
echo "sdist: $(basename "$sdist") ($(tar tzf "$sdist" | wc -l) files)"

python3 -m venv "$out/venv"
pip() { "$out/venv/bin/python" -m pip "$@"; }
quiet pip install -q --disable-pip-version-check "${FCN_PACKAGE_TORCH:-torch==2.13.0+cpu}" setuptools wheel ninja
FCN_KERNELS_NO_CUDA=1 MAX_JOBS=${MAX_JOBS:-2} quiet pip wheel -q --disable-pip-version-check --no-build-isolation \
  --no-deps -w "$out/dist" "$sdist"
wheel=$(ls "$out"/dist/*.whl)
echo "wheel: $(basename "$wheel")"
quiet pip install -q --disable-pip-version-check "$wheel"
[ -n "$(ls "$out"/venv/lib/python3*/site-packages/fcn_kernels/_C*.so 2>/dev/null)" ] ||
  { echo "check_package.sh: the wheel has no compiled extension" >&2; exit 1; }

cd "$out/run"  # no fcn_kernels/ here: the import must find the installed package
"$out/venv/bin/python" -W error::RuntimeWarning - <<'PY'
import importlib.metadata

import torch
import torch.nn.functional as F

import fcn_kernels

assert "site-packages" in fcn_kernels.__file__, fcn_kernels.__file__
assert fcn_kernels.__version__ == importlib.metadata.version("fcn-kernels"), fcn_kernels.__version__
assert "cpu" in fcn_kernels.available_backends(), (fcn_kernels.available_backends(), fcn_kernels._ext.EXTENSION_ERROR)
x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
w = fcn_kernels.bilinear_kernel(3, 4, groups=3).double()
y = fcn_kernels.upsample_skip(x, w, stride=2, groups=3, out_offset=(1, 1), out_size=(8, 6), backend="cpu")
torch.testing.assert_close(y, F.conv_transpose2d(x, w, stride=2, groups=3)[:, :, 1:9, 1:7])
k = torch.randn(4, 3, 3, 3, dtype=torch.float64)
torch.testing.assert_close(fcn_kernels.rarefied_conv2d(x, k, rarefaction=2, padding=2, backend="cpu"),
                           F.conv2d(x, k, padding=2, dilation=2))
fcn_kernels.metrics  # a public submodule, loaded on first use
print(f"installed fcn-kernels {fcn_kernels.__version__} (torch {torch.__version__}): "
      f"backends {fcn_kernels.available_backends()}, both ops equal the stock composition")
PY
