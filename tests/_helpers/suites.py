"""The tests every op suite shares, built from its cases over the backends' parameters (backends.py): the named
cases on every backend (case_tests), opcheck's problems (opcheck_grid), the CUDA kernels' index paths and the
two GPU backends against each other (cuda_kernel_tests). A suite binds what they return to test_* names."""

import random

import pytest
import torch

import fcn_kernels

from .backends import NEEDS_GPU, gpu_check, grid


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
