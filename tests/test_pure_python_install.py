"""FCN_KERNELS_NO_EXT=1 installs pure Python: only the reference backend, and forced C++ backends
are clear errors. Installs into a temporary directory and imports from there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pure_python_install(tmp_path):
    target = tmp_path / "site"
    env = dict(os.environ, FCN_KERNELS_NO_EXT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-build-isolation",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert not list(target.glob("fcn_kernels/_C*")), "a pure-Python install must not build _C"
    script = """
import torch, fcn_kernels
assert fcn_kernels.__file__.startswith(%r), fcn_kernels.__file__
assert fcn_kernels.available_backends() == ["reference"], fcn_kernels.available_backends()
x, w = torch.randn(1, 2, 3, 3), fcn_kernels.bilinear_kernel(2, 4, groups=2)
y = fcn_kernels.upsample_skip(x, w, stride=2, groups=2)
assert torch.equal(y, torch.nn.functional.conv_transpose2d(x, w, stride=2, groups=2))
try:
    fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="cpu")
except RuntimeError as e:
    assert "built without cpu kernels" in str(e), e
else:
    raise AssertionError("backend='cpu' without the extension must raise")
print("ok")
""" % str(target)
    # -S: no .pth files, so an editable install of this checkout in the running environment cannot
    # supply fcn_kernels._C; torch comes from its site directory, put on the path by hand.
    import torch

    env = {k: v for k, v in os.environ.items() if k != "FCN_KERNELS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(Path(torch.__file__).parents[1])])
    out = subprocess.run(
        [sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
