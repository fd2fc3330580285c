"""The backends every op suite runs on, as pytest parameters (after torchvision's `cpu_and_cuda()`):

    cpu     the C++ kernels
    cuda    the CUDA kernels, marked `cuda` (needs a GPU)
    triton  the Triton kernels, marked `triton`: on a GPU, or on CPU tensors under Triton's interpreter,
            which runs in a pytest process of its own (`TRITON_INTERPRET=1 python -m pytest -m triton tests`,
            scripts/test.sh). The interpreter is slow, so Triton gets tiny shapes and few cases (`tiny`).

A parameter whose backend cannot run here is skipped, with the reason. `gpu_check(...)` marks the values that
benchmarks/gpu_check.sh runs on a GPU (marker `gpu_check`): a subset that fits about a minute per backend.
"""

import pytest
import torch
from _pytest.mark.structures import ParameterSet

import fcn_kernels

from . import triton_env

BACKENDS = ("cpu", "cuda", "triton")
_MARKS = {"cpu": (), "cuda": (pytest.mark.cuda,), "triton": (pytest.mark.triton,)}
# Triton's triton_op fake/aot checks (opcheck) and torch.compile fail on CPU tensors, interpreter or not.
NEEDS_GPU = pytest.mark.cuda


def _unavailable(backend):
    """The reason `backend` cannot run here, or None."""
    available = fcn_kernels.available_backends()
    if backend == "cpu" and "cpu" not in available:
        return "fcn_kernels._C was not built (no CPU kernels)"
    if backend == "cuda" and not (torch.cuda.is_available() and "cuda" in available):
        return "needs a CUDA GPU and the CUDA kernels"
    if backend == "triton" and not (triton_env.RUNNABLE and "triton" in available):
        return triton_env.NOT_RUNNABLE
    return None


def device_of(backend: str) -> str:
    """Where a backend's kernels run: Triton on CUDA unless its interpreter runs it on CPU."""
    if backend == "cuda" or (backend == "triton" and not fcn_kernels.backends.triton_interpret()):
        return "cuda"
    return "cpu"


@pytest.fixture(autouse=False)
def backend_default_device(request):
    """For suites written with CPU tensors (the fused losses'): a test whose `backend` runs on CUDA creates its
    tensors there (torch's default device, for the test's duration). Use it with
    `pytestmark = pytest.mark.usefixtures("backend_default_device")` after importing it into the test module;
    a generator the test makes must be on torch.get_default_device()."""
    backend = getattr(request.node, "callspec", None) and request.node.callspec.params.get("backend")
    if backend is None or device_of(backend) == "cpu":
        yield
        return
    with torch.device(device_of(backend)):
        yield


def tiny(backend: str) -> bool:
    """Whether a test should take its small variant (the Triton interpreter runs every program in Python)."""
    return backend == "triton"


def gpu_check(*values):
    """Values of a parametrisation that benchmarks/gpu_check.sh runs on a GPU (marker gpu_check)."""
    return pytest.param(*values, marks=pytest.mark.gpu_check)


def _name(value):
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def _param(backend, value=()):
    """pytest.param(backend, *values) with the backend's marks, a skip where it cannot run, and value's marks."""
    marks = []
    if isinstance(value, ParameterSet):
        value, marks = value.values, list(value.marks)
    values = value if isinstance(value, tuple) else (value,)
    reason = _unavailable(backend)
    marks = [*_MARKS[backend], *marks] + ([pytest.mark.skip(reason=reason)] if reason else [])
    name = "-".join(_name(v) for v in (backend, *values) if v is not None)
    return pytest.param(backend, *values, marks=marks, id=name)


def backends(*names):
    """Params of `backend` alone: names (default: all three), each a string or pytest.param(name, marks=...)
    (e.g. gpu_check("cuda"), or pytest.param("triton", marks=NEEDS_GPU))."""
    out = []
    for name in names or BACKENDS:
        if isinstance(name, ParameterSet):
            (backend,), marks = name.values, name.marks
            out.append(_param(backend, pytest.param(marks=marks)))
        else:
            out.append(_param(name))
    return out


def grid(**per_backend):
    """Params of (backend, value, ...): per_backend[backend] lists that backend's values, each a value, a tuple
    of values (several argnames), or pytest.param(...) of them with marks (e.g. gpu_check(...))."""
    return [_param(backend, value) for backend, values in per_backend.items() for value in values]
