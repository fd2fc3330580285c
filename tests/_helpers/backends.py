"""The backends every op suite runs on, as pytest parameters (after torchvision's `cpu_and_cuda()`):

    cpu     the C++ kernels
    cuda    the CUDA kernels, marked `cuda` (needs a GPU)
    triton  the Triton kernels, marked `triton`: on a GPU, or on CPU tensors under Triton's interpreter,
            which runs in a pytest process of its own (`TRITON_INTERPRET=1 python -m pytest -m triton tests`,
            scripts/test.sh). The interpreter is slow, so Triton gets tiny shapes and few cases (`tiny`).

A parameter whose backend cannot run here is skipped, with the reason. `gpu_check(...)` marks the values that
benchmarks/gpu_check.sh runs on a GPU (marker `gpu_check`): a subset that fits about a minute per backend.
"""

import random

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


def case_grid(names, dtypes, triton_cases, gpu_check_cases):
    """Params of (backend, name, dtype) for an op's named cases: cpu and cuda take every name in every dtype,
    triton its (name, dtype) pairs; the pairs in gpu_check_cases are marked gpu_check (cuda and triton)."""

    def checked(pairs):
        return [gpu_check(*p) if p in gpu_check_cases else p for p in pairs]

    every = [(n, d) for n in names for d in dtypes]
    return grid(cpu=every, cuda=checked(every), triton=checked(triton_cases))


def case_tests(check, cases, dtypes, triton_cases, gpu_check_cases):
    """An op's test_cases: check(cases[name], backend, dtype) over case_grid(cases, dtypes, ...)."""

    @pytest.mark.parametrize("backend, name, dtype", case_grid(cases, dtypes, triton_cases, gpu_check_cases))
    def test_cases(seed, backend, name, dtype):
        check(cases[name], backend, dtype)

    return test_cases


def opcheck_grid(names, cuda_checked, triton_names, triton_checked):
    """Params of (backend, name) for an op's opcheck problems: cpu and cuda take every name, triton its
    triton_names on a GPU only (NEEDS_GPU); cuda's cuda_checked and triton's triton_checked marked gpu_check."""
    triton = [
        pytest.param(n, marks=[NEEDS_GPU] + ([pytest.mark.gpu_check] if n in triton_checked else []))
        for n in triton_names
    ]
    return grid(cpu=names, cuda=[gpu_check(n) if n in cuda_checked else n for n in names], triton=triton)


def cuda_path_grid(names, gpu_check_paths):
    """Params of (backend, name, dtype, index) for the CUDA kernels' path cases: each name in float64, float32
    and bfloat16, through the 32- and the 64-bit index paths; the triples in gpu_check_paths marked gpu_check.
    Parametrize with indirect=["index"]: conftest's `index` fixture selects the path."""
    triples = (
        (n, d, i) for n in names for d in (torch.float64, torch.float32, torch.bfloat16) for i in ("int32", "int64")
    )
    return grid(cuda=[gpu_check(*p) if p in gpu_check_paths else p for p in triples])


def assert_cuda_matches_triton(run, fn, inputs, grad_out, kwargs, label):
    """fn's output and input grads (run(fn, inputs, grad_out, backend=..., **kwargs)) agree between the cuda
    and the triton backend: to 1e-10 in float64, 1e-4 otherwise; a failure names `label`."""
    tol = dict(rtol=1e-10, atol=1e-10) if grad_out.dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    cuda = run(fn, inputs, grad_out, backend="cuda", **kwargs)
    trit = run(fn, inputs, grad_out, backend="triton", **kwargs)
    torch.testing.assert_close(cuda[0], trit[0], **tol, msg=lambda m: f"{label}: {m}")
    for a, b in zip(cuda[1], trit[1]):
        if a is not None:
            torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{label}: {m}")


def assert_cuda_matches_triton_on_random_cases(seed, dtype, random_case, inputs_of, out_hw, run, fn, count=10):
    """assert_cuda_matches_triton on `count` problems of random_case(rng): inputs_of(problem, dtype) on CUDA,
    a random grad_out of out_hw(problem); skipped without the Triton backend."""
    if "triton" not in fcn_kernels.available_backends():
        pytest.skip("needs the Triton backend")
    rng = random.Random(seed)
    for _ in range(count):
        problem = random_case(rng)
        inputs = [t.cuda() if t is not None else None for t in inputs_of(problem, dtype)]
        go = torch.randn(problem.N, problem.cout, *out_hw(problem), dtype=dtype, device="cuda")
        assert_cuda_matches_triton(run, fn, inputs, go, problem.kwargs(), problem)


def cuda_kernel_tests(path_cases, gpu_check_paths, check_against_reference, *random_cases):
    """An op's test_cuda_kernel_paths (check_against_reference(case, backend, dtype) of each path case, see
    cuda_path_grid) and test_cuda_matches_triton (its two GPU backends on the same random problems, forward and
    backward: assert_cuda_matches_triton_on_random_cases(seed, dtype, *random_cases)); bind both in the suite."""

    @pytest.mark.parametrize(
        "backend, name, dtype, index", cuda_path_grid(path_cases, gpu_check_paths), indirect=["index"]
    )
    def test_cuda_kernel_paths(backend, name, dtype, index):
        check_against_reference(path_cases[name], backend, dtype)

    @pytest.mark.parametrize("backend, dtype", grid(cuda=[torch.float64, torch.float32]))
    def test_cuda_matches_triton(seed, backend, dtype):
        assert_cuda_matches_triton_on_random_cases(seed, dtype, *random_cases)

    return test_cuda_kernel_paths, test_cuda_matches_triton


def triton_case_pairs(names, float64_names, half_names):
    """Triton's (name, dtype) pairs: each case (each kernel path) in float32, the FMA paths' float64_names in
    float64 (no float64 tl.dot), half_names (the depthwise, FMA and tl.dot paths) in bfloat16 and float16."""
    return (
        [(n, torch.float32) for n in names]
        + [(n, torch.float64) for n in float64_names]
        + [(n, d) for d in (torch.bfloat16, torch.float16) for n in half_names]
    )
