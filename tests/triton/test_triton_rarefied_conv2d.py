"""rarefied_conv2d's Triton kernels (fcn_kernels/triton/rarefied_conv2d.py) against the float64 reference
(F.conv2d with dilation), forward and backward: on CUDA tensors with a GPU, else on CPU tensors under
TRITON_INTERPRET=1 (see conftest.py). Interpreter launches are slow, so the shapes are tiny and each path
gets a few cases: depthwise (with a channel multiplier), dense FMA (< 8 channels per group), dense tl.dot
(>= 8 each way, channel counts that are not powers of two), the weight gradient's split reduction,
rarefaction 1..8 with padding, batch 0, channels_last, determinism."""
import math
import random
from dataclasses import dataclass

import pytest
import torch

from triton_env import DEVICE, RUNNABLE

if not RUNNABLE:
    pytest.skip("Triton kernels need a CUDA GPU or TRITON_INTERPRET=1 (run: TRITON_INTERPRET=1 python -m pytest "
                "tests/triton)", allow_module_level=True)
pytest.importorskip("triton")

import fcn_kernels  # noqa: E402
from fcn_kernels import reference  # noqa: E402
from fcn_kernels.triton import rarefied_conv2d as trc  # noqa: E402
from tolerances import assert_close_bound  # noqa: E402


@dataclass
class Case:
    N: int
    cin: int
    cout: int
    groups: int
    H: int
    W: int
    K: tuple
    r: tuple  # rarefaction (dilation)
    p: tuple  # padding
    bias: bool

    @property
    def out_hw(self):
        return tuple(n + 2 * p - (k - 1) * r for n, p, k, r in zip((self.H, self.W), self.p, self.K, self.r))

    def kwargs(self):
        return dict(rarefaction=self.r, padding=self.p, groups=self.groups)

    def terms(self):
        """Most products summed into one element by any pass (forward, grad x/w/bias)."""
        taps = self.K[0] * self.K[1]
        ho, wo = self.out_hw
        return max(self.cin // self.groups * taps + 1, self.cout // self.groups * taps, self.N * ho * wo, 1)


def random_case(rng, r=None, max_batch=2):
    kind = rng.random()
    if kind < 0.35:  # depthwise (sometimes with a channel multiplier)
        groups = rng.randint(1, 3)
        cin_g, cout_g = 1, rng.choice([1, 1, 2])
    elif kind < 0.55:  # wide enough for tl.dot (fp32 / bf16 / fp16)
        groups = 1
        cin_g, cout_g = rng.randint(8, 17), rng.randint(8, 20)
    else:
        groups = rng.choice([1, 1, 2, 3])
        cin_g, cout_g = rng.randint(1, 4), rng.randint(1, 4)
    K = (rng.choice([1, 2, 3]), rng.choice([1, 2, 3]))
    r = r or (rng.randint(1, 8), rng.randint(1, 8))
    (H, W), p = zip(*(_extent(rng, k, ri) for k, ri in zip(K, r)))
    return Case(rng.randint(0, max_batch), cin_g * groups, cout_g * groups, groups, H, W, K, r, p, rng.random() < 0.6)


def _extent(rng, k, r, most=12):
    """(input size <= most, padding <= r) along one axis for a kernel k with rarefaction r (a valid call)."""
    eff = (k - 1) * r + 1
    pad = rng.randint(max(0, -(-(eff - most) // 2)), r)
    return min(most, max(1, eff - 2 * pad) + rng.randint(0, 3)), pad


def _valid(case):
    return all(o >= 1 for o in case.out_hw)


def make_inputs(case, dtype):
    x = torch.randn(case.N, case.cin, case.H, case.W, dtype=dtype)
    w = torch.randn(case.cout, case.cin // case.groups, *case.K, dtype=dtype)
    b = torch.randn(case.cout, dtype=dtype) if case.bias else None
    return x, w, b


def run(fn, inputs, grad_out, **kwargs):
    """fn(*inputs, **kwargs) and the grads of every non-None input (zeros where none flowed: batch 0)."""
    leaves = [t.detach().requires_grad_(True) if t is not None else None for t in inputs]
    y = fn(*leaves, **kwargs)
    wanted = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, wanted, grad_out, allow_unused=True))
    out = []
    for t in leaves:
        if t is None:
            out.append(None)
        else:
            g = next(grads)
            out.append(torch.zeros_like(t) if g is None else g)
    return y.detach(), out


def check(case, dtype=torch.float32, transform=lambda t: t):
    """The Triton backend on `dtype` inputs (on DEVICE, through `transform`) against the float64 reference
    on the same rounded values, forward and the gradients of x, weight and bias, at tolerances.py's
    bounds."""
    inputs = make_inputs(case, dtype)
    go = torch.randn(case.N, case.cout, *case.out_hw, dtype=dtype)
    on = lambda t: transform(t.to(DEVICE)) if t is not None else None
    kw = case.kwargs()
    y, grads = run(fcn_kernels.rarefied_conv2d, [on(t) for t in inputs], on(go), backend="triton", **kw)
    y, grads = y.cpu(), [g.cpu() if g is not None else None for g in grads]
    exact_in = [t.double() if t is not None else None for t in inputs]
    exact, exact_grads = run(reference.rarefied_conv2d, exact_in, go.double(), **kw)
    bound, bound_grads = run(reference.rarefied_conv2d, [t.abs() if t is not None else None for t in exact_in],
                             go.double().abs(), **kw)
    assert y.shape == exact.shape and y.dtype == dtype, f"{tuple(y.shape)} {y.dtype} for {case}"
    assert y.is_contiguous()
    n = case.terms()
    assert_close_bound(y, exact, bound, n, dtype, f"forward {dtype} {case}")
    for name, g, e, b in zip(("x", "weight", "bias"), grads, exact_grads, bound_grads):
        if e is None:
            continue
        assert g.shape == e.shape and g.dtype == dtype, name
        assert_close_bound(g, e, b, n, dtype, f"grad {name} {dtype} {case}")


CASES = {
    #                N  cin cout g  H   W   K       r       p       bias
    "depthwise": Case(2, 3, 3, 3, 9, 11, (3, 3), (2, 3), (2, 1), True),
    "multiplier": Case(1, 2, 4, 2, 8, 7, (3, 2), (1, 4), (1, 3), True),
    "dense-fma": Case(2, 4, 6, 2, 7, 8, (3, 3), (2, 2), (1, 2), True),
    "dense-dot": Case(1, 16, 16, 1, 8, 7, (3, 3), (2, 3), (2, 3), True),
    "grouped-dot": Case(1, 24, 18, 2, 6, 7, (2, 3), (3, 2), (1, 2), False),
}


@pytest.mark.parametrize("name", CASES)
def test_cases_float32(seed, name):
    check(CASES[name], torch.float32)


@pytest.mark.parametrize("name", ["depthwise", "multiplier", "dense-fma"])
def test_cases_float64(seed, name):
    # float64 accumulates in float64 (and takes the FMA path: no float64 tl.dot)
    check(CASES[name], torch.float64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["depthwise", "dense-fma", "dense-dot"])
def test_lower_precision(seed, name, dtype):
    check(CASES[name], dtype)


def test_every_rarefaction_with_padding(seed):
    """Rarefaction 1..8 (rows and columns differing), padding 0..r, depthwise and dense FMA."""
    rng = random.Random(seed)
    for r in range(1, 9):
        rw = rng.randint(1, 8)
        dw = r % 2 == 1
        (H, ph), (W, pw) = _extent(rng, 3, r), _extent(rng, 2, rw)
        case = Case(1, 2, 2 if dw else 3, 2 if dw else 1, H, W, (3, 2), (r, rw), (ph, pw), rng.random() < 0.5)
        check(case, torch.float64)


@pytest.mark.parametrize("batch", range(3))
def test_random_cases(seed, batch):
    rng = random.Random(seed + batch)
    done = 0
    while done < 2:
        case = random_case(rng, max_batch=1)
        if _valid(case):
            check(case, torch.float32)
            done += 1


def test_weight_gradient_splits(seed, monkeypatch):
    """Several partial sums per weight element (summed in a fixed order), depthwise and dense."""
    monkeypatch.setattr(trc, "splits", lambda tasks, rows, device: 3)
    check(CASES["depthwise"], torch.float32)
    check(CASES["dense-dot"], torch.float32)


def test_fixed_weight_costs_no_weight_gradient(monkeypatch):
    case = CASES["depthwise"]
    x, w, b = (t.to(DEVICE) for t in make_inputs(case, torch.float32))
    x.requires_grad_(True)

    def fail(*a, **k):
        raise AssertionError("weight-gradient kernel launched for a weight that does not require grad")
    monkeypatch.setattr(trc, "backward_weight", fail)
    y = fcn_kernels.rarefied_conv2d(x, w, b, backend="triton", **case.kwargs())
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert gx.shape == x.shape


def test_deterministic():
    """The same bits every run (no atomics): forward and both gradients, dense tl.dot and depthwise."""
    for name in ("dense-dot", "depthwise"):
        case = CASES[name]
        inputs = [t.to(DEVICE) for t in make_inputs(case, torch.float32)]
        go = torch.randn(case.N, case.cout, *case.out_hw, device=DEVICE)
        kw = case.kwargs()
        first = run(fcn_kernels.rarefied_conv2d, inputs, go, backend="triton", **kw)
        again = run(fcn_kernels.rarefied_conv2d, inputs, go, backend="triton", **kw)
        assert torch.equal(first[0], again[0]), name
        for a, b in zip(first[1], again[1]):
            assert torch.equal(a, b), name


def test_batch_zero():
    for cin, cout, groups in ((3, 3, 3), (4, 6, 2)):
        x = torch.randn(0, cin, 9, 9, device=DEVICE, requires_grad=True)
        w = torch.randn(cout, cin // groups, 3, 3, device=DEVICE, requires_grad=True)
        b = torch.randn(cout, device=DEVICE, requires_grad=True)
        y = fcn_kernels.rarefied_conv2d(x, w, b, rarefaction=2, padding=1, groups=groups, backend="triton")
        assert y.shape == (0, cout, 7, 7)
        gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b))
        assert gx.shape == x.shape and torch.all(gw == 0) and torch.all(gb == 0)


def test_channels_last_and_noncontiguous(seed):
    check(CASES["dense-fma"], torch.float32,
          transform=lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)
    check(CASES["depthwise"], torch.float32,  # column-major planes: not contiguous
          transform=lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() == 4 else t)


def test_double_backward(seed):
    """Gradients of the gradients (the backward ops' registered autograd) against the reference's."""
    case = CASES["multiplier"]
    x, w, b = make_inputs(case, torch.float64)
    go = torch.randn(case.N, case.cout, *case.out_hw, dtype=torch.float64)
    results = []
    for fn, extra in ((fcn_kernels.rarefied_conv2d, dict(backend="triton")), (reference.rarefied_conv2d, {})):
        xl, wl = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fn(xl.to(DEVICE), wl.to(DEVICE), b.to(DEVICE), **case.kwargs(), **extra)
        gx, gw = torch.autograd.grad(y, (xl, wl), go.to(DEVICE), create_graph=True)
        results.append([g.cpu() for g in torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), (xl, wl))])
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=lambda m: f"seed={seed}: {m}")


def test_dense_channel_blocks():
    """The launcher's channel blocks: tl.dot's [16, 16] minimum, capped as the AOT table compiles them."""
    assert trc._channel_blocks(8, 8, True) == (16, 16)
    assert trc._channel_blocks(512, 512, True, "ieee", torch.bfloat16) == (trc.DOT_MAX_CI, trc.DOT_MAX_CO)
    assert trc._channel_blocks(512, 512, True, "tf32", torch.float32) == (trc.DOT_MAX_CI, trc.DOT_MAX_CO)
    assert trc._channel_blocks(512, 512, True, "ieee", torch.float32) == (trc.IEEE_MAX_CI, trc.IEEE_MAX_CO)
    assert trc._channel_blocks(3, 200, False) == (4, trc.FMA_MAX_C)
    assert math.prod(trc._channel_blocks(1, 1, False)) == 1


# ------------------------------------------------------------------------------------------------------
# With a GPU only: triton_op's fake/aot checks and torch.compile fail on CPU tensors (interpreter or not).
# ------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("name", ["depthwise", "dense-dot", "dense-fma"])
def test_opcheck(name):
    case = CASES[name]
    x, w, b = [t.cuda().requires_grad_() if t is not None else None for t in make_inputs(case, torch.float32)]
    args = (x, w, b, list(case.r), list(case.p), case.groups)
    torch.library.opcheck(torch.ops.fcn_kernels.rarefied_conv2d_triton.default, args)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["depthwise", "dense-dot"])
def test_torch_compile_fullgraph(name):
    case = CASES[name]
    x, w, b = [t.cuda().requires_grad_() if t is not None else None for t in make_inputs(case, torch.float32)]
    fn = lambda x, w, b: fcn_kernels.rarefied_conv2d(x, w, b, backend="triton", **case.kwargs())
    y = torch.compile(fn, fullgraph=True)(x, w, b)
    exact = reference.rarefied_conv2d(*(t.detach().cpu().double() for t in (x, w, b)), **case.kwargs())
    torch.testing.assert_close(y.cpu().double(), exact, rtol=1e-4, atol=1e-4)  # float64: no TF32 reference
    y.sum().backward()
    assert x.grad is not None and w.grad is not None


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vgg_conv5_and_depthwise_full_size(dtype):
    """The benchmark shapes once: dense 512 -> 512 3x3 r2 64x64 (tl.dot) and depthwise 64 channels r4."""
    for cin, cout, groups, r in ((512, 512, 1, 2), (64, 64, 64, 4)):
        case = Case(2, cin, cout, groups, 64, 64, (3, 3), (r, r), (r, r), True)
        check(case, dtype)
