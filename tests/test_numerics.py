"""Numerical edge cases on the cpu backend.

NaN and Inf in any input propagate as in the stock composition, term for term: an output is NaN where
one of the products that the op's definition sums is NaN (a NaN factor, 0 * Inf) or where infinities
of both signs meet, and an infinity of the sign of its infinite terms otherwise; forward and backward.
The products are those of the stock composition (fcn_kernels.reference) with its zero padding (the
rarefied conv's padded zeros are terms), but without the cropped-away outputs: stock's backward also
multiplies their zero gradient, so its grad_x and grad_weight are NaN more often than the math says
when a weight or input is infinite. The expected positions are counted by the reference applied to
0/1 indicators of the special values.

Subnormal and large-magnitude inputs in float32, bfloat16 and float16 stay within the bounds of
tests/_helpers/tolerances.py (no flushing of subnormals, one rounding of a float32 accumulation, so an output
past float16's range is an infinity of its sign and nothing else is)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import fcn_kernels
from _helpers.property_cases import RarefiedCase
from _helpers.threads import per_thread_count
from _helpers.tolerances import assert_close_bound, error_bound
from _helpers.upsample_cases import SMALL, case, make_inputs, outer_product_weight, run
from fcn_kernels import reference
from fcn_kernels._tolerance import EPS

pytestmark = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was not built")

INF = float("inf")

UPSAMPLE = {  # depthwise (FCN's bilinear), dense FMA, dense GEMM-wide, the direct and GEMM paths with a kernel
    # that the stride does not divide (taps past the kernel in their layouts); crops at both edges, skip
    "depthwise": case(  # W = 11: the CPU input gradient's register blocks (8 columns and a rest)
        N=2, channels=3, groups=3, H=5, W=11, out_offset=(1, 0), skip_offset=(1, 2), skip_hw=(12, 26), bias=True
    ),
    "dense": replace(SMALL["dense-fma"], out_offset=(0, 2), out_size=(6, 9), skip_hw=(7, 11)),
    "wide": case(
        cin=8, cout=5, H=4, W=3, K=(3, 4), stride=(1, 2), out_offset=(2, 0), out_size=(4, 8), skip_hw=(4, 8), bias=True
    ),
    "depthwise_odd_kernel": case(channels=3, groups=3, H=4, W=5, K=3, out_offset=1, skip_hw=(8, 10), bias=True),
    "wide_odd_kernel": case(
        channels=4, H=4, W=5, K=(3, 5), stride=(2, 3), out_offset=(0, 1), out_size=(7, 12), skip_hw=(7, 12), bias=True
    ),
}
RAREFIED = {  # padding on every side, both CPU paths (direct, GEMM-wide)
    "depthwise": RarefiedCase(
        N=2, cin=3, cout=3, groups=3, H=7, W=6, K=(3, 3), rarefaction=(2, 3), padding=(2, 3), bias=True
    ),
    "dense": RarefiedCase(
        N=2, cin=4, cout=6, groups=2, H=6, W=7, K=(3, 2), rarefaction=(2, 2), padding=(1, 2), bias=True
    ),
    "wide": RarefiedCase(
        N=1, cin=8, cout=8, groups=1, H=6, W=6, K=(3, 3), rarefaction=(2, 1), padding=(2, 1), bias=True
    ),
}


def _grad(f, inputs, go, i):
    leaves = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    return torch.autograd.grad(f(*leaves), leaves[i], go)[0]


def _indicators(t):
    return {
        k: v.double()
        for k, v in dict(
            nan=t.isnan(),
            pinf=t == INF,
            ninf=t == -INF,
            inf=t.isinf(),
            zero=t == 0,
            pos=t > 0,
            neg=t < 0,
            one=torch.ones_like(t, dtype=torch.bool),
        ).items()
    }


def _bilinear_terms(L, a, b):
    """Counts of the NaN, +Inf and -Inf products in L(a, b), L bilinear (L of 0/1 tensors counts terms)."""
    A, B = _indicators(a), _indicators(b)
    nan = L(A["nan"], B["one"]) + L(A["one"], B["nan"]) + L(A["zero"], B["inf"]) + L(A["inf"], B["zero"])
    pinf = L(A["pinf"], B["pos"]) + L(A["ninf"], B["neg"]) + L(A["pos"], B["pinf"]) + L(A["neg"], B["ninf"])
    ninf = L(A["pinf"], B["neg"]) + L(A["ninf"], B["pos"]) + L(A["pos"], B["ninf"]) + L(A["neg"], B["pinf"])
    return nan, pinf, ninf


def _linear_terms(L, a):
    A = _indicators(a)
    return L(A["nan"]), L(A["pinf"]), L(A["ninf"])


def _specials(*terms):
    """NaN / +Inf / -Inf where the terms make one, 0 elsewhere."""
    nan, pinf, ninf = (sum(t[i] for t in terms) for i in range(3))
    out = torch.zeros_like(nan)
    out[pinf > 0] = INF
    out[ninf > 0] = -INF
    out[(nan > 0) | ((pinf > 0) & (ninf > 0))] = float("nan")
    return out


def expected_specials(f, inputs, go):
    """Special values of the forward and of each input's gradient of f(x, w, *additive), f bilinear in
    (x, w) and linear in each additive input (bias, skip)."""
    x, w, *extra = inputs
    zx, zw, none = torch.zeros_like(x), torch.zeros_like(w), [None] * len(extra)

    def with_extra(j, t):
        return [t if i == j else None for i in range(len(extra))]

    forward = [_bilinear_terms(lambda a, b: f(a, b, *none), x, w)]
    forward += [
        _linear_terms(lambda t, j=j: f(zx, zw, *with_extra(j, t)), e) for j, e in enumerate(extra) if e is not None
    ]
    grads = [
        _specials(_bilinear_terms(lambda g, b: _grad(f, [zx, b, *none], g, 0), go, w)),
        _specials(_bilinear_terms(lambda g, a: _grad(f, [a, zw, *none], g, 1), go, x)),
    ]
    grads += [
        None
        if e is None
        else _specials(
            _linear_terms(lambda g, j=j, e=e: _grad(f, [zx, zw, *with_extra(j, torch.zeros_like(e))], g, 2 + j), go)
        )
        for j, e in enumerate(extra)
    ]
    return _specials(*forward), grads


def upsample_expected(case, inputs, go):
    return expected_specials(lambda *t: reference.upsample_skip(*t, **case.kwargs()), inputs, go)


def rarefied_expected(case, inputs, go):
    # The padding made explicit, so that its zeros are input values (0 * Inf terms), then cropped off grad x.
    (ph, pw), kw = case.padding, dict(case.kwargs(), padding=0)
    x, w, b = inputs
    fwd, (gx, gw, gb) = expected_specials(
        lambda *t: reference.rarefied_conv2d(*t, **kw), [F.pad(x, (pw, pw, ph, ph)), w, b], go
    )
    return fwd, [gx[:, :, ph : ph + case.H, pw : pw + case.W], gw, gb]


OPS = {
    "upsample_skip": (
        UPSAMPLE,
        make_inputs,
        lambda c: c.crop,
        fcn_kernels.upsample_skip,
        reference.upsample_skip,
        upsample_expected,
    ),
    "rarefied_conv2d": (
        RAREFIED,
        lambda c: c.inputs(torch.float64),
        lambda c: c.out,
        fcn_kernels.rarefied_conv2d,
        reference.rarefied_conv2d,
        rarefied_expected,
    ),
}
PARAMS = [(op, name) for op, (cases, *_) in OPS.items() for name in cases]


def assert_specials(actual, expected, stock, what):
    """NaN wherever a term makes one, and elsewhere only where the stock composition has one too (its
    cropped-away outputs); the expected signed infinities; elsewhere finite and equal to stock."""
    nan, e_nan, s_nan = torch.isnan(actual), torch.isnan(expected), torch.isnan(stock)
    assert not bool((e_nan & ~nan).any()), f"{what}: no NaN at {int((e_nan & ~nan).sum())} positions with NaN terms"
    extra = nan & ~e_nan & ~s_nan
    assert not bool(extra.any()), (
        f"{what}: NaN at {int(extra.sum())} positions where neither the terms nor the stock composition have one"
    )
    rest = ~nan
    assert torch.equal(torch.isinf(actual[rest]), torch.isinf(expected[rest])) and torch.equal(
        actual[rest & torch.isinf(actual)], expected[rest & torch.isinf(actual)]
    ), f"{what}: infinities other than expected"
    finite = rest & torch.isfinite(expected) & torch.isfinite(stock)
    torch.testing.assert_close(actual[finite], stock[finite], rtol=1e-9, atol=1e-9, msg=what)


@pytest.mark.parametrize("special", [float("nan"), INF, -INF])
@pytest.mark.parametrize("where", ["x", "weight", "bias", "skip", "grad_out"])
@pytest.mark.parametrize("op,name", PARAMS)
def test_nan_and_inf_propagate_as_in_the_stock_composition(seed, op, name, where, special):
    cases, make, out_hw, fn, ref, expected_of = OPS[op]
    case = cases[name]
    inputs = list(make(case))
    go = torch.randn(case.N, case.cout, *out_hw(case), dtype=torch.float64)
    slot = {"x": 0, "weight": 1, "bias": 2, "skip": 3, "grad_out": None}[where]
    if slot is not None and slot >= len(inputs):
        pytest.skip(f"{op} has no {where} input")
    target = go if slot is None else inputs[slot]
    flat = target.view(-1)
    flat[torch.randperm(flat.numel())[: max(1, flat.numel() // 10)]] = special
    ours, ours_grads = run(fn, inputs, go, backend="cpu", **case.kwargs())
    stock, stock_grads = run(ref, inputs, go, **case.kwargs())
    exp, exp_grads = expected_of(case, inputs, go)
    assert_specials(ours, exp, stock, f"{op} {name} forward, {special} in {where}")
    for i, (a, e, s) in enumerate(zip(ours_grads, exp_grads, stock_grads)):
        if e is not None:
            assert_specials(a, e, s, f"{op} {name} grad of input {i}, {special} in {where}")


# Magnitudes: subnormal inputs (and products), and inputs whose products reach the top of the range.
SCALES = {
    torch.float32: {"subnormal": (2.0**-130, 1.0), "large": (2.0**60, 2.0**60)},
    torch.bfloat16: {"subnormal": (2.0**-130, 1.0), "large": (2.0**60, 2.0**60)},
    torch.float16: {"subnormal": (2.0**-20, 1.0), "large": (2.0**7, 2.0**7)},
}
FINFO_MAX = {dtype: torch.finfo(dtype).max for dtype in SCALES}


@pytest.mark.parametrize("scale", ["subnormal", "large"])
@pytest.mark.parametrize("dtype", list(SCALES))
@pytest.mark.parametrize("op,name", PARAMS)
def test_subnormal_and_large_magnitudes_within_bounds(seed, op, name, dtype, scale):
    cases, make, out_hw, fn, ref, _ = OPS[op]
    case = cases[name]
    sx, sw = SCALES[dtype][scale]
    inputs = [None if t is None else (t * (sw if i == 1 else sx)).to(dtype) for i, t in enumerate(make(case))]
    go = torch.randn(case.N, case.cout, *out_hw(case), dtype=dtype)
    ours, ours_grads = run(fn, inputs, go, backend="cpu", **case.kwargs())
    exact_in = [None if t is None else t.double() for t in inputs]
    exact, exact_grads = run(ref, exact_in, go.double(), **case.kwargs())
    bound, bound_grads = run(
        ref, [None if t is None else t.abs() for t in exact_in], go.double().abs(), **case.kwargs()
    )
    n = case.terms()
    if scale == "subnormal":
        tiny = torch.finfo(dtype).tiny
        assert bool(((exact.abs() < tiny) & (exact != 0)).any()), "the case must produce subnormal outputs"
    for what, a, e, b in [("forward", ours, exact, bound)] + list(
        zip(("grad x", "grad weight", "grad bias", "grad skip"), ours_grads, exact_grads, bound_grads)
    ):
        if e is None:
            continue
        # Past the dtype's range (to within the bound of where rounding overflows) the result is an infinity.
        edge = FINFO_MAX[dtype] * (1 + EPS[dtype] / 2)
        over = e.abs() - error_bound(e, b, n, dtype) > edge
        assert bool(torch.isinf(a[over]).all()) and torch.equal(a[over].sign(), e[over].sign()), (
            f"{op} {name} {what}: an output past the {dtype} range is not an infinity of its sign"
        )
        near = (e.abs() + error_bound(e, b, n, dtype) >= edge) & ~over
        keep = ~(over | near)
        assert_close_bound(a[keep], e[keep], b[keep], n, dtype, f"{op} {name} {what} ({dtype}, {scale})")


# Tiny: products of it and a normal value are denormal in float32.
TINY = 2.0**-130


def _flush_problems():
    """name -> (call, inputs): call(*inputs) returns the op's outputs and its inputs' gradients, each from a CPU
    kernel's parallel loop. Sizes that give both threads rows of every loop: the forwards' rows and the backward
    passes of the direct paths (the GEMM paths' BLAS calls may run on BLAS's own threads, outside the
    guarantee: DESIGN §4.2), the rarefied conv's three passes, the fused losses' two."""
    # register blocks (random filters), aligned rows (bilinear), row buffers (2 channels a group); no bias: its
    # gradient is torch's sum, whose shares on the workers are not flushed
    up = {
        "upsample_skip depthwise": case(
            N=2, channels=3, groups=3, H=23, W=19, K=16, stride=8, out_offset=(5, 3), out_size=(170, 150),
            skip_offset=(1, 2), skip_hw=(171, 152),
        ),
        "upsample_skip grouped": case(N=2, channels=6, groups=3, H=24, W=20, K=4, stride=2, out_offset=1),
    }  # fmt: skip
    problems = {}
    for name, c in up.items():
        x, w, b, skip = make_inputs(c, torch.float32)
        go = torch.randn(c.N, c.cout, *c.crop)

        def skip_call(x, w, b, skip, go, c=c):
            leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, w, b, skip)]
            y = fcn_kernels.upsample_skip(*leaves, **c.kwargs(), backend="cpu")
            labels = fcn_kernels.upsample_argmax(*leaves, **c.kwargs(), backend="cpu")
            return (y, labels, *torch.autograd.grad(y, [t for t in leaves if t is not None], go))

        problems[name] = (skip_call, (x, w, b, skip, go))
        if c.groups == c.cin:
            problems[name + " bilinear"] = (
                skip_call,
                (x, outer_product_weight(c, torch.float32, "bilinear"), b, skip, go),
            )
    for name, rc in {
        "rarefied_conv2d depthwise": RarefiedCase(
            N=2, cin=3, cout=3, groups=3, H=40, W=36, K=(3, 3), rarefaction=(2, 3), padding=(2, 3), bias=True
        ),
        "rarefied_conv2d grouped": RarefiedCase(
            N=2, cin=6, cout=6, groups=3, H=24, W=24, K=(3, 3), rarefaction=(2, 1), padding=(2, 1), bias=True
        ),
    }.items():
        x, w, b = (t.float() for t in rc.inputs(torch.float64))
        go = torch.randn(rc.N, rc.cout, *rc.out)

        def rarefied_call(x, w, b, go, rc=rc):
            leaves = [t.detach().requires_grad_() for t in (x, w, b)]
            y = fcn_kernels.rarefied_conv2d(*leaves, **rc.kwargs(), backend="cpu")
            return (y, *torch.autograd.grad(y, leaves, go))

        problems[name] = (rarefied_call, (x, w, b, go))
    x = torch.randn(2, 5, 23, 19)
    w = fcn_kernels.bilinear_kernel(5, 16, groups=5)
    target = torch.randint(0, 5, (2, 170, 150))

    def upsample_loss_call(x, w, go):
        leaf = x.detach().requires_grad_()
        loss = fcn_kernels.upsample_cross_entropy(
            leaf, target, w, stride=8, groups=5, out_offset=(5, 3), reduction="none"
        )
        return (loss, *torch.autograd.grad(loss, leaf, go))

    problems["upsample_cross_entropy"] = (upsample_loss_call, (x, w, torch.randn(2, 170, 150)))
    xi = torch.randn(2, 5, 40, 36)
    ti = torch.randint(0, 5, (2, 150, 140))

    def interpolate_loss_call(x, go):
        leaf = x.detach().requires_grad_()
        loss = fcn_kernels.interpolate_cross_entropy(leaf, ti, reduction="none")
        labels = fcn_kernels.interpolate_argmax(x, (150, 140))
        return (loss, labels, *torch.autograd.grad(loss, leaf, go))

    problems["interpolate_cross_entropy"] = (interpolate_loss_call, (xi, torch.randn(2, 150, 140)))
    return problems


with torch.random.fork_rng():  # a fixed seed (a failure reproduces), the global generator's state untouched
    torch.manual_seed(0)
    FLUSH = _flush_problems()


@pytest.mark.parametrize("name", list(FLUSH))
def test_flush_denormal_same_bits_on_every_thread_count(name):
    """torch.set_flush_denormal(True) sets the calling thread's flags only; every CPU kernel's parallel loop
    (csrc/cpu/parallel_chunks.h) runs its shares under the caller's flags, so that the results, forward and
    backward, have the same bits on 1 and 2 threads. Inputs and gradients scaled to make denormal products
    (once the inputs, once the output gradient): flushing changes some of every op's results."""
    call, inputs = FLUSH[name]
    changed = False
    for scaled in (0, len(inputs) - 1):  # x, then the output gradient
        args = [
            t * TINY if i == scaled and t is not None and t.is_floating_point() else t for i, t in enumerate(inputs)
        ]
        # the OpenMP threads start here, not under the caller's flush flags (a thread started under them keeps
        # them for every later op)
        (kept,) = per_thread_count(lambda: call(*args), (2,))
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU cannot flush denormals")
        try:
            results = per_thread_count(lambda: call(*args), (1, 2, 2))
        finally:
            torch.set_flush_denormal(False)
        changed |= any(not torch.equal(a, b) for a, b in zip(results[0], kept))
        for got in results[1:]:
            for i, (a, b) in enumerate(zip(got, results[0])):
                assert torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8)), (
                    f"{name}, {'x' if scaled == 0 else 'grad'} scaled: result {i} differs between 1 and 2 threads"
                )
    assert changed, f"{name}: flushing changed nothing"
