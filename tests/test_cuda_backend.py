"""The CUDA C++ backend: registration (checked on every CUDA build, GPU or not) and, on a GPU, the
same comparisons with the reference as the CPU kernels, plus agreement with the CPU kernels."""
import os
import random

import pytest
import torch

import fcn_kernels
from upsample_cases import Case, check_against_reference, make_inputs, random_case

# Ops with kernels in csrc/cuda/. (rarefied_conv2d's CUDA kernels are not written yet.)
CUDA_OPS = ["upsample_skip", "upsample_skip_backward_input", "upsample_skip_backward_weight"]


@pytest.mark.skipif(os.environ.get("FCN_EXPECT_CUDA_KERNELS") != "1",
                    reason="set by scripts/test.sh when torch is a CUDA build and a CUDA toolkit was found")
@pytest.mark.parametrize("op", CUDA_OPS)
def test_cuda_kernels_registered(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fcn_kernels::{op}", "CUDA"), op


gpu = pytest.mark.skipif(not torch.cuda.is_available() or "cuda" not in fcn_kernels.available_backends(),
                         reason="needs a GPU and the CUDA kernels")


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch", range(3))
def test_cuda_random_against_reference(seed, dtype, batch):
    rng = random.Random(seed)
    for _ in range(20):
        check_against_reference(random_case(rng), "cuda", dtype, device="cuda")


@pytest.mark.cuda
@gpu
def test_cuda_matches_cpu_kernels_and_is_deterministic(seed):
    case = Case(2, 21, 21, 21, 70, 70, (16, 16), (8, 8), (31, 31), (500, 500), (0, 0), None, False)
    x, w, _, _ = make_inputs(case, torch.float32)
    outs = []
    for _ in range(2):
        xc = x.cuda().requires_grad_()
        wc = w.cuda().requires_grad_()
        y = fcn_kernels.upsample_skip(xc, wc, backend="cuda", **case.kwargs())
        y.backward(torch.ones_like(y))
        outs.append((y, xc.grad, wc.grad))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    y_cpu = fcn_kernels.upsample_skip(x, w, backend="cpu", **case.kwargs())
    torch.testing.assert_close(outs[0][0].cpu(), y_cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@gpu
def test_cuda_opcheck_and_compile():
    x = torch.randn(2, 4, 5, 6, device="cuda", requires_grad=True)
    w = torch.randn(4, 3, 4, 4, device="cuda", requires_grad=True)
    skip = torch.randn(2, 6, 15, 16, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.fcn_kernels.upsample_skip.default,
                          (x, w, None, skip, [2, 2], 2, [1, 2], [9, 10], [3, 2]))
    f = torch.compile(lambda x, s: fcn_kernels.upsample_skip(x, w, None, s, stride=2, groups=2, out_offset=(1, 2),
                                                             out_size=(9, 10), skip_offset=(3, 2)), fullgraph=True)
    torch.testing.assert_close(f(x, skip), fcn_kernels.upsample_skip(x, w, None, skip, stride=2, groups=2,
                                                                     out_offset=(1, 2), out_size=(9, 10),
                                                                     skip_offset=(3, 2), backend="reference"))
