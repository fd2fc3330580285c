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
from test_upsample_skip import LAYOUTS  # noqa: E402
from upsample_cases import Case, random_case  # noqa: E402

ON_CPU = DEVICE == "cpu"

CASES = {
    "upscore8-dw": Case(2, 3, 3, 3, 4, 3, (16, 16), (8, 8), (31, 5), (7, 13), (0, 0), None, True),
    "upscore2+pool4-dw": Case(1, 4, 4, 4, 4, 5, (4, 4), (2, 2), (0, 0), None, (5, 5), (16, 18), False),
    "dense": Case(2, 4, 6, 2, 3, 4, (5, 3), (2, 3), (1, 2), None, (0, 1), (9, 12), True),
    "edges": Case(1, 2, 3, 1, 3, 3, (3, 4), (3, 1), (0, 2), (9, 4), (2, 0), (11, 4), True),
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
        case = random_case(rng, max_batch=1)
        case.H, case.W = min(case.H, 3), min(case.W, 3)
        case.out_offset, case.out_size, case.skip_hw = (0, 0), (2, 3), None
        check(case, torch.float32)


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
