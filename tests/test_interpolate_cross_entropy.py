"""fcn_kernels.interpolate_cross_entropy (docs/DESIGN.md §2.6) against the float64 composition
pixelwise_cross_entropy(F.interpolate(x, size=target's, mode="bilinear"), target), value and gradient, at
derived error bounds in every dtype. Fresh random inputs every run (conftest's `seed`; replay with
FCN_TEST_SEED=...). Each test takes a `backend` (cpu, cuda, triton); Triton gets the tiny variants (`tiny`): under
TRITON_INTERPRET=1 its kernels run in Python."""

import math
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, note, strategies as st

import fcn_kernels
from _helpers.backends import NEEDS_GPU, backends, device_of, gpu_check, grid, tiny
from _helpers.child_errors import assert_clear_errors
from _helpers.loss_cases import (
    BF16,
    F16,
    F32,
    F64,
    IGNORE,
    Loss,
    Problem,
    assert_same_bits,
    check_loss,
    losses,
    make_target,
    random_loss,
    random_shape,
)
from _helpers.opcheck import opcheck
from _helpers.upsample_cases import LAYOUTS
from fcn_kernels import backends as backend_rule, reference
from fcn_kernels._tolerance import EPS

# cpu, triton; cuda joins when its kernels exist (docs/DESIGN.md §2.5).
BACKENDS = backends("cpu", "cuda", "triton")


def problem(N, C, H, W, size, align_corners=False, dtype=F64):
    """The loss of F.interpolate's scores (tests/loss_cases.py), on fresh inputs in `dtype`.

    A score blends 4 inputs; an input pixel's gradient gathers every output pixel whose taps include it.
    Slack: the taps' weights are computed in float32 (float64 for float64 x) as PyTorch computes them, and
    the source coordinate scale * (i + 0.5) - 0.5 rounds three times, so each weight is off the exact one by
    at most dl = 2 eps (in + 2) per axis; a score by sum |dw| |x| <= 4 (dl_h + dl_w) max |x|, and a gradient
    element by (dl_h + dl_w) times the sum of |dscore| over the outputs it gathers."""
    Ho, Wo = size
    x = torch.randn(N, C, H, W, dtype=dtype)
    eps = EPS[F64] if dtype == F64 else EPS[F32]
    dl = 2 * eps * (H + 2) + 2 * eps * (W + 2)
    gathers = (2 * math.ceil(Ho / H) + 2) * (2 * math.ceil(Wo / W) + 2)

    def scores(x):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)

    def fused(v, t, backend, **o):  # on the backend's device, compared on the CPU
        dev = device_of(backend)
        loss = fcn_kernels.interpolate_cross_entropy(
            v[0].to(dev), t.to(dev), align_corners=align_corners, backend=backend, **o
        )
        return loss.cpu()

    def slack(exact_in, dscore_abs):
        plane_max = exact_in[0].abs().amax((2, 3), keepdim=True)
        grads = None
        if dscore_abs is not None:
            grads = [dl * gathers * dscore_abs.amax((2, 3), keepdim=True).expand_as(exact_in[0])]
        return 4 * dl * plane_max, grads

    return Problem(
        inputs=[x],
        names=("x",),
        scores=scores,
        fused=fused,
        stock=lambda v, t, **o: reference.interpolate_cross_entropy(v[0], t, align_corners=align_corners, **o),
        n_fwd=6,
        n_grads=(gathers + Wo,),
        slack=slack,
    )


def check(N, C, H, W, size, align_corners=False, loss: Loss = None, dtype=F64, **kw):
    loss = loss or Loss()
    p = problem(N, C, H, W, size, align_corners, dtype)
    check_loss(p, make_target(N, C, size, loss), loss, dtype, what=f"{(N, C, H, W)} -> {size} ac={align_corners}", **kw)


# ---------------------------------------------------------------------------------------------------------
# value and gradient against the float64 composition
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend, batch", grid(cpu=range(3), cuda=[gpu_check(0), 1, 2], triton=[0]))
def test_random_float64(seed, backend, batch):
    rng = random.Random(seed)
    for _ in range(3 if tiny(backend) else 12):
        shape = random_shape(rng, tiny=tiny(backend))
        check(**shape, loss=random_loss(rng), backend=backend, seed=rng.randrange(2**31))


HEADS = [
    (1, 150, 8, 8, (64, 64)),
    (2, 19, 8, 16, (63, 130)),
    (1, 21, 13, 13, (100, 100)),
    (1, 5, 40, 30, (7, 9)),
    (2, 4, 6, 6, (6, 6)),
    (1, 3, 1, 1, (5, 1)),
]
# Triton's: 2x, a non-integer scale, downsampling, the same size, a 1 x 1 input
TINY_HEADS = [
    gpu_check((1, 3, 8, 8, (16, 16))),
    ((1, 4, 6, 5, (13, 11)),),
    ((2, 3, 9, 7, (5, 4)),),
    ((1, 3, 1, 1, (5, 1)),),
]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(
    "backend, shape", grid(cpu=[(h,) for h in HEADS], cuda=[(h,) for h in HEADS], triton=TINY_HEADS)
)
def test_heads_and_edge_sizes(seed, backend, align_corners, shape):
    """ADE20K-, Cityscapes- and VOC-like heads (small), downsampling, the same size, a 1 x 1 input."""
    N, C, H, W, size = shape
    check(N, C, H, W, size, align_corners, Loss(class_weight=True), backend=backend)


@pytest.mark.parametrize(
    "backend, dtype", grid(cpu=[F32, BF16, F16], cuda=[F32, gpu_check(BF16), F16], triton=[F32, BF16, F16])
)
def test_lower_precision(seed, backend, dtype):
    rng = random.Random(seed)
    for _ in range(1 if tiny(backend) else 6):
        shape = random_shape(rng, tiny=tiny(backend))
        check(**shape, loss=random_loss(rng), dtype=dtype, backend=backend, seed=rng.randrange(2**31))
    C, H, size = (5, 4, (16, 16)) if tiny(backend) else (150, 8, (64, 64))
    check(1, C, H, H, size, loss=Loss(class_weight=True), dtype=dtype, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(seed, backend, layout):
    rng = random.Random(seed)
    for _ in range(1 if tiny(backend) else 4):
        shape = random_shape(rng, tiny=tiny(backend))
        check(**shape, loss=random_loss(rng), backend=backend, transform=LAYOUTS[layout])


def test_bound_catches_a_wrong_loss(seed):
    """The derived bounds fail a loss (and so its gradient) off by a relative 1e-3: they test something."""
    for loss in (Loss(), Loss(reduction="none")):
        p = problem(2, 5, 8, 8, (64, 64), dtype=F32)
        wrong = lambda v, t, **o: p.fused(v, t, **o) * (1 + 1e-3)  # noqa: E731
        with pytest.raises(AssertionError, match="exceeds the bound"):
            check_loss(p, make_target(2, 5, (64, 64), loss), loss, F32, fused=wrong)


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))  # hypothesis's many draws: too slow for the interpreter
@given(
    shape=st.builds(lambda seed: random_shape(random.Random(seed)), st.integers(0, 2**31 - 1)),
    loss=losses(),
    dtype=st.sampled_from([F64, F32, BF16]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_equals_the_composition(backend, shape, loss, dtype, seed):
    torch.manual_seed(seed)
    note(f"{shape} {loss} {dtype}")
    check(**shape, loss=loss, dtype=dtype, backend=backend, seed=seed)


# ---------------------------------------------------------------------------------------------------------
# the loss's options
# ---------------------------------------------------------------------------------------------------------
def _small(backend="cpu", **kw):
    """A small problem on the backend's device."""
    x = torch.randn(2, 3, 4, 5, dtype=F64, device=device_of(backend), requires_grad=True)
    target = torch.randint(0, 3, (2, 11, 13), device=device_of(backend))
    return x, target, kw


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_loss_and_gradient(backend, reduction):
    x, target, kw = _small(backend, reduction=reduction)
    target.fill_(IGNORE)
    loss = fcn_kernels.interpolate_cross_entropy(x, target, backend=backend, **kw)
    assert bool((loss == 0).all()) and loss.shape == (() if reduction != "none" else target.shape)
    assert bool((torch.autograd.grad(loss.sum(), x)[0] == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("explicit_generator", [False, True])
def test_sampling_keeps_the_composition_pixels(seed, backend, explicit_generator):
    x, target, kw = _small(backend, reduction="none", sample_p=0.3)
    gen = lambda: torch.Generator(x.device).manual_seed(seed) if explicit_generator else None  # noqa: E731
    torch.manual_seed(seed)
    terms = fcn_kernels.interpolate_cross_entropy(x, target, generator=gen(), backend=backend, **kw)
    torch.manual_seed(seed)
    stock = reference.interpolate_cross_entropy(x, target, generator=gen(), **kw)
    torch.manual_seed(seed)
    kept = torch.rand(target.shape, generator=gen(), device=x.device) < 0.3
    assert torch.equal(terms != 0, kept) and torch.equal(stock != 0, kept)
    torch.testing.assert_close(terms, stock)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("label", [3, -1, 256])
def test_bad_labels_are_value_errors(backend, label):
    x, target, kw = _small(backend)
    target[1, 4, 7] = label
    with pytest.raises(ValueError, match=str(label)):
        fcn_kernels.interpolate_cross_entropy(x, target, backend=backend, **kw)
    with pytest.raises(ValueError, match=str(label)):
        reference.interpolate_cross_entropy(x, target, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_scores_as_the_composition(backend, value):
    x, target, kw = _small(backend, reduction="none")
    with torch.no_grad():
        x[1, 1, 2, 3] = value
    terms = fcn_kernels.interpolate_cross_entropy(x, target, backend=backend, **kw).detach()
    stock = reference.interpolate_cross_entropy(x, target, **kw).detach()
    assert torch.equal(terms.isnan(), stock.isnan()) and torch.equal(terms.isinf(), stock.isinf())
    assert bool(terms.isnan().any())
    finite = stock.isfinite()
    torch.testing.assert_close(terms[finite], stock[finite])


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_weight_gradient_and_other_ignore_index(backend):
    x, target, kw = _small(backend)
    target[0, :2] = -100
    cw = torch.rand(3, dtype=F64, device=x.device, requires_grad=True)
    got = fcn_kernels.interpolate_cross_entropy(x, target.int(), class_weight=cw, ignore_index=-100, backend=backend)
    want = reference.interpolate_cross_entropy(x, target, class_weight=cw, ignore_index=-100)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, cw)[0], torch.autograd.grad(want, cw)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_zero(backend):
    x = torch.randn(0, 4, 5, 5, device=device_of(backend), requires_grad=True)
    target = torch.zeros(0, 12, 12, dtype=torch.long, device=x.device)
    for reduction in ("mean", "sum", "none"):
        loss = fcn_kernels.interpolate_cross_entropy(x, target, reduction=reduction, backend=backend)
        assert loss.shape == ((0, 12, 12) if reduction == "none" else ()) and bool((loss == 0).all())
        (gx,) = torch.autograd.grad(loss.sum(), x, allow_unused=True, materialize_grads=True)
        assert gx.shape == x.shape


# ---------------------------------------------------------------------------------------------------------
# the op's contract
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(seed, backend):
    rng = random.Random(seed)
    for _ in range(2 if tiny(backend) else 4):
        shape = random_shape(rng, max_batch=1)
        if tiny(backend):  # the numerical Jacobian runs the forward twice per element of x
            shape.update(C=2, H=min(shape["H"], 3), W=min(shape["W"], 3), size=(5, 4))
        shape["N"] = max(shape["N"], 1)
        dev = device_of(backend)
        x = torch.randn(shape["N"], shape["C"], shape["H"], shape["W"], dtype=F64, device=dev, requires_grad=True)
        target = make_target(shape["N"], shape["C"], shape["size"], Loss(ignore=0.2)).to(dev)
        reduction = "mean" if tiny(backend) else rng.choice(["mean", "none"])

        def fn(x, target=target, reduction=reduction, ac=shape["align_corners"]):
            return fcn_kernels.interpolate_cross_entropy(
                x, target, align_corners=ac, reduction=reduction, backend=backend
            )

        assert torch.autograd.gradcheck(fn, (x,)), shape


ON_GPU = backends("cpu", "cuda", pytest.param("triton", marks=NEEDS_GPU))  # triton_op's checks need CUDA tensors


@pytest.mark.parametrize("backend", ON_GPU)
@pytest.mark.parametrize("align_corners", [False, True])
def test_opcheck(backend, align_corners):
    dev = device_of(backend)
    x = torch.randn(2, 4, 5, 6, device=dev, requires_grad=True)
    target = torch.randint(0, 4, (2, 13, 11), device=dev)
    target[0, 0] = IGNORE
    suffix = "_triton" if backend == "triton" else ""
    forward = getattr(torch.ops.fcn_kernels, "interpolate_logsumexp" + suffix)
    backward = getattr(torch.ops.fcn_kernels, "interpolate_logsumexp_backward" + suffix)
    opcheck(forward.default, (x, target, align_corners, IGNORE))
    lse = forward(x, target, align_corners, IGNORE)[0].detach()
    grads = torch.randn(2, 2, 13, 11, device=dev)
    opcheck(backward.default, (grads[0], grads[1], x.detach(), target, lse, align_corners, IGNORE))


@pytest.mark.parametrize("backend", ON_GPU)
def test_compile_fullgraph(backend):
    dev = device_of(backend)
    x, target, kw = _small(backend, class_weight=torch.rand(3, device=dev))
    x = x.detach().float().requires_grad_()
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda x, t: fcn_kernels.interpolate_cross_entropy(x, t, backend=backend, **kw), fullgraph=True
    )
    loss = compiled(x, target)
    eager = fcn_kernels.interpolate_cross_entropy(x, target, backend=backend, **kw)
    torch.testing.assert_close(loss, eager)
    torch.testing.assert_close(torch.autograd.grad(loss, x)[0], torch.autograd.grad(eager, x)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_bits(backend):
    (N, C, H, W), size = ((1, 3, 5, 6), (17, 13)) if tiny(backend) else ((3, 7, 9, 11), (61, 83))
    x = torch.randn(N, C, H, W, device=device_of(backend))
    target = torch.randint(0, C, (N, *size), device=x.device)
    assert_same_bits(lambda x: fcn_kernels.interpolate_cross_entropy(x, target, backend=backend), [x])


@pytest.mark.parametrize("backend", backends("cpu"))
def test_same_bits_whatever_the_thread_count(backend):
    x = torch.randn(2, 7, 13, 9)
    target = torch.randint(0, 7, (2, 70, 50))
    assert_same_bits(lambda x: fcn_kernels.interpolate_cross_entropy(x, target, backend=backend), [x], (1, 2, 3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_saves_only_pixel_maps(backend):
    (N, C, H, W), size = ((1, 5, 4, 4), (16, 16)) if tiny(backend) else ((2, 19, 8, 9), (64, 72))
    x = torch.randn(N, C, H, W, device=device_of(backend), requires_grad=True)
    target = torch.randint(0, C, (N, *size), device=x.device)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):
        loss = fcn_kernels.interpolate_cross_entropy(
            x, target, class_weight=torch.rand(C, device=x.device), sample_p=0.5, backend=backend
        )
    assert saved
    for t in saved:
        assert t.data_ptr() in (x.data_ptr(), target.data_ptr()) or t.numel() <= target.numel(), tuple(t.shape)
    loss.backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_argument_errors(backend):
    x, target, kw = _small()
    call = lambda x=x, target=target, **over: fcn_kernels.interpolate_cross_entropy(  # noqa: E731
        x, target, backend=backend, **{**kw, **over}
    )
    for over, error, words in [
        (dict(target=target.double()), TypeError, "target"),
        (dict(target=target[:1]), ValueError, "target"),
        (dict(target=torch.zeros(2, 0, 5, dtype=torch.long)), ValueError, "size"),
        (dict(x=x[:, :0]), ValueError, "x"),
        (dict(x=x[0]), ValueError, "x"),
        (dict(align_corners=1), TypeError, "align_corners"),
        (dict(sample_p=0.0), ValueError, "sample_p"),
        (dict(reduction="max"), ValueError, "reduction"),
        (dict(class_weight=torch.ones(4)), ValueError, "class_weight"),
    ]:
        with pytest.raises(error, match=words):
            call(**over)


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))  # the C++ ops' own checks (cuda: labels on the device)
def test_direct_op_calls_are_checked(backend):
    ops = torch.ops.fcn_kernels
    dev = device_of(backend)
    x, target = torch.randn(1, 2, 3, 3, device=dev), torch.zeros(1, 5, 5, dtype=torch.long, device=dev)
    with pytest.raises(ValueError, match="target label 2"):
        ops.interpolate_logsumexp(x, target + 2, False, IGNORE)
    with pytest.raises(RuntimeError, match="target must be int64"):
        ops.interpolate_logsumexp(x, target.int(), False, IGNORE)
    with pytest.raises(RuntimeError, match="output size must be >= 1"):
        ops.interpolate_logsumexp(x, target[:, :0], False, IGNORE)
    with pytest.raises(RuntimeError, match="x must have non-empty"):
        ops.interpolate_logsumexp(x[:, :0], target, False, IGNORE)
    lse = torch.zeros(1, 5, 5, device=dev)
    with pytest.raises(RuntimeError, match="grad_lse"):
        ops.interpolate_logsumexp_backward(lse[0], lse, x, target, lse, False, IGNORE)


OVERFLOW = {
    "target 2**62 wide": ("F.interpolate_cross_entropy(x, big_target(1, 1, 2**62))", ["size"]),
    "argmax size int64 max": (f"F.interpolate_argmax(x, (1, {2**63 - 1}))", ["size"]),
    "op target 2**62 wide": ("ops.interpolate_logsumexp(x, big_target(1, 1, 2**62), False, 255)", ["size"]),
    "op argmax size 2**40 each": ("ops.interpolate_argmax(x, [2**40, 2**40], False)", ["size", "scores"]),
}


@pytest.mark.parametrize("backend", backends("cpu"))  # the public functions' checks, before any backend
def test_overflowing_sizes_are_clear_errors(backend):
    assert_clear_errors("x = torch.randn(1, 1, 3, 3)", OVERFLOW)


@pytest.mark.parametrize(
    "channels,size,stock",
    [(21, (8, 8), True), (150, (4, 4), True), (21, (32, 32), False), (150, (64, 64), False), (2, (128, 128), False)],
)
def test_rule(channels, size, stock):
    """docs/DESIGN.md §4.1: the loss of a tiny map goes to the stock composition; the labels are always ours."""
    ours = "cpu" if "cpu" in fcn_kernels.available_backends() else "reference"
    cpu = torch.device("cpu")
    got = backend_rule.choose("interpolate_cross_entropy", cpu, channels=channels, out_size=size)
    assert got == ("reference" if stock else ours)
    assert backend_rule.choose("interpolate_argmax", cpu, channels=channels, out_size=size) == ours
    for op in ("interpolate_cross_entropy", "interpolate_argmax"):  # CUDA tensors: the CUDA kernels, else Triton's
        want = next((b for b in ("cuda", "triton") if backend_rule._built(b, op)), "reference")
        assert backend_rule.choose(op, torch.device("cuda"), channels=150, out_size=(512, 512)) == want


def test_auto_choice_runs_the_chosen_path(monkeypatch):
    monkeypatch.delenv("FCN_KERNELS_BACKEND", raising=False)
    calls = []
    real = reference.interpolate_cross_entropy
    monkeypatch.setattr(reference, "interpolate_cross_entropy", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    for size in ((4, 4), (64, 64)):
        calls.clear()
        x = torch.randn(1, 3, 4, 4)
        fcn_kernels.interpolate_cross_entropy(x, torch.randint(0, 3, (1, *size)))
        expected = backend_rule.choose("interpolate_cross_entropy", x.device, channels=3, out_size=size)
        assert bool(calls) == (expected == "reference"), size
