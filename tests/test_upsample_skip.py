"""fcn_kernels.upsample_skip on CPU against fcn_kernels.reference (docs/DESIGN.md §2)."""
import random

import pytest
import torch

import fcn_kernels
from fcn_kernels import reference
from upsample_cases import FCN8S_STAGES, LAYOUTS, case, check_against_reference, make_inputs, random_case

pytestmark = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(),
                                reason="fcn_kernels._C was not built")


@pytest.mark.parametrize("batch", range(6))
def test_random_float64_forward_backward(seed, batch):
    rng = random.Random(seed)
    for _ in range(25):
        check_against_reference(random_case(rng), "cpu")




@pytest.mark.parametrize("stage", FCN8S_STAGES)
def test_fcn8s_stages_float64(seed, stage):
    check_against_reference(FCN8S_STAGES[stage], "cpu")


@pytest.mark.parametrize("stride", range(1, 9))
def test_every_stride_with_windows_at_both_edges(seed, stride):
    rng = random.Random(seed)
    for K in {1, stride, 2 * stride, 2 * stride + 1}:
        H, W = rng.randint(1, 5), rng.randint(1, 5)
        Hf, Wf = (H - 1) * stride + K, (W - 1) * stride + K
        for oy, ho in ((0, Hf), (Hf - 1, 1), (1, Hf - 2), (0, 0)):
            if ho < 0:
                continue
            ox, wo = rng.randint(0, Wf - 1), None
            wo = Wf - ox
            check_against_reference(case(N=2, channels=3, groups=3, H=H, W=W, K=K, stride=stride,
                                         out_offset=(oy, ox), out_size=(ho, wo), skip_offset=(1, 2),
                                         skip_hw=(ho + 1, wo + 2), bias=True), "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_lower_precision(seed, dtype):
    rng = random.Random(seed)
    for _ in range(10):
        check_against_reference(random_case(rng), "cpu", dtype)
    check_against_reference(FCN8S_STAGES["upscore8"], "cpu", dtype)




@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(seed, layout):
    rng = random.Random(seed)
    for _ in range(8):
        case = random_case(rng)
        inputs = make_inputs(case)
        check_against_reference(case, "cpu", transform=LAYOUTS[layout])


def test_batch_zero():
    x = torch.randn(0, 4, 5, 5, requires_grad=True)
    w = torch.randn(4, 1, 4, 4, requires_grad=True)
    skip = torch.randn(0, 4, 20, 20, requires_grad=True)
    y = fcn_kernels.upsample_skip(x, w, None, skip, stride=2, groups=4, skip_offset=3, backend="cpu")
    assert y.shape == (0, 4, 12, 12)
    y.sum().backward()
    assert x.grad.shape == x.shape and skip.grad.shape == skip.shape
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_gradcheck(seed):
    rng = random.Random(seed)
    for _ in range(3):
        case = random_case(rng, max_batch=1)
        case.N = max(case.N, 1)
        inputs = [t.requires_grad_() if t is not None else None for t in make_inputs(case)]
        assert torch.autograd.gradcheck(
            lambda *a: fcn_kernels.upsample_skip(*a, backend="cpu", **case.kwargs()), inputs), case


def test_gradgradcheck(seed):
    rng = random.Random(seed)
    for _ in range(2):
        case = random_case(rng, max_batch=1)
        case.N = max(case.N, 1)
        inputs = [t.requires_grad_() if t is not None else None for t in make_inputs(case)]
        assert torch.autograd.gradgradcheck(
            lambda *a: fcn_kernels.upsample_skip(*a, backend="cpu", **case.kwargs()), inputs), case


def test_deterministic_bits(seed):
    problem = case(N=3, channels=6, H=9, W=11, K=16, stride=8, out_offset=(5, 3), bias=True)
    x, w, b, _ = make_inputs(problem, torch.float32)
    outs = []
    for _ in range(2):
        xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
        y = fcn_kernels.upsample_skip(xs, ws, bs, backend="cpu", **problem.kwargs())
        y.backward(torch.ones_like(y))
        outs.append((y, xs.grad, ws.grad, bs.grad))
    for a, b_ in zip(*outs):
        assert torch.equal(a, b_)


def _profiled_ops(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events()}


def test_fixed_weight_costs_no_weight_gradient():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    skip = torch.randn(2, 3, 20, 20, requires_grad=True)
    for trainable in (False, True):
        w = fcn_kernels.bilinear_kernel(3, 4, groups=3).requires_grad_(trainable)
        names = _profiled_ops(lambda: fcn_kernels.upsample_skip(x, w, None, skip, stride=2, groups=3,
                                                                 skip_offset=5, backend="cpu").sum().backward())
        assert ("fcn_kernels::upsample_skip_backward_weight" in names) == trainable, names
        assert "fcn_kernels::upsample_skip_backward_input" in names
        assert (w.grad is not None) == trainable


def test_module_and_compile_fullgraph(seed):
    m = fcn_kernels.FusedUpsampleSkip(3, 3, 4, 2, groups=3, skip_offset=(1, 2), out_offset=1, bias=True,
                                      init="default")
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    skip = torch.randn(2, 3, 12, 14, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, s: m(x, s, out_size=(9, 10)), fullgraph=True)
    y = compiled(x, skip)
    y_ref = reference.upsample_skip(x, m.weight, m.bias, skip, stride=2, groups=3, out_offset=1,
                                    out_size=(9, 10), skip_offset=(1, 2))
    torch.testing.assert_close(y, y_ref)
    grads = torch.autograd.grad(y.square().sum(), (x, skip, m.weight, m.bias))
    grads_ref = torch.autograd.grad(y_ref.square().sum(), (x, skip, m.weight, m.bias))
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("with_bias,with_skip", [(False, False), (True, True), (True, False)])
def test_opcheck(seed, with_bias, with_skip):
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    w = torch.randn(4, 3, 4, 4, requires_grad=True)  # groups 2: Cout 6
    b = torch.randn(6, requires_grad=True) if with_bias else None
    skip = torch.randn(2, 6, 15, 16, requires_grad=True) if with_skip else None
    ops = torch.ops.fcn_kernels
    torch.library.opcheck(ops.upsample_skip.default, (x, w, b, skip, [2, 2], 2, [1, 2], [9, 10], [3, 2]))
    go = torch.randn(2, 6, 9, 10)
    torch.library.opcheck(ops.upsample_skip_backward_input.default, (go, w, [2, 4, 5, 6], [2, 2], 2, [1, 2]))
    torch.library.opcheck(ops.upsample_skip_backward_weight.default, (go, x, [4, 3, 4, 4], [2, 2], 2, [1, 2]))


@pytest.mark.parametrize("op", ["upsample_skip", "rarefied_conv2d"])
def test_autocast_casts_like_a_convolution(seed, op):
    x = torch.randn(2, 4, 6, 6)
    if op == "upsample_skip":
        w, skip = torch.randn(4, 1, 4, 4), torch.randn(2, 4, 16, 16)
        fused = lambda: fcn_kernels.upsample_skip(x, w, None, skip, stride=2, groups=4, skip_offset=1)
        stock = lambda: reference.upsample_skip(x, w, None, skip.bfloat16(), stride=2, groups=4, skip_offset=1)
    else:
        w = torch.randn(8, 4, 3, 3)
        fused = lambda: fcn_kernels.rarefied_conv2d(x, w, rarefaction=2, padding=2)
        stock = lambda: reference.rarefied_conv2d(x, w, rarefaction=2, padding=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_ref = fused(), stock()
    assert y.dtype == torch.bfloat16 and y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)
