"""The CUDA C++ backend: registration (checked on every CUDA build, GPU or not) and, on a GPU, the
same comparisons with the reference as the CPU kernels, plus agreement with the CPU kernels."""
import os
import random

import pytest
import torch

import fcn_kernels
from fcn_kernels import reference
from rarefied_cases import forward_backward, random_case as rarefied_case
from tolerances import assert_close_bound
from upsample_cases import case, check_against_reference, make_inputs, random_case, run

# Every op: each has kernels in csrc/cuda/.
CUDA_OPS = [f"{op}{suffix}" for op in ("upsample_skip", "rarefied_conv2d")
            for suffix in ("", "_backward_input", "_backward_weight")]


# Checked twice: marked cuda, so that a GPU run (-m cuda) fails on a build without CUDA kernels instead of
# skipping every GPU test; and without a GPU where scripts/test.sh expects CUDA kernels (a CUDA torch and
# toolkit: FCN_EXPECT_CUDA_KERNELS=1).
@pytest.mark.parametrize("where", [pytest.param("gpu", marks=pytest.mark.cuda), "build"])
@pytest.mark.parametrize("op", CUDA_OPS)
def test_cuda_kernels_registered(op, where):
    if where == "build" and os.environ.get("FCN_EXPECT_CUDA_KERNELS") != "1":
        pytest.skip("FCN_EXPECT_CUDA_KERNELS not set (scripts/test.sh sets it on a CUDA build)")
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
    problem = case(N=2, channels=21, groups=21, H=70, W=70, K=16, stride=8, out_offset=31, out_size=500)
    x, w, _, _ = make_inputs(problem, torch.float32)
    outs = []
    for _ in range(2):
        xc = x.cuda().requires_grad_()
        wc = w.cuda().requires_grad_()
        y = fcn_kernels.upsample_skip(xc, wc, backend="cuda", **problem.kwargs())
        y.backward(torch.ones_like(y))
        outs.append((y, xc.grad, wc.grad))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    y_cpu = fcn_kernels.upsample_skip(x, w, backend="cpu", **problem.kwargs())
    torch.testing.assert_close(outs[0][0].cpu(), y_cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@gpu
def test_cuda_opcheck_and_compile():
    x = torch.randn(2, 4, 5, 6, device="cuda", requires_grad=True)
    w = torch.randn(4, 3, 4, 4, device="cuda", requires_grad=True)
    skip = torch.randn(2, 6, 15, 16, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.fcn_kernels.upsample_skip.default,
                          (x, w, None, skip, [2, 2], 2, [1, 2], [9, 10], [3, 2]))
    kw = dict(stride=2, groups=2, out_offset=(1, 2), out_size=(9, 10), skip_offset=(3, 2))
    f = torch.compile(lambda x, s: fcn_kernels.upsample_skip(x, w, None, s, **kw), fullgraph=True)
    # against float64 on CPU: a CUDA float32 reference may run cuDNN in TF32
    exact = reference.upsample_skip(x.detach().cpu().double(), w.detach().cpu().double(), None,
                                    skip.detach().cpu().double(), **kw)
    torch.testing.assert_close(f(x, skip).cpu().double(), exact, rtol=1e-5, atol=1e-5)


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


triton_too = pytest.mark.skipif("triton" not in fcn_kernels.available_backends(), reason="needs the Triton backend")


@pytest.mark.cuda
@gpu
@triton_too
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_triton(seed, dtype):
    """The two GPU backends on the same inputs, forward and backward, both ops."""
    rng = random.Random(seed)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for _ in range(10):
        case = random_case(rng)
        inputs = [t.cuda() if t is not None else None for t in make_inputs(case, dtype)]
        go = torch.randn(case.N, case.cout, *case.crop, dtype=dtype, device="cuda")
        cuda = run(fcn_kernels.upsample_skip, inputs, go, backend="cuda", **case.kwargs())
        trit = run(fcn_kernels.upsample_skip, inputs, go, backend="triton", **case.kwargs())
        torch.testing.assert_close(cuda[0], trit[0], **tol, msg=lambda m: f"{case}: {m}")
        for a, b in zip(cuda[1], trit[1]):
            if a is not None:
                torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{case}: {m}")
        x, weight, bias, kw = rarefied_case(rng, dtype=dtype)
        on = lambda t: t.cuda() if t is not None else None
        cuda, grad = forward_backward(fcn_kernels.rarefied_conv2d, on(x), on(weight), on(bias), dict(kw, backend="cuda"))
        trit, _ = forward_backward(fcn_kernels.rarefied_conv2d, on(x), on(weight), on(bias),
                                   dict(kw, backend="triton"), grad)
        for a, b in zip(cuda, trit):
            if a is not None:
                torch.testing.assert_close(a, b, **tol)


# Shapes that take each path of csrc/cuda/plane_kernel.cuh: widths that are and are not a multiple of
# the 16-byte run (vector and scalar stores, misaligned skip rows), more channels than one weight slab
# holds (64 x 16 x 16 fp32 > 32 KB), filters too big for the tile (read in place), and more planes
# and weight slices than one grid dimension takes (the grid-stride loops).
PATH_CASES = {
    "fcn8s_upscore8_even": case(N=2, channels=21, groups=21, H=63, W=63, K=16, stride=8, out_offset=31,
                                out_size=500),
    "fcn8s_upscore8_odd": case(channels=21, groups=21, H=63, W=63, K=16, stride=8, out_offset=31,
                               out_size=(497, 501), bias=True),
    "skip_misaligned": case(N=2, channels=6, groups=6, H=9, W=11, K=4, stride=2, out_offset=1, out_size=(17, 19),
                            skip_offset=(5, 3), skip_hw=(25, 27), bias=True),
    "dense_two_slabs": case(channels=64, H=5, W=6, K=16, stride=8, out_offset=(3, 5), bias=True),
    "untiled_filter": case(channels=2, groups=2, H=2, W=3, K=(1, 9000), stride=1, out_offset=(0, 100),
                           out_size=(2, 37)),
    "many_planes": case(channels=70000, groups=70000, H=1, W=2, K=2, stride=2, bias=True),
}


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("index64", [False, True], ids=["int32", "int64"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", PATH_CASES)
def test_cuda_kernel_paths_against_reference(name, dtype, index64, monkeypatch):
    if index64:
        monkeypatch.setenv("FCN_KERNELS_CUDA_INDEX64", "1")
    check_against_reference(PATH_CASES[name], "cuda", dtype, device="cuda")


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("index64", [False, True], ids=["int32", "int64"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_rarefied_kernel_paths(dtype, index64, monkeypatch):
    """Odd and 16-byte-multiple widths, channels past one slab, a filter past the tile, more planes than
    one grid dimension takes."""
    if index64:
        monkeypatch.setenv("FCN_KERNELS_CUDA_INDEX64", "1")
    g = torch.Generator().manual_seed(0)
    shapes = [((2, 21, 64, 64), (21, 1, 3, 3), 21, 2, 2), ((1, 21, 63, 61), (21, 1, 3, 3), 21, 4, 4),
              ((1, 512, 12, 13), (8, 512, 3, 3), 1, 2, 2), ((1, 2, 1, 9000), (2, 1, 1, 8500), 2, 1, 0),
              ((1, 70000, 2, 3), (70000, 1, 1, 2), 70000, 1, 0)]
    for xs, ws, groups, r, pad in shapes:
        x = torch.randn(xs, generator=g, dtype=torch.float64).to(dtype)
        w = torch.randn(ws, generator=g, dtype=torch.float64).to(dtype)
        kw = dict(rarefaction=r, padding=pad, groups=groups)
        ours, grad = forward_backward(fcn_kernels.rarefied_conv2d, x.cuda(), w.cuda(), None, dict(kw, backend="cuda"))
        ref, _ = forward_backward(reference.rarefied_conv2d, x.double(), w.double(), None, kw, grad.cpu().double())
        mag, _ = forward_backward(reference.rarefied_conv2d, x.double().abs(), w.double().abs(), None, kw,
                                  grad.cpu().double().abs())
        terms = max(xs[0] * ref[0].shape[2] * ref[0].shape[3], w[0].numel() * ws[0])
        for a, b, m in zip(ours, ref, mag):
            if b is not None:
                assert_close_bound(a.cpu(), b, m, terms, dtype, f"rarefied cuda {dtype} {xs} {ws}")


@pytest.mark.cuda
@gpu
def test_cuda_rarefied_deterministic(seed):
    x = torch.randn(2, 21, 33, 35, device="cuda")
    w = torch.randn(21, 1, 3, 3, device="cuda")
    runs = [forward_backward(fcn_kernels.rarefied_conv2d, x, w, None, dict(rarefaction=2, padding=2, groups=21,
                                                                            backend="cuda"), torch.ones(2, 21, 33, 35,
                                                                                                        device="cuda"))[0]
            for _ in range(2)]
    for a, b in zip(*runs):
        if a is not None:
            assert torch.equal(a, b)
