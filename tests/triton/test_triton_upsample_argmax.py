"""upsample_argmax's Triton kernel (fcn_kernels/triton/upsample_argmax.py) against the float64 reference: on
CUDA tensors with a GPU, else on CPU tensors under TRITON_INTERPRET=1 (see conftest.py). Tiny shapes."""
import random

import pytest
import torch

from triton_env import DEVICE, RUNNABLE

if not RUNNABLE:
    pytest.skip("Triton kernels need a CUDA GPU or TRITON_INTERPRET=1 (run: TRITON_INTERPRET=1 python -m pytest "
                "tests/triton)", allow_module_level=True)
pytest.importorskip("triton")

import fcn_kernels  # noqa: E402
from argmax_cases import check_argmax  # noqa: E402
from upsample_cases import LAYOUTS, case, random_case  # noqa: E402

ON_CPU = DEVICE == "cpu"

CASES = {
    "upscore8-dw": case(N=2, channels=3, groups=3, H=4, W=3, K=16, stride=8, out_offset=(31, 5), out_size=(7, 13),
                        bias=True),
    "upscore2+pool4-dw": case(channels=4, groups=4, H=4, W=5, K=4, stride=2, skip_offset=5, skip_hw=(16, 18)),
    "dense": case(N=2, cin=4, cout=6, groups=2, H=3, W=4, K=(5, 3), stride=(2, 3), out_offset=(1, 2), skip_offset=(0, 1),
                  skip_hw=(9, 12), bias=True),
    "edges": case(cin=2, cout=3, H=3, W=3, K=(3, 4), stride=(3, 1), out_offset=(0, 2), out_size=(9, 4), skip_offset=(2, 0),
                  skip_hw=(11, 4), bias=True),
}


def check(case, dtype):
    labels, inputs = check_argmax(case, "triton", dtype, device=DEVICE)
    if ON_CPU:  # the interpreter rounds like the Triton upsample_skip (FMA contraction on a GPU may differ)
        scores = fcn_kernels.upsample_skip(*inputs, backend="triton", **case.kwargs())
        assert torch.equal(labels, scores.argmax(1).cpu()), f"{dtype} {case}"


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_cases(seed, name, dtype):
    check(CASES[name], dtype)


def test_random_cases(seed):
    rng = random.Random(seed)
    for _ in range(3):
        problem = random_case(rng, max_batch=1)
        problem.H, problem.W = min(problem.H, 3), min(problem.W, 3)
        # a small window (the interpreter is slow) that fits the shrunken full output
        problem.out_offset, problem.skip_hw = (0, 0), None
        problem.out_size = tuple(min(n, f) for n, f in zip((2, 3), problem.full))
        check(problem, torch.float32)


def test_batch_zero_ties_and_nan():
    x, w = torch.randn(0, 3, 3, 3, device=DEVICE), torch.randn(3, 1, 4, 4, device=DEVICE)
    assert fcn_kernels.upsample_argmax(x, w, stride=2, groups=3, backend="triton").shape == (0, 8, 8)
    x, w = torch.randn(1, 4, 3, 3, device=DEVICE), torch.zeros(4, 1, 4, 4, device=DEVICE)
    nan = float("nan")
    for bias, want in (([0.0, 0.0, 0.0, 0.0], 0), ([0.0, 2.0, 2.0, 1.0], 1), ([1.0, nan, 5.0, nan], 1)):
        b = torch.tensor(bias, device=DEVICE)
        got = fcn_kernels.upsample_argmax(x, w, b, stride=2, groups=4, backend="triton")
        assert (got == want).all(), bias


@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(seed, layout):
    check_argmax(CASES["dense"], "triton", torch.float32, transform=LAYOUTS[layout], device=DEVICE)
