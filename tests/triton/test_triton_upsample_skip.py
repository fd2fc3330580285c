"""upsample_skip's Triton kernels (fcn_kernels/triton/upsample_skip.py) against the float64 reference,
forward and backward: on CUDA tensors with a GPU, else on CPU tensors under TRITON_INTERPRET=1 (see
conftest.py). Interpreter launches are slow, so the shapes are tiny and each path gets a few cases:
depthwise, dense FMA (< 8 channels per group), dense tl.dot (>= 8 each way), the weight gradient's
depthwise and dense kernels, bias/skip gradients, FCN-8s offsets, windows at the edges, batch 0."""
import random

import pytest
import torch

from triton_env import DEVICE, RUNNABLE

if not RUNNABLE:
    pytest.skip("Triton kernels need a CUDA GPU or TRITON_INTERPRET=1 (run: TRITON_INTERPRET=1 python -m pytest "
                "tests/triton)", allow_module_level=True)
pytest.importorskip("triton")

import fcn_kernels  # noqa: E402
from fcn_kernels import reference  # noqa: E402
from fcn_kernels.triton import upsample_skip as tus  # noqa: E402
from upsample_cases import case, check_against_reference, random_case  # noqa: E402

ON_CPU = DEVICE == "cpu"


@pytest.fixture(autouse=True)
def _default_device():
    # the tensors this module makes itself go to the GPU when there is one (check_against_reference
    # moves its own CPU inputs to the backend's device)
    if ON_CPU:
        yield
    else:
        with torch.device("cuda"):
            yield


# Reduced FCN-8s stages (docs/DESIGN.md §2): the real kernels, strides and offsets, few channels, small maps.
CASES = {
    "upscore2+pool4-dw": case(N=2, channels=3, groups=3, H=4, W=5, K=4, stride=2, skip_offset=5, skip_hw=(16, 18),
                              bias=True),
    "upscore8-dw": case(channels=2, groups=2, H=5, W=4, K=16, stride=8, out_offset=31, out_size=(9, 1)),
    "dense-fma": case(N=2, cin=4, cout=6, groups=2, H=3, W=4, K=(5, 3), stride=(2, 3), out_offset=(1, 2),
                      skip_offset=(0, 1), skip_hw=(9, 12), bias=True),
    "dense-dot": case(cin=16, cout=8, K=4, stride=2, out_offset=1, skip_offset=(1, 0), skip_hw=(9, 8), bias=True),
    "grouped-dot": case(channels=16, groups=2, H=2, W=3, K=(3, 4), stride=(1, 2), out_offset=(0, 1), out_size=(3, 5),
                        bias=True),
}


@pytest.mark.parametrize("name", CASES)
def test_cases_float32(seed, name):
    check_against_reference(CASES[name], "triton", torch.float32)


@pytest.mark.parametrize("name", ["upscore2+pool4-dw", "dense-fma"])
def test_cases_float64(seed, name):
    # float64 accumulates in float64 (and takes the FMA path: no float64 tl.dot)
    check_against_reference(CASES[name], "triton", torch.float64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["upscore2+pool4-dw", "dense-fma", "dense-dot"])
def test_lower_precision(seed, name, dtype):
    check_against_reference(CASES[name], "triton", dtype)


@pytest.mark.parametrize("batch", range(3))
def test_random_cases(seed, batch):
    rng = random.Random(seed + batch)
    for _ in range(2):
        case = random_case(rng, max_batch=1)
        check_against_reference(case, "triton", torch.float32)


def test_random_dot_cases(seed):
    """Random geometries with >= 16 channels per group each way: the tl.dot kernels."""
    check_against_reference(random_case(random.Random(seed), max_batch=1, per_group=(16, 17)), "triton", torch.float32)


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_windows_at_both_edges(seed, stride):
    rng = random.Random(seed)
    K = 2 * stride + (stride > 1)
    H, W = rng.randint(1, 3), rng.randint(1, 3)
    Hf, Wf = (H - 1) * stride + K, (W - 1) * stride + K
    for oy, ho in ((Hf - 1, 1), (1, Hf - 2)):
        ox = rng.randint(0, Wf - 1)
        check_against_reference(case(channels=2, groups=2, H=H, W=W, K=K, stride=stride, out_offset=(oy, ox),
                                     out_size=(ho, Wf - ox), skip_offset=(1, 2), skip_hw=(ho + 1, Wf - ox + 2),
                                     bias=True), "triton", torch.float32)


def test_weight_gradient_splits_and_dense_fallback(seed, monkeypatch):
    """Several partial sums per weight element (summed in a fixed order), and the depthwise weight
    gradient through the dense kernel (taken for strides wider than the depthwise kernel's columns)."""
    monkeypatch.setattr(tus, "splits", lambda tasks, rows, device: 3)
    check_against_reference(CASES["upscore2+pool4-dw"], "triton", torch.float32)
    check_against_reference(CASES["dense-dot"], "triton", torch.float32)
    monkeypatch.setattr(tus, "DW_WEIGHT_MAX_STRIDE", 1)
    check_against_reference(CASES["upscore2+pool4-dw"], "triton", torch.float32)


def _inputs(case, dtype=torch.float32, requires_grad=True):
    x = torch.randn(case.N, case.cin, case.H, case.W, dtype=dtype, requires_grad=requires_grad)
    w = torch.randn(case.cin, case.cout // case.groups, *case.K, dtype=dtype, requires_grad=requires_grad)
    return x, w


def test_fixed_weight_costs_no_weight_gradient(monkeypatch):
    case = CASES["upscore2+pool4-dw"]
    x, w = _inputs(case)
    w.requires_grad_(False)

    def fail(*a, **k):
        raise AssertionError("weight-gradient kernel launched for a weight that does not require grad")
    monkeypatch.setattr(tus, "backward_weight", fail)
    y = fcn_kernels.upsample_skip(x, w, stride=case.stride, groups=case.groups, backend="triton")
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert gx.shape == x.shape


@pytest.mark.parametrize("which", ["bias", "skip", "both"])
def test_bias_and_skip_gradients(which):
    """The one-pass bias/skip gradient kernel, with either alone or both."""
    n, c, ho, wo, sy, sx = 2, 3, 5, 6, 2, 1
    go = torch.randn(n, c, ho, wo)
    skip_size = None if which == "bias" else [n, c, ho + 4, wo + 3]
    gb, gs = tus.backward_bias_skip(go, skip_size, (sy, sx), which != "skip")
    if which != "skip":
        torch.testing.assert_close(gb, go.sum((0, 2, 3)))
    else:
        assert gb is None
    if which != "bias":
        expect = torch.zeros(skip_size)
        expect[:, :, sy:sy + ho, sx:sx + wo] = go
        assert torch.equal(gs, expect)
    else:
        assert gs is None


def test_weight_gradient_is_deterministic():
    case = CASES["dense-dot"]
    x, w = _inputs(case, requires_grad=False)
    go = torch.randn(case.N, case.cout, *case.crop)
    a = tus.backward_weight(go, x, list(w.shape), case.stride, case.groups, case.out_offset)
    b = tus.backward_weight(go, x, list(w.shape), case.stride, case.groups, case.out_offset)
    assert torch.equal(a, b)


def test_batch_zero_and_empty_window():
    x = torch.randn(0, 3, 4, 4, requires_grad=True)
    w = torch.randn(3, 1, 4, 4, requires_grad=True)
    y = fcn_kernels.upsample_skip(x, w, stride=2, groups=3, backend="triton")
    assert y.shape == (0, 3, 10, 10)
    gx, gw = torch.autograd.grad(y.sum(), (x, w))
    assert gx.shape == x.shape and torch.all(gw == 0)
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    y = fcn_kernels.upsample_skip(x, w, stride=2, groups=3, out_offset=(3, 0), out_size=(0, 5), backend="triton")
    assert y.shape == (1, 3, 0, 5)
    gx, gw = torch.autograd.grad(y.sum(), (x, w))
    assert torch.all(gx == 0) and torch.all(gw == 0)


def test_double_backward(seed):
    """Gradients of the gradients (the backward ops' registered autograd; bias and skip through the stock
    sums) against the reference's, float64."""
    c = CASES["upscore2+pool4-dw"]
    x, w = _inputs(c, torch.float64, requires_grad=False)
    b = torch.randn(c.cout, dtype=torch.float64)
    skip = torch.randn(c.N, c.cout, *c.skip_hw, dtype=torch.float64)
    go = torch.randn(c.N, c.cout, *c.crop, dtype=torch.float64)
    results = []
    for fn, extra in ((fcn_kernels.upsample_skip, dict(backend="triton")), (reference.upsample_skip, {})):
        leaves = [t.detach().cpu().clone().requires_grad_() for t in (x, w, b, skip, go)]
        y = fn(*(t.to(DEVICE) for t in leaves[:4]), **c.kwargs(), **extra)
        grads = torch.autograd.grad(y, leaves[:4], leaves[4].to(DEVICE), create_graph=True)
        wrt = (leaves[0], leaves[1], leaves[4])  # and grad_out: bias and skip gradients are linear in it
        results.append([g.cpu() for g in torch.autograd.grad(sum((g * g).sum() for g in grads), wrt)])
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=lambda m: f"seed={seed}: {m}")


def test_channels_last_input(seed):
    case = CASES["dense-fma"]
    check_against_reference(case, "triton", torch.float32,
                            transform=lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)


# ------------------------------------------------------------------------------------------------------
# With a GPU only: triton_op's fake/aot checks and torch.compile fail on CPU tensors (interpreter or not).
# ------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("name", ["upscore2+pool4-dw", "dense-dot"])
def test_opcheck(name):
    case = CASES[name]
    x, w = _inputs(case)
    x, w = x.detach().cuda().requires_grad_(), w.detach().cuda().requires_grad_()
    b = torch.randn(case.cout, device="cuda", requires_grad=True)
    skip = torch.randn(case.N, case.cout, *case.skip_hw, device="cuda", requires_grad=True) if case.skip_hw else None
    args = (x, w, b, skip, list(case.stride), case.groups, list(case.out_offset), list(case.crop),
            list(case.skip_offset))
    torch.library.opcheck(torch.ops.fcn_kernels.upsample_skip_triton.default, args)


@pytest.mark.cuda
def test_torch_compile_fullgraph():
    case = CASES["upscore2+pool4-dw"]
    x, w = (t.detach().cuda().requires_grad_() for t in _inputs(case))
    skip = torch.randn(case.N, case.cout, *case.skip_hw, device="cuda")
    fn = lambda x, w, s: fcn_kernels.upsample_skip(x, w, None, s, stride=case.stride, groups=case.groups,
                                                   skip_offset=case.skip_offset, backend="triton")
    y = torch.compile(fn, fullgraph=True)(x, w, skip)
    exact = reference.upsample_skip(x.detach().cpu().double(), w.detach().cpu().double(), None, skip.cpu().double(),
                                    stride=case.stride, groups=case.groups, skip_offset=case.skip_offset)
    torch.testing.assert_close(y.cpu().double(), exact)  # float64: no TF32 reference
    y.sum().backward()
    assert x.grad is not None and w.grad is not None


@pytest.mark.cuda
def test_fcn8s_head_full_size_bf16():
    from fcn_kernels.app import bench
    for dense in (False, True):
        scores, ws, groups = bench.head_inputs(2, dense=dense, dtype=torch.bfloat16, device="cuda")
        y = bench.fused_head(scores, ws, groups, backend="triton")
        exact = bench.stock_head([s.double() for s in scores], [w.double() for w in ws], groups)
        assert (y.double() - exact).abs().max().item() < 0.1 * exact.abs().max().item() + 1e-3
