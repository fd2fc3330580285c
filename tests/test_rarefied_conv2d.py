"""fcn_kernels.rarefied_conv2d against fcn_kernels.reference.rarefied_conv2d (F.conv2d with dilation).

Fresh random inputs every run: each test draws its seed at random (conftest's `seed`; replay with
FCN_TEST_SEED=...) and names it in failure messages. Both CPU kernel paths (GEMM over the wide
layout, direct row loops) are forced in turn through FCN_KERNELS_RAREFIED_CONV_PATH, so every case
covers both whatever shape the automatic choice would pick.
"""
import functools
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fcn_kernels
from fcn_kernels import RarefiedConv2d, rarefied_conv2d, reference, rarefy_filter
from rarefied_cases import describe, forward_backward, random_case
from tolerances import assert_close_bound

pytestmark = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(),
                                reason="fcn_kernels._C was built without CPU kernels")

PATHS = ["direct", "gemm", "auto"]
# The C++ kernels, forced: backend=None sends dense groups to the stock op (fcn_kernels.backends).
cpu_conv = functools.partial(rarefied_conv2d, backend="cpu")



@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    if request.param == "auto":
        monkeypatch.delenv("FCN_KERNELS_RAREFIED_CONV_PATH", raising=False)
    else:
        monkeypatch.setenv("FCN_KERNELS_RAREFIED_CONV_PATH", request.param)
    return request.param


def assert_matches_reference(x, weight, bias, kw, seed, atol=1e-10, rtol=1e-10):
    ours, grad = forward_backward(cpu_conv, x, weight, bias, kw)
    ref, _ = forward_backward(reference.rarefied_conv2d, x, weight, bias, kw, grad)
    for name, a, b in zip(("output", "grad x", "grad weight", "grad bias"), ours, ref):
        if b is None:
            assert a is None
            continue
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol,
                                   msg=lambda m: f"{name} differs (seed={seed}, {describe(x, weight, bias, kw)}): {m}")


def test_random_shapes_float64(seed, path):
    rng = random.Random(seed)
    for _ in range(25):
        x, weight, bias, kw = random_case(rng)
        assert_matches_reference(x, weight, bias, kw, seed)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_every_kernel_size_and_rarefaction(seed, path, k):
    rng = random.Random(seed)
    for r in range(1, 9):
        x, weight, bias, kw = random_case(rng, k=k, r=r)
        assert_matches_reference(x, weight, bias, kw, seed)


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise(seed, path, multiplier):
    rng = random.Random(seed)
    for r in (1, 2, 5, 8):
        c = rng.choice([1, 3, 21])
        x = torch.randn(2, c, 17 + 2 * r, 19 + 2 * r, dtype=torch.float64)
        weight = torch.randn(c * multiplier, 1, 3, 3, dtype=torch.float64)
        bias = torch.randn(c * multiplier, dtype=torch.float64)
        assert_matches_reference(x, weight, bias, dict(rarefaction=r, padding=rng.randint(0, r), groups=c), seed)


def test_grouped_wide_channels(seed, path):
    # Large enough groups that the automatic choice takes the GEMM path.
    x = torch.randn(2, 32, 13, 15, dtype=torch.float64)
    weight = torch.randn(16, 16, 3, 3, dtype=torch.float64)
    bias = torch.randn(16, dtype=torch.float64)
    assert_matches_reference(x, weight, bias, dict(rarefaction=(2, 3), padding=(2, 3), groups=2), seed)


def test_batch_zero(seed, path):
    x = torch.randn(0, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, dtype=torch.float64, requires_grad=True)
    y = cpu_conv(x, weight, bias, rarefaction=2, padding=1)
    assert y.shape == (0, 8, 7, 7)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(weight.grad, torch.zeros_like(weight)), f"seed={seed}"
    assert torch.equal(bias.grad, torch.zeros_like(bias)), f"seed={seed}"


def test_noncontiguous_and_channels_last(seed, path):
    rng = random.Random(seed)
    for _ in range(4):
        x, weight, bias, kw = random_case(rng, n=2)
        # x: a strided slice of a bigger tensor; weight: channels_last; grad: transposed storage.
        big = torch.randn(x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] + 3, dtype=x.dtype)
        xs = big[:, :, ::2, 1:x.shape[3] + 1]
        assert not xs.is_contiguous()
        ws = weight.contiguous(memory_format=torch.channels_last)
        assert_matches_reference(xs, ws, bias, kw, seed)
        xcl = x.contiguous(memory_format=torch.channels_last)
        assert_matches_reference(xcl, weight, bias, kw, seed)
        # grad_out non-contiguous through the autograd path
        xl = x.clone().requires_grad_()
        y = cpu_conv(xl, weight, bias, **kw)
        g = torch.randn(y.shape[::-1], dtype=y.dtype).permute(3, 2, 1, 0)
        y.backward(g)
        xr = x.clone().requires_grad_()
        reference.rarefied_conv2d(xr, weight, bias, **kw).backward(g)
        torch.testing.assert_close(xl.grad, xr.grad, atol=1e-10, rtol=1e-10, msg=lambda m: f"seed={seed}: {m}")


def test_matches_explicit_rarefied_filter(seed):
    # The paper's reading: a stride-1 conv with f' (zeros inserted) is the same convolution.
    x = torch.randn(2, 6, 20, 18, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 2, dtype=torch.float64)
    y = cpu_conv(x, weight, rarefaction=(3, 4), padding=(1, 2), groups=2)
    y_explicit = F.conv2d(x, rarefy_filter(weight, (3, 4)), padding=(1, 2), groups=2)
    assert rarefy_filter(weight, (3, 4)).shape == (4, 3, 7, 5)
    torch.testing.assert_close(y, y_explicit, atol=1e-10, rtol=1e-10, msg=lambda m: f"seed={seed}: {m}")


@pytest.mark.parametrize("which", ["direct", "gemm"])
def test_gradcheck(seed, monkeypatch, which):
    monkeypatch.setenv("FCN_KERNELS_RAREFIED_CONV_PATH", which)
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b, c: cpu_conv(a, b, c, rarefaction=(2, 3), padding=(1, 2), groups=2)
    assert torch.autograd.gradcheck(fn, (x, weight, bias), fast_mode=True), f"seed={seed}"


# Low precision: the kernels accumulate in float, so the error is the output rounding of the dtype plus
# float accumulation error, bounded (tests/tolerances.py) against the float64 result of the same rounded
# inputs and the same op on absolute values.
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision(seed, path, dtype):
    rng = random.Random(seed)
    for _ in range(4):
        x, weight, bias, kw = random_case(rng, dtype=dtype)
        ours, grad = forward_backward(cpu_conv, x, weight, bias, kw)
        x64, w64 = x.double(), weight.double()
        b64 = bias.double() if bias is not None else None
        ref, _ = forward_backward(reference.rarefied_conv2d, x64, w64, b64, kw, grad.double())
        mag, _ = forward_backward(reference.rarefied_conv2d, x64.abs(), w64.abs(),
                                  b64.abs() if b64 is not None else None, kw, grad.double().abs())
        n, cin, _, _ = x.shape
        cout, cin_g, kh, kw_ = weight.shape
        positions = ours[0].shape[0] * ours[0].shape[2] * ours[0].shape[3]
        terms = (cin_g * kh * kw_ + 1, (cout // kw["groups"]) * kh * kw_, positions, positions)
        for name, a, b, m, t in zip(("output", "grad x", "grad weight", "grad bias"), ours, ref, mag, terms):
            if b is None:
                continue
            assert a.dtype == dtype
            what = f"{dtype} {name} (seed={seed}, {describe(x, weight, bias, kw)})"
            assert_close_bound(a, b, m, t, dtype, what)  # the bound covers subnormal results too


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_deterministic(seed, path, dtype):
    x = torch.randn(2, 16, 23, 21, dtype=dtype)
    weight = torch.randn(24, 16, 3, 3, dtype=dtype)
    bias = torch.randn(24, dtype=dtype)
    kw = dict(rarefaction=(2, 3), padding=(2, 1))
    first, grad = forward_backward(cpu_conv, x, weight, bias, kw)
    for _ in range(2):
        again, _ = forward_backward(cpu_conv, x, weight, bias, kw, grad)
        for a, b in zip(first, again):
            assert torch.equal(a, b), f"not bitwise reproducible (seed={seed}, {dtype}, path {path})"


def test_weight_without_grad_skips_weight_gradient(seed):
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    x = torch.randn(1, 3, 10, 10, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 3, 3, 3, dtype=torch.float64)  # fixed, like FCN's frozen layers
    y = cpu_conv(x, weight, rarefaction=2, padding=2)
    with Log():
        y.sum().backward()
    assert any("rarefied_conv2d_backward_input" in s for s in seen), seen
    assert not any("rarefied_conv2d_backward_weight" in s for s in seen), "weight gradient computed needlessly"
    weight.requires_grad_()
    seen.clear()
    with Log():
        cpu_conv(x, weight, rarefaction=2, padding=2).sum().backward()
    assert any("rarefied_conv2d_backward_weight" in s for s in seen), seen


def test_opcheck_all_three_ops(seed):
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    r, p, g = [2, 3], [1, 2], 2
    y = torch.ops.fcn_kernels.rarefied_conv2d(x, weight, bias, r, p, g)
    go = torch.randn_like(y)
    torch.library.opcheck(torch.ops.fcn_kernels.rarefied_conv2d.default,
                          (x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_(), r, p, g))
    torch.library.opcheck(torch.ops.fcn_kernels.rarefied_conv2d.default, (x.detach(), weight.detach(), None, r, p, g))
    torch.library.opcheck(torch.ops.fcn_kernels.rarefied_conv2d_backward_input.default,
                          (go, weight.detach(), list(x.shape), r, p, g))
    torch.library.opcheck(torch.ops.fcn_kernels.rarefied_conv2d_backward_weight.default,
                          (go, x.detach(), list(weight.shape), r, p, g))


def test_torch_compile_fullgraph(seed):
    torch._dynamo.reset()
    m = nn.Sequential(RarefiedConv2d(3, 8, 3, rarefaction=2, padding=2), nn.ReLU(),
                      RarefiedConv2d(8, 4, 3, rarefaction=(2, 4), padding=(2, 4), groups=4)).double()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 14, 15, dtype=torch.float64, requires_grad=True)
    y = compiled(x)
    y.square().sum().backward()
    gx = x.grad.clone()
    x.grad = None
    y_eager = m(x)
    y_eager.square().sum().backward()
    torch.testing.assert_close(y, y_eager, msg=lambda msg: f"seed={seed}: {msg}")
    torch.testing.assert_close(gx, x.grad, msg=lambda msg: f"seed={seed}: {msg}")


def test_backends(seed):
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    a = rarefied_conv2d(x, weight, rarefaction=2, padding=1, backend="cpu")
    b = rarefied_conv2d(x, weight, rarefaction=2, padding=1, backend="reference")
    torch.testing.assert_close(a, b, msg=lambda m: f"seed={seed}: {m}")
    with pytest.raises((RuntimeError, ValueError)):
        rarefied_conv2d(x, weight, rarefaction=2, backend="cuda")
    with pytest.raises(ValueError, match="not one of"):
        rarefied_conv2d(x, weight, rarefaction=2, backend="nope")


def _bad_inputs():
    x = torch.randn(1, 4, 10, 10)
    w = torch.randn(6, 4, 3, 3)
    return [
        # (args, kwargs, exception, message fragment)
        ((x, torch.randn(6, 4, 3, 3)), dict(rarefaction=5), ValueError, r"rarefied kernel \(11, 11\).*padded input \(10, 10\)"),
        ((x, w), dict(rarefaction=5, padding=0), ValueError, "larger than the padded input"),
        ((x, torch.randn(6, 3, 3, 3)), {}, ValueError, r"weight.shape\[1\] \(3\) \* groups \(1\).*\(4\)"),
        ((x, torch.randn(6, 2, 3, 3)), dict(groups=3), ValueError, r"channels \(4\).*groups \(3\)"),
        ((x, torch.randn(5, 2, 3, 3)), dict(groups=2), ValueError, r"weight.shape\[0\] \(out channels, 5\).*groups \(2\)"),
        ((x, w), dict(rarefaction=0), ValueError, "rarefaction must be >= 1"),
        ((x, w), dict(rarefaction=(1, -2)), ValueError, "rarefaction must be >= 1"),
        ((x, w), dict(padding=-1), ValueError, "padding must be >= 0"),
        ((x, w), dict(groups=0), ValueError, "groups must be >= 1"),
        ((x, w), dict(rarefaction=1.5), TypeError, "rarefaction must be an int"),
        ((x, w), dict(groups=2.0), TypeError, "groups must be an int"),
        ((x.to(torch.int32), w.to(torch.int32)), {}, TypeError, "x must be a floating-point"),
        ((x, w.double()), {}, TypeError, "weight has dtype torch.float64 but x has dtype torch.float32"),
        ((x, w, torch.randn(6).double()), {}, TypeError, "bias has dtype"),
        ((x, w, torch.randn(5)), {}, ValueError, r"bias must have shape \(6,\)"),
        ((x, w.to("meta")), {}, ValueError, "weight is on meta but x is on cpu"),
        ((x[0], w), {}, ValueError, "x must be 4-D"),
        ((x, w[0]), {}, ValueError, "weight must be 4-D"),
        ((x, w.numpy()), {}, TypeError, "weight must be a torch.Tensor"),
        ((torch.randn(1, 4, 0, 5), w), dict(padding=2), ValueError, "non-empty"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_bad_input(case):
    args, kwargs, exc, msg = _bad_inputs()[case]
    with pytest.raises(exc, match=msg):
        rarefied_conv2d(*args, **kwargs)


def test_bad_input_direct_op_calls():
    # The C++ checks guard direct torch.ops calls (no Python validation in front of them).
    op = torch.ops.fcn_kernels
    x, w = torch.randn(1, 4, 10, 10), torch.randn(6, 4, 3, 3)
    cases = [
        (lambda: op.rarefied_conv2d(x, w, None, [5, 5], [0, 0], 1), "larger than the padded input"),
        (lambda: op.rarefied_conv2d(x, torch.randn(6, 3, 3, 3), None, [1, 1], [0, 0], 1), "must equal x's channels"),
        (lambda: op.rarefied_conv2d(x, torch.randn(5, 2, 3, 3), None, [1, 1], [0, 0], 2), "not divisible by groups"),
        (lambda: op.rarefied_conv2d(x, w, None, [0, 1], [0, 0], 1), "rarefaction must be >= 1"),
        (lambda: op.rarefied_conv2d(x, w, None, [1, 1], [-1, 0], 1), "padding must be >= 0"),
        (lambda: op.rarefied_conv2d(x, w, None, [1, 1], [0, 0], 0), "groups must be >= 1"),
        (lambda: op.rarefied_conv2d(x.int(), w.int(), None, [1, 1], [0, 0], 1), "floating point"),
        (lambda: op.rarefied_conv2d(x, w.double(), None, [1, 1], [0, 0], 1), "dtype"),
        (lambda: op.rarefied_conv2d(x, w, torch.randn(5), [1, 1], [0, 0], 1), "bias must have size"),
        (lambda: op.rarefied_conv2d_backward_input(torch.randn(1, 6, 7, 7), w, [1, 4, 10, 10], [1, 1], [0, 0], 1),
         "does not match the output"),
        (lambda: op.rarefied_conv2d_backward_weight(torch.randn(1, 6, 8, 8), x.double(), [6, 4, 3, 3],
                                                    [1, 1], [0, 0], 1), "dtype"),
        (lambda: op.rarefied_conv2d_backward_weight(torch.randn(1, 6, 8, 8), x, [6, 4, 3, 3], [5, 5], [0, 0], 1),
         "larger than the padded input"),
    ]
    for fn, msg in cases:
        with pytest.raises(RuntimeError, match=msg):
            fn()


# ---- RarefiedConv2d -----------------------------------------------------------------


def test_module_state_dict_interchangeable_with_conv2d(seed):
    conv = nn.Conv2d(6, 8, 3, padding=(2, 4), dilation=(2, 4), groups=2).double()
    ours = RarefiedConv2d(6, 8, 3, rarefaction=(2, 4), padding=(2, 4), groups=2).double()
    assert set(ours.state_dict()) == set(conv.state_dict()) == {"weight", "bias"}
    ours.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 15, 21, dtype=torch.float64)
    torch.testing.assert_close(ours(x), conv(x), msg=lambda m: f"seed={seed}: {m}")
    # and back: an nn.Conv2d loads ours
    ours2 = RarefiedConv2d(6, 8, 3, rarefaction=(2, 4), padding=(2, 4), groups=2).double()
    conv.load_state_dict(ours2.state_dict())
    torch.testing.assert_close(ours2(x), conv(x), msg=lambda m: f"seed={seed}: {m}")
    no_bias = RarefiedConv2d(3, 4, 1, bias=False)
    assert set(no_bias.state_dict()) == {"weight"} and no_bias.bias is None


def test_module_default_init_matches_conv2d(seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(5, 7, (3, 2), dilation=3, padding=1)
    torch.manual_seed(seed)
    ours = RarefiedConv2d(5, 7, (3, 2), rarefaction=3, padding=1)
    assert torch.equal(conv.weight, ours.weight) and torch.equal(conv.bias, ours.bias), f"seed={seed}"


def test_module_from_conv(seed):
    conv = nn.Conv2d(4, 6, 3, padding=1, dilation=2).double()
    x = torch.randn(1, 4, 30, 30, dtype=torch.float64)
    same = RarefiedConv2d.from_conv(conv)
    assert same.rarefaction == (2, 2) and same.padding == (1, 1) and same.dilation == (2, 2)
    torch.testing.assert_close(same(x), conv(x), msg=lambda m: f"seed={seed}: {m}")
    rar = RarefiedConv2d.from_conv(conv, 3)
    assert rar.rarefaction == (6, 6) and rar.padding == (3, 3)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=3, dilation=6)
    torch.testing.assert_close(rar(x), ref, msg=lambda m: f"seed={seed}: {m}")
    # the copy is independent of the source
    with torch.no_grad():
        conv.weight.zero_()
    assert rar.weight.abs().sum() > 0
    same_pad = RarefiedConv2d.from_conv(nn.Conv2d(2, 2, 5, padding="same", dilation=2))
    assert same_pad.padding == (4, 4)
    with pytest.raises(ValueError, match="stride"):
        RarefiedConv2d.from_conv(nn.Conv2d(2, 2, 3, stride=2))
    with pytest.raises(ValueError, match="padding_mode"):
        RarefiedConv2d.from_conv(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        RarefiedConv2d.from_conv(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="divisible by groups"):
        RarefiedConv2d(3, 4, 3, groups=2)


def test_gradgradcheck_cpu(seed):
    """Double backward goes through the explicit backward ops, which have autograd of their own."""
    x = torch.randn(1, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b, c: rarefied_conv2d(a, b, c, rarefaction=(2, 3), padding=(1, 2), groups=2, backend="cpu")
    assert torch.autograd.gradgradcheck(fn, (x, weight, bias)), f"seed={seed}"
