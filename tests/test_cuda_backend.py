"""The CUDA C++ backend: registration (checked on every CUDA build, GPU or not) and, on a GPU, the
same comparisons with the reference as the CPU kernels, plus agreement with the CPU kernels."""
import os
import random

import pytest
import torch

import fcn_kernels
from fcn_kernels import reference
from test_rarefied_conv2d import forward_backward, random_case as rarefied_case
from tolerances import assert_close_bound
from upsample_cases import Case, check_against_reference, make_inputs, random_case

# Every op: each has kernels in csrc/cuda/.
CUDA_OPS = [f"{op}{suffix}" for op in ("upsample_skip", "rarefied_conv2d")
            for suffix in ("", "_backward_input", "_backward_weight")]


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


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_rarefied_conv2d_against_reference(seed, dtype):
    rng = random.Random(seed)
    for _ in range(20):
        x, weight, bias, kw = rarefied_case(rng, dtype=dtype)
        on = lambda t: t.cuda() if t is not None else None
        ours, grad = forward_backward(fcn_kernels.rarefied_conv2d, on(x), on(weight), on(bias), dict(kw, backend="cuda"))
        x64, w64 = x.double(), weight.double()
        b64 = bias.double() if bias is not None else None
        ref, _ = forward_backward(reference.rarefied_conv2d, x64, w64, b64, kw, grad.cpu().double())
        mag, _ = forward_backward(reference.rarefied_conv2d, x64.abs(), w64.abs(),
                                  b64.abs() if b64 is not None else None, kw, grad.cpu().double().abs())
        terms = max(x.shape[0] * ref[0].shape[2] * ref[0].shape[3], weight[0].numel() * weight.shape[0])
        for a, b, m in zip(ours, ref, mag):
            if b is not None:
                assert_close_bound(a.cpu(), b, m, terms, dtype, f"rarefied cuda {dtype}")
