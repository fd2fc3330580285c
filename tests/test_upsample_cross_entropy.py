"""fcn_kernels.upsample_cross_entropy (docs/DESIGN.md §2.5) against the float64 composition
pixelwise_cross_entropy(upsample_skip(...)), value and gradient in x, weight, bias and skip, at derived error
bounds in every dtype. Fresh random inputs every run (conftest's `seed`; replay with FCN_TEST_SEED=...).

Each test takes a `backend` (cpu, cuda, triton); a cuda or GPU triton test makes its tensors on the GPU. Triton
gets tiny cases (`tiny`): under TRITON_INTERPRET=1 its kernels run in Python."""

import math
import random
from dataclasses import replace

import pytest
import torch
from hypothesis import given, note, strategies as st

import fcn_kernels
from _helpers.backends import NEEDS_GPU, backend_default_device, backends, gpu_check, grid, tiny  # noqa: F401
from _helpers.child_errors import assert_clear_errors
from _helpers.loss_cases import BF16, F16, F32, F64, IGNORE, Loss, Problem, check_loss, losses, make_target, random_loss
from _helpers.opcheck import opcheck
from _helpers.property_cases import upsample_cases
from _helpers.upsample_cases import FCN8S_STAGES, LAYOUTS, SMALL, case, make_inputs, random_case, shape_fields
from fcn_kernels import backends as backend_rule, reference

BACKENDS = backends("cpu", "cuda", "triton")
# The tests of the C++ ops themselves or of the CPU kernel's threads, and the property search (too slow for
# Triton's interpreter).
COMPILED = backends("cpu", "cuda")
pytestmark = pytest.mark.usefixtures("backend_default_device")  # cuda's and GPU triton's tensors on the GPU


def geometry(c):
    """upsample_cross_entropy's geometry arguments of an upsample_skip Case (out_size is the target's)."""
    return dict(stride=c.stride, groups=c.groups, out_offset=c.out_offset, skip_offset=c.skip_offset)


def inputs_of(c, dtype=F64):
    """upsample_cases.make_inputs (CPU tensors) on the default device (the GPU for a cuda test)."""
    return [t.to(torch.get_default_device()) if t is not None else None for t in make_inputs(c, dtype)]


def problem(c, dtype=F64):
    """The loss of upsample_skip Case c's scores (tests/loss_cases.py), on fresh inputs in `dtype`.

    Terms per element: a score sums its group's input channels over its taps, then bias and skip; grad x
    every tap of every class of its group (and the column phases' sum); grad weight every input pixel (and the
    backward's partial sums); grad bias every output pixel (and the partial sums); grad skip is one term."""
    kw = geometry(c)
    taps = math.ceil(c.K[0] / c.stride[0]) * math.ceil(c.K[1] / c.stride[1])
    return Problem(
        inputs=inputs_of(c, dtype),
        names=("x", "weight", "bias", "skip"),
        scores=lambda *v: reference.upsample_skip(*v, out_size=c.crop, **kw),
        fused=lambda v, t, **o: fcn_kernels.upsample_cross_entropy(v[0], t, *v[1:], **kw, **o),
        stock=lambda v, t, **o: reference.upsample_cross_entropy(v[0], t, *v[1:], **kw, **o),
        n_fwd=c.cin // c.groups * taps + 2,
        n_grads=(
            c.cout // c.groups * c.K[0] * c.K[1] + c.stride[1],
            c.N * c.H * c.W + 64,
            c.N * c.crop[0] * c.crop[1] + 64,
            2,
        ),
    )


def tiny_case(rng):
    """A random case for Triton's interpreter: at most 2 input and 3 output channels per group, a map of at most
    3 x 3, at most one image, the window (and skip) shrunk to fit the smaller full output."""
    c = random_case(rng, max_batch=1, per_group=(rng.randint(1, 2), rng.randint(1, 3)))
    c.H, c.W = min(c.H, 3), min(c.W, 3)
    c.out_offset = tuple(min(o, f - 1) for o, f in zip(c.out_offset, c.full))
    c.out_size = tuple(min(n, f - o) for n, f, o in zip(c.crop, c.full, c.out_offset))
    if c.skip_hw is not None:
        c.skip_hw = tuple(n + o for n, o in zip(c.out_size, c.skip_offset))
    return c


def check(c, loss: Loss = None, dtype=F64, **kw):
    """upsample_cross_entropy on Case c against the float64 composition (loss_cases.check_loss)."""
    loss = loss or Loss()
    check_loss(problem(c, dtype), make_target(c.N, c.cout, c.crop, loss), loss, dtype, what=str(c), **kw)


# ---------------------------------------------------------------------------------------------------------
# value and gradient against the float64 composition
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend,batch", grid(cpu=range(4), cuda=[gpu_check(0), 1, 2, 3], triton=[0]))
def test_random_float64(seed, backend, batch):
    rng = random.Random(seed + batch)
    for _ in range(4 if tiny(backend) else 12):
        c = tiny_case(rng) if tiny(backend) else random_case(rng)
        check(c, random_loss(rng), backend=backend, seed=rng.randrange(2**31))


@pytest.mark.parametrize("backend,stage", grid(cpu=FCN8S_STAGES, triton=[gpu_check("upscore8")]))
def test_fcn8s_stages_float64(seed, backend, stage):
    check(FCN8S_STAGES[stage], Loss(class_weight=True), backend=backend)


# test_channel_layouts' geometry (its channels set per kind): a crop window and a skip offset on both axes
CHANNEL_LAYOUT_BASE = case(
    N=2, K=(5, 4), stride=(3, 2), out_offset=(2, 1), out_size=(9, 6), skip_offset=(1, 2), skip_hw=(11, 9), bias=True
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["depthwise", "grouped", "dense"])
def test_channel_layouts(seed, backend, kind):
    cin_g, cout_g, groups = {"depthwise": (1, 1, 5), "grouped": (2, 3, 2), "dense": (5, 6, 1)}[kind]
    if tiny(backend):
        cin_g, cout_g, groups = min(cin_g, 3), min(cout_g, 3), min(groups, 3)
    c = replace(CHANNEL_LAYOUT_BASE, **shape_fields(groups, cin_g, cout_g, 5, 4, (5, 4)))
    check(c, Loss(class_weight=True, ignore=0.2), backend=backend)


@pytest.mark.parametrize("backend,stride", grid(cpu=[1, 2, 3, 8], triton=[3]))
def test_windows_at_both_edges(seed, backend, stride):
    """Crop windows at the start, touching the end and inside; kernels smaller and larger than the stride
    (rows no input reaches when K < stride)."""
    rng = random.Random(seed)
    for K in sorted({1, 2 * stride + 1} if tiny(backend) else {1, stride, 2 * stride, 2 * stride + 1}):
        H, W = rng.randint(1, 3 if tiny(backend) else 5), rng.randint(1, 3 if tiny(backend) else 5)
        Hf, Wf = (H - 1) * stride + K, (W - 1) * stride + K
        for oy, ho in ((0, Hf), (Hf - 1, 1), (1, Hf - 2), (0, 0)):
            if ho < 0:
                continue
            ox = rng.randint(0, Wf - 1)
            window = dict(out_offset=(oy, ox), out_size=(ho, Wf - ox), skip_hw=(ho + 1, Wf - ox + 2))
            c = case(N=2, channels=3, groups=3, H=H, W=W, K=K, stride=stride, skip_offset=(1, 2), bias=True, **window)
            check(c, random_loss(rng), backend=backend, seed=rng.randrange(2**31))


@pytest.mark.parametrize(
    "backend,dtype", grid(cpu=[F32, BF16, F16], cuda=[F32, gpu_check(BF16), F16], triton=[F32, gpu_check(BF16), F16])
)
def test_lower_precision(seed, backend, dtype):
    rng = random.Random(seed)
    for _ in range(2 if tiny(backend) else 6):
        c = tiny_case(rng) if tiny(backend) else random_case(rng)
        check(c, random_loss(rng), dtype, backend=backend, seed=rng.randrange(2**31))
    check(
        (SMALL["upscore8-dw"] if tiny(backend) else FCN8S_STAGES["upscore8"]),
        Loss(class_weight=True),
        dtype,
        backend=backend,
    )
    if not tiny(backend):  # a skip added to rows of 16 (the CPU's float16 scores a register at a time)
        check(FCN8S_STAGES["upscore2+pool4"], Loss(), dtype, backend=backend)


@pytest.mark.parametrize("backend,dtype", grid(cuda=[F64, BF16]))
def test_cuda_64bit_index_path(seed, backend, dtype, monkeypatch):
    """Every launch down the CUDA kernels' 64-bit index path (else only calls past 2**31 elements take it)."""
    monkeypatch.setenv("FCN_KERNELS_CUDA_INDEX64", "1")
    rng = random.Random(seed)
    for _ in range(6):
        check(random_case(rng), random_loss(rng), dtype, backend=backend, seed=rng.randrange(2**31))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(seed, backend, layout):
    rng = random.Random(seed)
    for _ in range(1 if tiny(backend) else 4):
        c = tiny_case(rng) if tiny(backend) else random_case(rng)
        check(c, random_loss(rng), backend=backend, transform=LAYOUTS[layout])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "need",
    [
        (True, False, False, False),
        (False, True, False, False),
        (False, False, True, True),
        (False, False, False, False),
    ],
)
def test_each_gradient_alone(seed, backend, need):
    """Only the gradients asked for: a fixed weight (FCN's bilinear upsampling) gets none."""
    c = case(N=2, **shape_fields(2, 2, 3, 4, 5, 4), stride=2, out_offset=1, skip_offset=(0, 1), skip_hw=(10, 12))
    check(replace(c, bias=True), Loss(ignore=0.3), backend=backend, need=need)


# ---------------------------------------------------------------------------------------------------------
# the loss's options
# ---------------------------------------------------------------------------------------------------------
def _small(**kw):
    x = torch.randn(2, 3, 4, 5, dtype=F64, requires_grad=True)
    w = torch.randn(3, 1, 4, 4, dtype=F64, requires_grad=True)
    b = torch.randn(3, dtype=F64, requires_grad=True)
    skip = torch.randn(2, 3, 12, 13, dtype=F64, requires_grad=True)
    target = torch.randint(0, 3, (2, 9, 10))
    return x, w, b, skip, target, dict(stride=2, groups=3, out_offset=(1, 2), skip_offset=(2, 1), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_loss_and_gradient(backend, reduction):
    x, w, b, skip, target, kw = _small(reduction=reduction)
    target.fill_(IGNORE)
    loss = fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, backend=backend, **kw)
    assert loss.shape == (() if reduction != "none" else target.shape)
    assert bool((loss == 0).all())
    grads = torch.autograd.grad(loss.sum(), (x, w, b, skip))
    for g in grads:
        assert bool((g == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_ignored_pixels_with_non_finite_scores_add_nothing(backend):
    """As pixelwise_cross_entropy: an ignored pixel's term is 0 whatever its scores."""
    x, w, b, skip, target, kw = _small(reduction="none")
    with torch.no_grad():
        skip[0, :, 2, 1] = float("inf")  # output pixel (0, 0, 0)
    target[0, 0, 0] = IGNORE
    terms = fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, backend=backend, **kw)
    stock = reference.upsample_cross_entropy(x, target, w, b, skip, **kw)
    assert terms[0, 0, 0] == 0 and stock[0, 0, 0] == 0
    assert bool(terms.isfinite().all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_as_the_composition(backend, value):
    x, w, b, skip, target, kw = _small(reduction="none")
    with torch.no_grad():
        skip[1, 1, 5, 4] = value  # output pixel (1, 3, 3)
        skip[1, :, 6, 5] = value  # output pixel (1, 4, 4): every class
    terms = fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, backend=backend, **kw).detach()
    stock = reference.upsample_cross_entropy(x, target, w, b, skip, **kw).detach()
    assert torch.equal(terms.isnan(), stock.isnan()) and torch.equal(terms.isinf(), stock.isinf())
    finite = stock.isfinite()
    torch.testing.assert_close(terms[finite], stock[finite])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("explicit_generator", [False, True])
def test_sampling_keeps_the_composition_pixels(seed, backend, explicit_generator):
    """The kept pixels are torch.rand((N, Ho, Wo), generator) < p, the draws of pixelwise_cross_entropy."""
    x, w, b, skip, target, kw = _small(reduction="none", sample_p=0.4)
    device = torch.get_default_device()
    gen = lambda: torch.Generator(device).manual_seed(seed) if explicit_generator else None  # noqa: E731
    torch.manual_seed(seed)
    terms = fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, generator=gen(), backend=backend, **kw)
    torch.manual_seed(seed)
    stock = reference.upsample_cross_entropy(x, target, w, b, skip, generator=gen(), **kw)
    torch.manual_seed(seed)
    kept = torch.rand(target.shape, generator=gen()) < 0.4
    assert torch.equal(terms != 0, kept) and torch.equal(stock != 0, kept)
    torch.testing.assert_close(terms, stock)
    assert 0 < int(kept.sum()) < kept.numel()


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_weight_gradient(backend):
    x, w, b, skip, target, kw = _small()
    cw = torch.rand(3, dtype=F64, requires_grad=True)
    got = torch.autograd.grad(
        fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, class_weight=cw, backend=backend, **kw), cw
    )[0]
    want = torch.autograd.grad(reference.upsample_cross_entropy(x, target, w, b, skip, class_weight=cw, **kw), cw)[0]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("label", [3, -1, 254, 256])
def test_bad_labels_are_value_errors(backend, label):
    x, w, b, skip, target, kw = _small()
    target[1, 4, 7] = label
    with pytest.raises(ValueError, match=str(label)):
        fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, backend=backend, **kw)
    with pytest.raises(ValueError, match=str(label)):
        reference.upsample_cross_entropy(x, target, w, b, skip, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_ignore_index_and_integer_dtypes(backend):
    x, w, b, skip, target, kw = _small()
    target[0, :3] = -100
    for t in (target, target.int()):
        got = fcn_kernels.upsample_cross_entropy(x, t, w, b, skip, ignore_index=-100, backend=backend, **kw)
        want = reference.upsample_cross_entropy(x, target, w, b, skip, ignore_index=-100, **kw)
        torch.testing.assert_close(got, want)
    t8 = target.clamp_min(0).to(torch.uint8)
    t8[0, :3] = 255
    torch.testing.assert_close(
        fcn_kernels.upsample_cross_entropy(x, t8, w, b, skip, backend=backend, **kw),
        reference.upsample_cross_entropy(x, t8, w, b, skip, **kw),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_zero(backend):
    x = torch.randn(0, 4, 5, 5, requires_grad=True)
    w = torch.randn(4, 1, 4, 4, requires_grad=True)
    skip = torch.randn(0, 4, 20, 20, requires_grad=True)
    target = torch.zeros(0, 12, 12, dtype=torch.long)
    for reduction in ("mean", "sum", "none"):
        loss = fcn_kernels.upsample_cross_entropy(
            x, target, w, None, skip, stride=2, groups=4, skip_offset=3, reduction=reduction, backend=backend
        )
        assert loss.shape == ((0, 12, 12) if reduction == "none" else ()) and bool((loss == 0).all())
        gx, gw, gs = torch.autograd.grad(loss.sum(), (x, w, skip), allow_unused=True, materialize_grads=True)
        assert gx.shape == x.shape and gs.shape == skip.shape and bool((gw == 0).all())


# ---------------------------------------------------------------------------------------------------------
# the op's contract: gradcheck, opcheck, torch.compile, determinism, memory, errors
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(seed, backend):
    rng = random.Random(seed)
    for _ in range(1 if tiny(backend) else 3):
        c = tiny_case(rng) if tiny(backend) else random_case(rng, max_batch=1)
        c.N = max(c.N, 1)
        loss = random_loss(rng)
        target = make_target(c.N, c.cout, c.crop, replace(loss, ignore=min(loss.ignore, 0.5)))
        inputs = [t.requires_grad_() if t is not None else None for t in inputs_of(c)]
        cw = torch.rand(c.cout, dtype=F64) if loss.class_weight else None

        def fn(*v, target=target, cw=cw, loss=loss, c=c):
            return fcn_kernels.upsample_cross_entropy(
                v[0], target, *v[1:], class_weight=cw, reduction=loss.reduction, backend=backend, **geometry(c)
            )

        # fast mode on Triton's interpreter: a random projection of the Jacobian, two evaluations an input
        assert torch.autograd.gradcheck(fn, inputs, fast_mode=tiny(backend)), c


def statistics_ops(backend):
    """The backend's upsample_logsumexp and its backward op (the same schemas)."""
    ops = torch.ops.fcn_kernels
    if backend == "triton":
        return ops.upsample_logsumexp_triton.default, ops.upsample_logsumexp_backward_triton.default
    return ops.upsample_logsumexp.default, ops.upsample_logsumexp_backward.default


@pytest.mark.parametrize("backend", backends("cpu", "cuda", pytest.param("triton", marks=NEEDS_GPU)))
@pytest.mark.parametrize("with_bias,with_skip", [(False, False), (True, True)])
def test_opcheck(seed, backend, with_bias, with_skip):
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    w = torch.randn(4, 3, 4, 4, requires_grad=True)  # groups 2: 6 classes
    b = torch.randn(6, requires_grad=True) if with_bias else None
    skip = torch.randn(2, 6, 15, 16, requires_grad=True) if with_skip else None
    target = torch.randint(0, 6, (2, 9, 10))
    target[0, 0] = IGNORE
    forward, backward = statistics_ops(backend)
    args = (x, w, b, skip, target, [2, 2], 2, [1, 2], [3, 2], IGNORE)
    opcheck(forward, args)
    lse = forward(*args)[0].detach()
    ga, gb = torch.randn(2, 9, 10), torch.randn(2, 9, 10)
    plain = [t.detach() if t is not None else None for t in (x, w, b, skip)]
    for mask in ([True, True, with_bias, with_skip], [True, False, False, False]):
        opcheck(
            backward,
            (ga, gb, *plain, target, lse, [2, 2], 2, [1, 2], [3, 2], IGNORE, mask),
        )


@pytest.mark.parametrize("backend", backends("cpu", "cuda", pytest.param("triton", marks=NEEDS_GPU)))
def test_compile_fullgraph(backend):
    x, w, b, skip, target, kw = _small(class_weight=torch.rand(3))
    x, w, b, skip = (t.detach().float().requires_grad_() for t in (x, w, b, skip))
    torch._dynamo.reset()
    compiled = torch.compile(lambda *v: fcn_kernels.upsample_cross_entropy(*v, backend=backend, **kw), fullgraph=True)
    loss = compiled(x, target, w, b, skip)
    eager = fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, backend=backend, **kw)
    torch.testing.assert_close(loss, eager)
    for g, e in zip(torch.autograd.grad(loss, (x, w, b, skip)), torch.autograd.grad(eager, (x, w, b, skip))):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast_casts_like_upsample_skip(backend):
    x, w, b, skip, target, kw = _small()
    x, w, b, skip = (t.detach().float() for t in (x, w, b, skip))
    with torch.autocast(x.device.type, dtype=BF16):
        loss = fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, backend=backend, **kw)
    want = reference.upsample_cross_entropy(
        *(t.to(BF16) for t in (x,)), target, *(t.to(BF16) for t in (w, b, skip)), **kw
    )
    assert loss.dtype == F32
    torch.testing.assert_close(loss, want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backend", backends("cpu", gpu_check("triton")))
def test_deterministic_bits(seed, backend):
    N, H, W = (1, 3, 2) if tiny(backend) else (3, 9, 11)
    c = case(N=N, channels=6, groups=2, H=H, W=W, K=16, stride=8, out_offset=(5, 3), skip_offset=(2, 3), bias=True)
    problem(replace(c, skip_hw=(80, 100)), F32).assert_same_bits(make_target(N, 6, c.crop, Loss()), backend=backend)


@pytest.mark.parametrize("backend", COMPILED)
def test_same_bits_whatever_the_thread_count(seed, backend):
    """docs/DESIGN.md §2.5: the backward's runs of bands, and so its sums, are the geometry's, not the threads'."""
    c = replace(CHANNEL_LAYOUT_BASE, **shape_fields(3, 2, 2, 13, 11, (6, 4)), out_size=None, skip_hw=(45, 30))
    problem(c, F32).assert_same_bits(make_target(c.N, c.cout, c.crop, Loss()), (1, 2, 3), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_saves_only_pixel_maps(backend):
    """No tensor of the scores' size is kept for the backward: the inputs themselves, and (N, Ho, Wo) maps."""
    n, h = (1, 3) if tiny(backend) else (2, 6)
    x = torch.randn(n, 5, h, h + 1, requires_grad=True)
    w = torch.randn(5, 1, 16, 16, requires_grad=True)
    skip = torch.randn(n, 5, 50, 60, requires_grad=True)
    target = torch.randint(0, 5, (n, 8 * h - 8, 8 * h))
    inputs = {t.data_ptr() for t in (x, w, skip, target)}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):
        geometry = dict(stride=8, groups=5, out_offset=(3, 4), skip_offset=(1, 2))
        loss_kw = dict(class_weight=torch.rand(5), sample_p=0.5, backend=backend)
        loss = fcn_kernels.upsample_cross_entropy(x, target, w, None, skip, **geometry, **loss_kw)
    assert saved
    pixels = target.numel()
    for t in saved:
        assert t.data_ptr() in inputs or t.numel() <= pixels, tuple(t.shape)
    loss.backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_argument_errors(backend):
    x, w, b, skip, target, kw = _small()
    call = lambda **over: fcn_kernels.upsample_cross_entropy(  # noqa: E731
        over.pop("x", x), over.pop("target", target), w, b, skip, backend=backend, **{**kw, **over}
    )
    for over, error, words in [
        (dict(target=target.double()), TypeError, "target"),
        (dict(target=target[0]), ValueError, "target"),
        (dict(target=target[:1]), ValueError, "target"),
        (dict(target=torch.zeros(2, 30, 30, dtype=torch.long)), ValueError, "window"),
        (dict(sample_p=0.0), ValueError, "sample_p"),
        (dict(sample_p=1.5), ValueError, "sample_p"),
        (dict(reduction="max"), ValueError, "reduction"),
        (dict(class_weight=torch.ones(4)), ValueError, "class_weight"),
        (dict(ignore_index=1.5), TypeError, "ignore_index"),
        (dict(x=x[0]), ValueError, "x"),
        (dict(stride=0), ValueError, "stride"),
    ]:
        with pytest.raises(error, match=words):
            call(**over)


@pytest.mark.parametrize("backend", COMPILED)
def test_direct_op_calls_are_checked(backend):
    """torch.ops.fcn_kernels.* without the Python checks: errors naming the argument, never a crash."""
    ops = torch.ops.fcn_kernels
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 1, 4, 4)
    target = torch.zeros(1, 5, 5, dtype=torch.long)
    geo = ([2, 2], 2, [0, 0], [0, 0], IGNORE)
    with pytest.raises(ValueError, match="target label 9"):
        ops.upsample_logsumexp(x, w, None, None, target + 9, *geo)
    with pytest.raises(RuntimeError, match="target must be int64"):
        ops.upsample_logsumexp(x, w, None, None, target.int(), *geo)
    with pytest.raises(RuntimeError, match="target must have size"):
        ops.upsample_logsumexp(x, w, None, None, target[0], *geo)
    with pytest.raises(RuntimeError, match="crop window"):
        ops.upsample_logsumexp(x, w, None, None, torch.zeros(1, 9, 9, dtype=torch.long), *geo)
    lse = torch.zeros(1, 5, 5)
    with pytest.raises(RuntimeError, match="grad_lse"):
        ops.upsample_logsumexp_backward(lse[0], lse, x, w, None, None, target, lse, *geo, [True] * 4)
    with pytest.raises(RuntimeError, match="lse must be Float"):
        ops.upsample_logsumexp_backward(lse, lse, x, w, None, None, target, lse.double(), *geo, [True] * 4)


OVERFLOW_SETUP = "x, w, t = torch.randn(1, 1, 3, 3), torch.randn(1, 1, 4, 4), torch.zeros(1, 2, 2, dtype=torch.long)"
OVERFLOW = {
    "target 2**62 wide": ("F.upsample_cross_entropy(x, big_target(1, 1, 2**62), w, stride=2)", ["out_size"]),
    "target 2**62 tall, stride 2**40": (
        "F.upsample_cross_entropy(x, big_target(1, 2**62, 1), w, stride=2**40)",
        ["stride", "out_size"],
    ),
    "out_offset int64 max": (
        f"F.upsample_cross_entropy(x, t, w, stride=2, out_offset=({2**63 - 1}, 0))",
        ["out_offset"],
    ),
    "op target 2**62 wide": (
        "ops.upsample_logsumexp(x, w, None, None, big_target(1, 1, 2**62), [2, 2], 1, [0, 0], [0, 0], 255)",
        ["out_size", "crop"],
    ),
    "op stride int64 max": (
        f"ops.upsample_logsumexp(x, w, None, None, t, [{2**63 - 1}, 1], 1, [0, 0], [0, 0], 255)",
        ["stride"],
    ),
}


@pytest.mark.parametrize("backend", COMPILED)
def test_overflowing_sizes_are_clear_errors(backend):
    """Sizes whose index arithmetic would overflow: an error naming the argument, before any allocation (in a
    child process, so that a crash fails the test instead of ending the run)."""
    assert_clear_errors(OVERFLOW_SETUP, OVERFLOW)


# ---------------------------------------------------------------------------------------------------------
# the automatic choice (docs/DESIGN.md §4.1)
# ---------------------------------------------------------------------------------------------------------
def test_auto_choice_runs_the_chosen_path(monkeypatch):
    monkeypatch.delenv("FCN_KERNELS_BACKEND", raising=False)
    calls = []
    real = reference.upsample_cross_entropy
    monkeypatch.setattr(reference, "upsample_cross_entropy", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    x, w, b, skip, target, kw = _small()
    shape = dict(cin_g=1, cout_g=1, kernel=(4, 4), stride=(2, 2), out_size=(9, 10), weight_grad=True, channels=3)
    expected = backend_rule.choose("upsample_cross_entropy", x.device, **shape)
    fcn_kernels.upsample_cross_entropy(x, target, w, b, skip, **kw)
    assert bool(calls) == (expected == "reference")


@pytest.mark.parametrize(
    "cin_g,cout_g,weight_grad,stock",
    [
        (1, 1, True, False),
        (2, 2, True, False),
        (3, 3, False, False),
        (3, 3, True, True),
        (4, 4, False, True),
        (21, 21, False, True),
        (4, 1, True, False),
        (1, 21, True, False),
    ],
)
def test_rule(cin_g, cout_g, weight_grad, stock):
    """docs/DESIGN.md §4.1: dense groups go to the stock composition, depthwise and narrow groups stay ours."""
    shape = dict(cin_g=cin_g, cout_g=cout_g, kernel=(16, 16), stride=(8, 8), out_size=(8, 8), weight_grad=weight_grad)
    expected = "reference" if stock else ("cpu" if "cpu" in fcn_kernels.available_backends() else "reference")
    assert backend_rule.choose("upsample_cross_entropy", torch.device("cpu"), **shape) == expected
    assert backend_rule.explain("upsample_cross_entropy", torch.device("cpu"), **shape).startswith(expected)


def test_cuda_tensors_take_our_kernels_where_built():
    """CUDA tensors take the CUDA kernels where built, else the Triton ones where triton imports, else stock."""
    built = [b for b in ("cuda", "triton") if backend_rule._built(b, "upsample_cross_entropy")]
    assert backend_rule.choose("upsample_cross_entropy", torch.device("cuda")) == (built + ["reference"])[0]
    assert backend_rule._built("triton", "upsample_cross_entropy") == backend_rule._triton_importable()


# ---------------------------------------------------------------------------------------------------------
# properties (hypothesis; profiles in conftest.py)
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", COMPILED)
@given(
    c=upsample_cases(small=True), loss=losses(), dtype=st.sampled_from([F64, F32, BF16]), seed=st.integers(0, 2**31 - 1)
)
def test_property_equals_the_composition(backend, c, loss, dtype, seed):
    torch.manual_seed(seed)
    note(f"{c} {loss} {dtype}")
    check(c, loss, dtype, backend=backend, seed=seed)


def test_bound_catches_a_wrong_loss(seed):
    """The derived bounds fail a loss (and so its gradient) off by a relative 1e-4: they test something."""
    c = FCN8S_STAGES["upscore8"]
    for loss in (Loss(), Loss(reduction="none")):
        p = problem(c, F32)
        wrong = lambda v, t, **o: p.fused(v, t, **o) * (1 + 1e-4)  # noqa: E731
        with pytest.raises(AssertionError, match="exceeds the bound"):
            check_loss(p, make_target(c.N, c.cout, c.crop, loss), loss, F32, fused=wrong)
