"""fcn_kernels.rarefied_conv2d on every backend (cpu; cuda; triton) against fcn_kernels.reference.rarefied_conv2d
(F.conv2d with dilation) in float64, forward and backward, at derived error bounds in lower precisions.

Fresh random inputs every run (conftest's `seed`; replay one with FCN_TEST_SEED=...). On the cpu backend
both kernel paths (GEMM over the wide layout, direct row loops) are forced in turn through
FCN_KERNELS_RAREFIED_CONV_PATH (`path`: direct, gemm, auto), so every case covers both. Triton gets the tiny
variants (`tiny`): under TRITON_INTERPRET=1 its kernels run in Python; its own launch paths: tests/triton/.
"""

import random

import pytest
import torch
import torch.nn.functional as F
from _pytest.mark.structures import ParameterSet
from torch import nn

import fcn_kernels
from _helpers.backends import NEEDS_GPU, backends, device_of, gpu_check, grid, tiny
from _helpers.op_calls import op_names
from _helpers.opcheck import opcheck
from _helpers.rarefied_cases import SMALL, assert_within_bounds, case, check_against_reference, extent, random_case, run
from _helpers.suites import case_tests, cuda_kernel_tests, opcheck_grid, triton_case_pairs
from _helpers.upsample_cases import LAYOUTS
from fcn_kernels import RarefiedConv2d, rarefied_conv2d, rarefy_filter, reference

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16
DTYPES = [F64, F32, BF16, F16]
PATHS = ["direct", "gemm", "auto"]


@pytest.fixture(autouse=True)
def _cpu_path(request, monkeypatch):
    """The cpu backend's kernel path, where a test takes `path` (None: not the cpu backend)."""
    path = getattr(request.node, "callspec", None) and request.node.callspec.params.get("path")
    if path == "auto":
        monkeypatch.delenv("FCN_KERNELS_RAREFIED_CONV_PATH", raising=False)
    elif path:
        monkeypatch.setenv("FCN_KERNELS_RAREFIED_CONV_PATH", path)


def _with_path(path, values):
    out = [
        pytest.param(path, *v.values, marks=v.marks)
        if isinstance(v, ParameterSet)
        else (path, *v)
        if isinstance(v, tuple)
        else (path, v)
        for v in values
    ]
    return out or [(path,)]


def on_paths(*values):
    """The cpu backend's values (none: only `path`), once per kernel path."""
    return [p for path in PATHS for p in _with_path(path, values)]


def no_path(*values):
    """Another backend's values (none: only `path`, None)."""
    return _with_path(None, values)


TRITON_CASES = triton_case_pairs(
    SMALL, ("depthwise", "multiplier", "dense-fma"), ("depthwise", "dense-fma", "dense-dot")
)
GPU_CHECK_CASES = {("depthwise", F32), ("dense-dot", F32), ("dense-fma", F64), ("dense-dot", BF16), ("multiplier", F16)}


test_cases = case_tests(check_against_reference, SMALL, DTYPES, TRITON_CASES, GPU_CHECK_CASES)


# cases per (backend, dtype): cpu float64 most (on each path), cuda every dtype, Triton a few in float32
RANDOM = {"cpu": {F64: 25, F32: 4, BF16: 4, F16: 4}, "cuda": dict.fromkeys(DTYPES, 20), "triton": {F32: 2}}


@pytest.mark.parametrize(
    "backend, path, dtype, batch",
    grid(
        cpu=on_paths(*[(d, 0) for d in DTYPES]),
        cuda=no_path(*[gpu_check(d, 0) if d == F32 else (d, 0) for d in DTYPES]),
        triton=no_path(*[(F32, b) for b in range(3)]),
    ),
)
def test_random_cases(seed, backend, path, dtype, batch):
    rng = random.Random(seed + batch)
    done = 0
    while done < RANDOM[backend][dtype]:
        problem = random_case(rng, small=True, max_batch=1) if tiny(backend) else random_case(rng)
        if min(problem.out) >= 1:  # the small draws may not fit
            check_against_reference(problem, backend, dtype)
            done += 1


@pytest.mark.parametrize(
    "backend, path, k", grid(cpu=on_paths(1, 3, 5, 7), cuda=no_path(1, 3, 5, 7), triton=no_path(((3, 2),)))
)
def test_every_kernel_size_and_rarefaction(seed, backend, path, k):
    """Rarefaction 1..8. Triton: rows and columns differing, padding 0..r, depthwise and dense FMA, small maps."""
    rng = random.Random(seed)
    for r in range(1, 9):
        if tiny(backend):
            rw, dw = rng.randint(1, 8), r % 2 == 1
            (H, ph), (W, pw) = extent(rng, k[0], r), extent(rng, k[1], rw)
            problem = case(1, 2, 2 if dw else 3, 2 if dw else 1, H, W, k, (r, rw), (ph, pw), rng.random() < 0.5)
        else:
            problem = random_case(rng, k=k, r=r)
        check_against_reference(problem, backend, F64)


@pytest.mark.parametrize("backend, path, multiplier", grid(cpu=on_paths(1, 2), cuda=no_path(1, 2)))
def test_depthwise(seed, backend, path, multiplier):
    rng = random.Random(seed)
    for r in (1, 2, 5, 8):
        c = rng.choice([1, 3, 21])
        check_against_reference(
            case(2, c, c * multiplier, c, 17 + 2 * r, 19 + 2 * r, 3, r, rng.randint(0, r), True), backend, F64
        )


@pytest.mark.parametrize("backend, path", grid(cpu=on_paths(), cuda=no_path()))
def test_grouped_wide_channels(seed, backend, path):
    # Large enough groups that the automatic choice takes the GEMM path.
    check_against_reference(case(2, 32, 16, 2, 13, 15, 3, (2, 3), (2, 3), True), backend, F64)


@pytest.mark.parametrize("backend, path", grid(cpu=on_paths(), cuda=no_path(gpu_check()), triton=no_path(gpu_check())))
def test_batch_zero(seed, backend, path):
    device = device_of(backend)
    for cin, cout, groups, dtype in ((4, 8, 1, F64), (3, 3, 3, F32), (4, 6, 2, F32)):
        x = torch.randn(0, cin, 9, 9, dtype=dtype, device=device, requires_grad=True)
        w = torch.randn(cout, cin // groups, 3, 3, dtype=dtype, device=device, requires_grad=True)
        b = torch.randn(cout, dtype=dtype, device=device, requires_grad=True)
        y = rarefied_conv2d(x, w, b, rarefaction=2, padding=1, groups=groups, backend=backend)
        assert y.shape == (0, cout, 7, 7)
        gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b))
        assert gx.shape == x.shape, f"seed={seed}"
        assert torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.zeros_like(b)), f"seed={seed}"


def _rows_strided(t):
    """Every other row of a wider tensor, one column in: a view that is not contiguous in any layout."""
    if t.dim() != 4:
        return t
    big = torch.zeros(*t.shape[:2], 2 * t.shape[2], t.shape[3] + 3, dtype=t.dtype, device=t.device)
    big[:, :, ::2, 1 : t.shape[3] + 1] = t
    return big[:, :, ::2, 1 : t.shape[3] + 1]


# Layouts of (x, weight, bias, grad_out): each of LAYOUTS for all, and a mix (x a strided slice, a channels_last
# weight, a transposed grad_out).
NON_CONTIGUOUS = {
    **{name: (f,) * 4 for name, f in LAYOUTS.items()},
    "mixed": (_rows_strided, LAYOUTS["channels_last"], lambda t: t, LAYOUTS["transposed"]),
}


@pytest.mark.parametrize(
    "backend, path, layout",
    grid(cpu=on_paths(*NON_CONTIGUOUS), cuda=no_path(*NON_CONTIGUOUS), triton=no_path("channels_last", "transposed")),
)
def test_non_contiguous_inputs(seed, backend, path, layout):
    rng = random.Random(seed)
    if tiny(backend):  # the FMA path in channels_last, depthwise in column-major planes
        problems = [SMALL["dense-fma" if layout == "channels_last" else "depthwise"]]
    else:
        problems = [random_case(rng, n=2) for _ in range(4)]
    for problem in problems:
        check_against_reference(problem, backend, F32 if tiny(backend) else F64, transform=NON_CONTIGUOUS[layout])


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_matches_explicit_rarefied_filter(seed, backend):
    # The paper's reading: a stride-1 conv with f' (zeros inserted) is the same convolution.
    x = torch.randn(2, 6, 20, 18, dtype=F64)
    weight = torch.randn(4, 3, 3, 2, dtype=F64)
    d = device_of(backend)
    y = rarefied_conv2d(x.to(d), weight.to(d), rarefaction=(3, 4), padding=(1, 2), groups=2, backend=backend).cpu()
    y_explicit = F.conv2d(x, rarefy_filter(weight, (3, 4)), padding=(1, 2), groups=2)
    assert rarefy_filter(weight, (3, 4)).shape == (4, 3, 7, 5)
    torch.testing.assert_close(y, y_explicit, atol=1e-10, rtol=1e-10, msg=lambda m: f"seed={seed}: {m}")


def _grad_problem(backend, batch, width):
    """A grouped, rarefied, padded float64 problem on `backend`: fn(x, weight, bias) and its leaves."""
    d = device_of(backend)
    x = torch.randn(batch, 4, 7, width, dtype=F64, device=d, requires_grad=True)
    weight = torch.randn(6, 2, 3, 2, dtype=F64, device=d, requires_grad=True)
    bias = torch.randn(6, dtype=F64, device=d, requires_grad=True)

    def fn(a, b, c):
        return rarefied_conv2d(a, b, c, rarefaction=(2, 3), padding=(1, 2), groups=2, backend=backend)

    return fn, (x, weight, bias)


@pytest.mark.parametrize("backend, path", grid(cpu=[("direct",), ("gemm",)], cuda=no_path()))
def test_gradcheck(seed, backend, path):
    assert torch.autograd.gradcheck(*_grad_problem(backend, 2, 8), fast_mode=True), f"seed={seed}"


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_gradgradcheck(seed, backend):
    """Double backward goes through the explicit backward ops, which have autograd of their own."""
    assert torch.autograd.gradgradcheck(*_grad_problem(backend, 1, 6)), f"seed={seed}"


@pytest.mark.parametrize("backend", backends())
def test_double_backward(seed, backend):
    """Gradients of the gradients (the backward ops' registered autograd) against the reference's."""
    c = SMALL["multiplier"]
    x, w, b = c.inputs(F64)
    go = torch.randn(c.N, c.cout, *c.out, dtype=F64)
    results = []
    for fn, extra, d in (
        (rarefied_conv2d, dict(backend=backend), device_of(backend)),
        (reference.rarefied_conv2d, {}, "cpu"),
    ):
        xl, wl = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fn(xl.to(d), wl.to(d), b.to(d), **c.kwargs(), **extra)
        gx, gw = torch.autograd.grad(y, (xl, wl), go.to(d), create_graph=True)
        results.append([g.cpu() for g in torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), (xl, wl))])
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=lambda m: f"seed={seed}: {m}")


# The same bits every run: forward and every gradient. cpu: a dense problem on each path; cuda: FCN's
# depthwise scores at a realistic map; Triton: its dense tl.dot and depthwise paths.
DETERMINISM = {
    "cpu": [case(2, 16, 24, 1, 23, 21, 3, (2, 3), (2, 1), True)],
    "cuda": [case(2, 21, 21, 21, 33, 35, 3, 2, 2, False)],
    "triton": [SMALL["dense-dot"], SMALL["depthwise"]],
}


@pytest.mark.parametrize(
    "backend, path, dtype", grid(cpu=on_paths(F32, F64, BF16), cuda=no_path(F32), triton=no_path(F32))
)
def test_deterministic(seed, backend, path, dtype):
    for problem in DETERMINISM[backend]:
        inputs = [t.to(device_of(backend)) if t is not None else None for t in problem.inputs(dtype)]
        go = torch.randn(problem.N, problem.cout, *problem.out, dtype=dtype, device=device_of(backend))
        first = run(rarefied_conv2d, inputs, go, backend=backend, **problem.kwargs())
        for _ in range(1 if tiny(backend) else 2):
            again = run(rarefied_conv2d, inputs, go, backend=backend, **problem.kwargs())
            assert torch.equal(first[0], again[0]), f"forward not bitwise reproducible (seed={seed}, {problem})"
            for a, b in zip(first[1], again[1]):
                assert a is None or torch.equal(a, b), f"gradient not bitwise reproducible (seed={seed}, {problem})"


@pytest.mark.parametrize("backend", backends())
def test_weight_without_grad_skips_weight_gradient(seed, backend):
    """A weight that does not require grad (FCN's frozen layers): no weight-gradient op runs (each backend's
    is named rarefied_conv2d_backward_weight[_triton], fcn_kernels/ops/_autograd.py)."""
    d = device_of(backend)
    x = torch.randn(1, 3, 10, 10, dtype=F64, device=d, requires_grad=True)
    weight = torch.randn(5, 3, 3, 3, dtype=F64, device=d)
    for trainable in (False, True):
        weight.requires_grad_(trainable)
        seen = op_names(lambda: rarefied_conv2d(x, weight, rarefaction=2, padding=2, backend=backend).sum().backward())
        assert any("rarefied_conv2d_backward_input" in s for s in seen), seen
        assert any("rarefied_conv2d_backward_weight" in s for s in seen) == trainable, seen
        assert (weight.grad is not None) == trainable


# opcheck problems: the grouped float64 problem of the CPU kernels, and Triton's depthwise, FMA and tl.dot ones
OPCHECK = {
    "grouped": (case(2, 4, 6, 2, 9, 8, (3, 2), (2, 3), (1, 2), True), F64),
    **{n: (SMALL[n], F32) for n in ("depthwise", "dense-fma", "dense-dot")},
}


@pytest.mark.parametrize(
    "backend, name", opcheck_grid(OPCHECK, ("grouped",), ("depthwise", "dense-dot", "dense-fma"), ("dense-dot",))
)
def test_opcheck(seed, backend, name):
    """The forward op (with and without gradients and bias) and its backward pair."""
    problem, dtype = OPCHECK[name]
    suffix = "_triton" if backend == "triton" else ""
    ops = torch.ops.fcn_kernels
    x, weight, bias = [t.to(device_of(backend)) for t in problem.inputs(dtype)]
    r, p, g = list(problem.rarefaction), list(problem.padding), problem.groups
    forward = getattr(ops, f"rarefied_conv2d{suffix}").default
    go = torch.randn_like(forward(x, weight, bias, r, p, g))
    opcheck(
        forward, (x.clone().requires_grad_(), weight.clone().requires_grad_(), bias.clone().requires_grad_(), r, p, g)
    )
    opcheck(forward, (x, weight, None, r, p, g))
    opcheck(getattr(ops, f"rarefied_conv2d_backward_input{suffix}").default, (go, weight, list(x.shape), r, p, g))
    opcheck(getattr(ops, f"rarefied_conv2d_backward_weight{suffix}").default, (go, x, list(weight.shape), r, p, g))


@pytest.mark.parametrize("backend", backends("cpu", "cuda", pytest.param("triton", marks=NEEDS_GPU)))
def test_module_compile_fullgraph(seed, backend):
    """Two RarefiedConv2d layers under torch.compile(fullgraph=True) (aot_eager on CPU, Inductor on a GPU), forward
    and backward, against the same modules eager."""
    d = device_of(backend)
    torch._dynamo.reset()
    m = nn.Sequential(
        RarefiedConv2d(3, 8, 3, rarefaction=2, padding=2, backend=backend),
        nn.ReLU(),
        RarefiedConv2d(8, 4, 3, rarefaction=(2, 4), padding=(2, 4), groups=4, backend=backend),
    ).to(device=d, dtype=F64)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager" if backend == "cpu" else "inductor")
    x = torch.randn(2, 3, 14, 15, dtype=F64, device=d, requires_grad=True)
    y = compiled(x)
    y.square().sum().backward()
    gx = x.grad.clone()
    x.grad = None
    y_eager = m(x)
    y_eager.square().sum().backward()
    torch.testing.assert_close(y, y_eager, msg=lambda msg: f"seed={seed}: {msg}")
    torch.testing.assert_close(gx, x.grad, msg=lambda msg: f"seed={seed}: {msg}")


@pytest.mark.parametrize(
    "backend, name",
    grid(
        cpu=["depthwise", "dense-dot"],
        cuda=["depthwise", "dense-dot"],
        triton=[pytest.param(n, marks=NEEDS_GPU) for n in ("depthwise", "dense-dot")],
    ),
)
def test_compile_fullgraph_against_reference(seed, backend, name):
    """The op alone under torch.compile (Inductor on a GPU: Triton's kernels inside its graph), float32, forward and
    every gradient against float64 on CPU."""
    problem = SMALL[name]
    d = device_of(backend)
    x, w, b = [t.to(d) for t in problem.inputs(F32)]
    go = torch.randn(problem.N, problem.cout, *problem.out, device=d)
    torch._dynamo.reset()
    fn = torch.compile(
        lambda x, w, b: rarefied_conv2d(x, w, b, backend=backend, **problem.kwargs()),
        fullgraph=True,
        backend="aot_eager" if backend == "cpu" else "inductor",
    )
    y, grads = run(fn, (x, w, b), go)
    assert_within_bounds(problem, (x, w, b), go, y, grads, F32, f"compiled {backend}")


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_autocast_casts_like_a_convolution(seed, backend):
    d = device_of(backend)
    x, w = torch.randn(2, 4, 6, 6, device=d), torch.randn(8, 4, 3, 3, device=d)
    with torch.autocast(d, dtype=BF16):
        y = rarefied_conv2d(x, w, rarefaction=2, padding=2, backend=backend)
        y_ref = reference.rarefied_conv2d(x, w, rarefaction=2, padding=2)
    assert y.dtype == BF16 and y_ref.dtype == BF16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)


# ---- CUDA kernels only ----------------------------------------------------------------------------------------

# Odd and 16-byte-multiple widths, channels past one slab, a filter past the tile, and more planes than one grid
# dimension takes (65535: the grid-stride loop), reached through the batch (a float64 reference over as many
# groups is slow).
PATH_CASES = {
    "depthwise_even": case(2, 21, 21, 21, 64, 64, 3, 2, 2),
    "depthwise_odd": case(1, 21, 21, 21, 63, 61, 3, 4, 4),
    "dense_two_slabs": case(1, 512, 8, 1, 12, 13, 3, 2, 2),
    "untiled_filter": case(1, 2, 2, 2, 1, 9000, (1, 8500), 1, 0),
    "many_planes": case(66000, 1, 1, 1, 2, 3, (1, 2), 1, 0),
}
# depthwise_odd down both index paths, many_planes and dense_two_slabs down the 32-bit one
GPU_CHECK_PATHS = {("depthwise_odd", F32, "int64")} | {
    (name, dtype, "int32") for name, dtype in (("depthwise_odd", F32), ("many_planes", F32), ("dense_two_slabs", BF16))
}


# the random problems on which test_cuda_matches_triton compares the two GPU backends
RANDOM_PROBLEMS = (
    random_case,
    lambda c, dtype: c.inputs(dtype),
    lambda c: c.out,
    run,
    rarefied_conv2d,
)
cuda_tests = cuda_kernel_tests(PATH_CASES, GPU_CHECK_PATHS, check_against_reference, *RANDOM_PROBLEMS)
test_cuda_kernel_paths, test_cuda_matches_triton = cuda_tests


# ---- the cpu backend's choice, bad input ----------------------------------------------------------------------


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was not built")
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
        (
            (x, torch.randn(6, 4, 3, 3)),
            dict(rarefaction=5),
            ValueError,
            r"rarefied kernel \(11, 11\).*padded input \(10, 10\)",
        ),
        ((x, w), dict(rarefaction=5, padding=0), ValueError, "larger than the padded input"),
        ((x, torch.randn(6, 3, 3, 3)), {}, ValueError, r"weight.shape\[1\] \(3\) \* groups \(1\).*\(4\)"),
        ((x, torch.randn(6, 2, 3, 3)), dict(groups=3), ValueError, r"channels \(4\).*groups \(3\)"),
        (
            (x, torch.randn(5, 2, 3, 3)),
            dict(groups=2),
            ValueError,
            r"weight.shape\[0\] \(out channels, 5\).*groups \(2\)",
        ),
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


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was not built")
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
        (
            lambda: op.rarefied_conv2d_backward_input(torch.randn(1, 6, 7, 7), w, [1, 4, 10, 10], [1, 1], [0, 0], 1),
            "does not match the output",
        ),
        (
            lambda: op.rarefied_conv2d_backward_weight(
                torch.randn(1, 6, 8, 8), x.double(), [6, 4, 3, 3], [1, 1], [0, 0], 1
            ),
            "dtype",
        ),
        (
            lambda: op.rarefied_conv2d_backward_weight(torch.randn(1, 6, 8, 8), x, [6, 4, 3, 3], [5, 5], [0, 0], 1),
            "larger than the padded input",
        ),
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
