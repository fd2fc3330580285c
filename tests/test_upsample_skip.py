"""fcn_kernels.upsample_skip on every backend (cpu; cuda; triton) against fcn_kernels.reference in float64
(docs/DESIGN.md §2), forward and backward, at derived error bounds in lower precisions.

Fresh random inputs every run (conftest's `seed`; replay one with FCN_TEST_SEED=...). Each test takes a
`backend` (tests/_helpers/backends.py); Triton gets the tiny variants (`tiny`): under TRITON_INTERPRET=1 its
kernels run in Python. Bad input: test_upsample_skip_errors.py; Triton's own launch paths: tests/triton/.
"""

import random
from dataclasses import replace

import pytest
import torch

import fcn_kernels
from _helpers.backends import NEEDS_GPU, backends, device_of, gpu_check, grid, tiny
from _helpers.op_calls import op_names
from _helpers.opcheck import opcheck
from _helpers.suites import case_tests, cuda_kernel_tests, opcheck_grid, triton_case_pairs
from _helpers.threads import per_thread_count
from _helpers.upsample_cases import (
    FCN8S_STAGES,
    FCN_LAST_STAGES,
    LAYOUTS,
    SMALL,
    assert_matches_reference,
    case,
    check_against_reference,
    make_inputs,
    outer_product_weight,
    random_case,
    run,
    shape_fields,
)
from fcn_kernels import reference

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16
DTYPES = [F64, F32, BF16, F16]
# A skip at the CPU register blocks' wider strides, windows starting and ending inside blocks: their whole-block
# skip loads and stores of 16 and 32 floats, converted from and to float16 and bfloat16 (csrc/cpu/upsample_rows.h).
WIDE_SKIPS = {
    f"stride{s}-skip": case(
        channels=3,
        groups=3,
        H=3,
        W=7,
        K=2 * s,
        stride=s,
        out_offset=(5, s // 2 + 3),
        out_size=(2 * s + 1, 5 * s - 7),
        skip_offset=(1, 2),
        skip_hw=(2 * s + 3, 5 * s - 4),
        bias=True,
    )
    for s in (16, 32)
}
CASES = {**SMALL, **{f"fcn8s-{name}": c for name, c in FCN8S_STAGES.items()}, **FCN_LAST_STAGES, **WIDE_SKIPS}
TRITON_CASES = triton_case_pairs(
    SMALL, ("upscore2+pool4-dw", "dense-fma"), ("upscore2+pool4-dw", "dense-fma", "dense-dot")
)
GPU_CHECK_CASES = {
    ("upscore2+pool4-dw", F32),
    ("dense-dot", F32),
    ("dense-fma", F64),
    ("dense-dot", BF16),
    ("upscore8-dw", F16),
}


test_cases = case_tests(check_against_reference, CASES, DTYPES, TRITON_CASES, GPU_CHECK_CASES)


# cases per (backend, dtype) and batches of them: cpu float64 most, cuda every dtype, Triton a few in float32
RANDOM = {"cpu": {F64: 25, F32: 10, BF16: 10, F16: 10}, "cuda": dict.fromkeys(DTYPES, 20), "triton": {F32: 2}}


@pytest.mark.parametrize(
    "backend, dtype, batch",
    grid(
        cpu=[(F64, b) for b in range(6)] + [(d, 0) for d in (F32, BF16, F16)],
        cuda=[gpu_check(d, b) if b == 0 and d in (F32, BF16) else (d, b) for d in DTYPES for b in range(3)],
        triton=[(F32, b) for b in range(3)],
    ),
)
def test_random_cases(seed, backend, dtype, batch):
    rng = random.Random(seed + batch)
    for _ in range(RANDOM[backend][dtype]):
        check_against_reference(random_case(rng, max_batch=1 if tiny(backend) else 2), backend, dtype)


@pytest.mark.parametrize("backend", backends("cpu", "cuda", gpu_check("triton")))
def test_random_dot_cases(seed, backend):
    """Random geometries with >= 16 channels per group each way: Triton's tl.dot kernels."""
    rng = random.Random(seed)
    for _ in range(1 if tiny(backend) else 5):
        check_against_reference(random_case(rng, max_batch=1, per_group=(16, 17)), backend, F32)


@pytest.mark.parametrize("backend, stride", grid(cpu=range(1, 9), cuda=range(1, 9), triton=[1, 3, 8]))
def test_windows_at_both_edges(seed, backend, stride):
    """Crop windows from the start, touching the end, one row at the end, and empty; skip windows alike.
    Triton: one kernel size, the two inner windows, smaller maps."""
    rng = random.Random(seed)
    small = tiny(backend)
    for K in [2 * stride + (stride > 1)] if small else sorted({1, stride, 2 * stride, 2 * stride + 1}):
        H, W = rng.randint(1, 3 if small else 5), rng.randint(1, 3 if small else 5)
        Hf, Wf = (H - 1) * stride + K, (W - 1) * stride + K
        windows = ((Hf - 1, 1), (1, Hf - 2)) if small else ((0, Hf), (Hf - 1, 1), (1, Hf - 2), (0, 0))
        for oy, ho in windows:
            if ho < 0:
                continue
            ox = rng.randint(0, Wf - 1)
            wo = Wf - ox
            c = 2 if small else 3
            window = dict(out_offset=(oy, ox), out_size=(ho, wo), skip_offset=(1, 2), skip_hw=(ho + 1, wo + 2))
            problem = case(N=1 if small else 2, **shape_fields(c, 1, 1, H, W, K), stride=stride, bias=True, **window)
            check_against_reference(problem, backend, F32 if small else F64)


@pytest.mark.parametrize("backend, layout", grid(cpu=LAYOUTS, cuda=LAYOUTS, triton=["channels_last"]))
def test_non_contiguous_inputs(seed, backend, layout):
    rng = random.Random(seed)
    problems = [SMALL["dense-fma"]] if tiny(backend) else [random_case(rng) for _ in range(8)]
    for problem in problems:
        check_against_reference(problem, backend, F32 if tiny(backend) else F64, transform=LAYOUTS[layout])


@pytest.mark.parametrize("backend", backends("cpu", gpu_check("cuda"), gpu_check("triton")))
def test_batch_zero_and_empty_window(backend):
    device = device_of(backend)
    leaf = lambda *shape: torch.randn(*shape, device=device, requires_grad=True)  # noqa: E731
    x, w, skip = leaf(0, 4, 5, 5), leaf(4, 1, 4, 4), leaf(0, 4, 20, 20)
    y = fcn_kernels.upsample_skip(x, w, None, skip, stride=2, groups=4, skip_offset=3, backend=backend)
    assert y.shape == (0, 4, 12, 12)
    y.sum().backward()
    assert x.grad.shape == x.shape and skip.grad.shape == skip.shape
    assert torch.equal(w.grad, torch.zeros_like(w))
    x, w = leaf(0, 3, 4, 4), leaf(3, 1, 4, 4)  # no skip
    y = fcn_kernels.upsample_skip(x, w, stride=2, groups=3, backend=backend)
    assert y.shape == (0, 3, 10, 10)
    gx, gw = torch.autograd.grad(y.sum(), (x, w))
    assert gx.shape == x.shape and torch.all(gw == 0)
    x = leaf(1, 3, 4, 4)  # an empty crop window
    y = fcn_kernels.upsample_skip(x, w, stride=2, groups=3, out_offset=(3, 0), out_size=(0, 5), backend=backend)
    assert y.shape == (1, 3, 0, 5)
    gx, gw = torch.autograd.grad(y.sum(), (x, w))
    assert torch.all(gx == 0) and torch.all(gw == 0)


def _check_random_cases(seed, backend, check, count):
    """check(fn, inputs, fast_mode=...) (gradcheck or gradgradcheck) on `count` random float64 cases, batch at
    least 1; fast_mode (random projections of the Jacobians, not every entry) where the draw is large: a
    tl.dot-wide one has ~10**5 weight entries, which the entry-by-entry check takes many minutes over."""
    rng = random.Random(seed)
    for _ in range(count):
        problem = random_case(rng, max_batch=1)
        problem.N = max(problem.N, 1)
        inputs = [t.to(device_of(backend)).requires_grad_() if t is not None else None for t in make_inputs(problem)]
        fast = sum(t.numel() for t in inputs if t is not None) > 2000
        assert check(
            lambda *a: fcn_kernels.upsample_skip(*a, backend=backend, **problem.kwargs()), inputs, fast_mode=fast
        ), problem


# Filters that are exact outer products (FCN's fixed bilinear upsampling; random ones of few bits): the CPU
# forward's separable form (csrc/cpu/upsample_rows.h) at the strides whose register blocks take it (8, 16 and
# 32; 4 too in float64), and the direct form elsewhere; windows at both edges, bias and skip.
SEPARABLE = {
    **{name: c for name, c in FCN8S_STAGES.items() if c.groups == c.cin},
    **FCN_LAST_STAGES,
    "upscore8-edges": case(N=2, channels=2, groups=2, H=4, W=5, K=16, stride=8, out_offset=(0, 7), out_size=(40, 41)),
    "stride4-bias-skip": case(
        N=2,
        channels=3,
        groups=3,
        H=5,
        W=9,
        K=8,
        stride=4,
        out_offset=(2, 5),
        out_size=(17, 30),
        skip_offset=(1, 2),
        skip_hw=(20, 34),
        bias=True,
    ),
}


@pytest.mark.parametrize("kind", ["bilinear", "random"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_outer_product_filters(seed, backend, dtype, kind):
    for c in SEPARABLE.values():
        check_against_reference(c, backend, dtype, weight=outer_product_weight(c, dtype, kind))


@pytest.mark.parametrize("dtype", [F64, F32])
def test_separable_form_only_for_exact_outer_products(seed, dtype):
    """The CPU forward groups an outer product's terms otherwise (other roundings), and only where every filter
    is one to the bit: bilinear filters, and the same with one element one ulp off, on a window of output rows
    none of whose terms meet that element (stride 8: rows of phase 1 to 6 never meet kernel row 0), give
    different bits, both within the reference's bound; and finite inputs only (non-finite: the direct form,
    the same NaN and Inf as the stock composition)."""
    c = case(N=2, channels=3, groups=3, H=6, W=9, K=16, stride=8, out_offset=(9, 5), out_size=(6, 60))
    w = outer_product_weight(c, dtype, "bilinear")
    off = w.clone()
    off[0, 0, 0, 0] = torch.nextafter(off[0, 0, 0, 0], torch.tensor(1.0, dtype=dtype))
    x = torch.randn(c.N, c.cin, c.H, c.W, dtype=dtype)
    separable = fcn_kernels.upsample_skip(x, w, backend="cpu", **c.kwargs())
    direct = fcn_kernels.upsample_skip(x, off, backend="cpu", **c.kwargs())
    assert not torch.equal(separable, direct), f"seed={seed}: the same bits, so the same form"
    for weight, y in ((w, separable), (off, direct)):
        assert_matches_reference(c, (x, weight, None, None), None, y, what=f"seed={seed}")
    inf_x = x.clone()
    inf_x[1, 2, 1, 4], inf_x[0, 1, 0, 2] = float("inf"), float("nan")  # input rows 0 and 1 reach the window
    got = fcn_kernels.upsample_skip(inf_x, w, backend="cpu", **c.kwargs())
    want = reference.upsample_skip(inf_x, w, **c.kwargs())
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf()), f"seed={seed}"
    assert got.isinf().any() and got.isnan().any()


@pytest.mark.parametrize("dtype", [F32, F64])
def test_separable_form_keeps_finite_scores_finite(dtype):
    """Inputs near the largest value and filters whose rows reach 4 input rows (stride 8, kernel (32, 8)): the
    separable form's combined rows (sum of 4 terms a * x, a = 3/8) would overflow where every score (sum of 4
    terms a * b * x, a * b = 9/64) is finite, so the forward keeps the direct form: finite, as the reference."""
    c = case(channels=1, H=6, W=5, K=(32, 8), stride=8, out_offset=(20, 3), out_size=(17, 30))
    a = torch.zeros(32, dtype=dtype)
    a[::8] = 3 / 8  # one row phase: each output row of it meets 4 nonzero rows
    b = torch.zeros(8, dtype=dtype)
    b[2] = 3 / 8
    w = (a[:, None] * b[None, :]).reshape(1, 1, 32, 8)  # sum |w| = 9/16: the scores' bound 0.495 of the largest
    x = torch.full((1, 1, 6, 5), 0.88 * torch.finfo(dtype).max, dtype=dtype)
    got = fcn_kernels.upsample_skip(x, w, backend="cpu", **c.kwargs())
    want = reference.upsample_skip(x, w, **c.kwargs())
    assert want.isfinite().all() and want.abs().max() > 0.3 * torch.finfo(dtype).max
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", ["bilinear", "random"])
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_separable_rows_at_every_alignment(seed, stride, kind, dtype):
    """The CPU forward writes the float rows of the separable form with 2 tap blocks (FCN's upscore8 and
    upscore16) in stores at 64-byte boundaries where AVX-512 is compiled in, masked at both ends; other strides
    and float64 go through register blocks whose combined rows are padded with zeros (the blocks at a row's ends
    read them instead of leaving their terms out), blocks wider than a register stored a register at a time,
    masked where the crop cuts them. Output rows starting at every float offset from a boundary (an odd width:
    consecutive rows start 1 float apart mod 16) and crops starting at every phase of the stride and at both
    edges of the full output: the reference's values, and each column the same bits wherever its row lands
    (widths Wo and Wo + 1 start rows elsewhere)."""
    rng = random.Random(seed)
    for ox in sorted({0, 1, stride - 1, stride, 2 * stride - 1, *rng.sample(range(2 * stride), 3)}):
        skip = rng.random() < 0.5
        base = case(N=2, channels=3, groups=3, H=4, W=rng.randint(3, 9), K=2 * stride, stride=stride, bias=True)
        wide = base.full[1] - ox - 1  # room for Wo + 1 columns
        for wo in sorted({v for v in (1, 2, 15, 16, 17, rng.randint(1, wide)) if v <= wide} | {wide}):
            c = replace(
                base,
                out_offset=(rng.randint(0, stride), ox),
                out_size=(9, wo),
                skip_hw=(11, wo + 3) if skip else None,
                skip_offset=(1, 2) if skip else (0, 0),
            )
            x, _, b, s = make_inputs(c, dtype)
            w = outer_product_weight(c, dtype, kind)
            y = fcn_kernels.upsample_skip(x, w, b, s, backend="cpu", **c.kwargs())
            assert_matches_reference(c, (x, w, b, s), None, y, what=f"seed={seed} ox={ox} Wo={wo}")
            c1 = replace(c, out_size=(9, wo + 1), skip_hw=(11, wo + 4) if skip else None)
            s1 = torch.cat([s, torch.randn(c.N, c.cout, 11, 1, dtype=dtype)], dim=3) if skip else None
            y1 = fcn_kernels.upsample_skip(x, w, b, s1, backend="cpu", **c1.kwargs())
            assert torch.equal(y, y1[..., :wo]), f"seed={seed} ox={ox} Wo={wo}: other bits at another offset"


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_gradcheck(seed, backend):
    _check_random_cases(seed, backend, torch.autograd.gradcheck, 3)


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_gradgradcheck(seed, backend):
    _check_random_cases(seed, backend, torch.autograd.gradgradcheck, 2)


@pytest.mark.parametrize("backend", backends())
def test_double_backward(seed, backend):
    """Gradients of the gradients (the backward ops' registered autograd; bias and skip through the stock
    sums) against the reference's, float64."""
    c = SMALL["upscore2+pool4-dw"]
    device = device_of(backend)
    x, w, b, skip = make_inputs(c, F64)
    go = torch.randn(c.N, c.cout, *c.crop, dtype=F64)
    results = []
    for fn, extra in ((fcn_kernels.upsample_skip, dict(backend=backend)), (reference.upsample_skip, {})):
        leaves = [t.detach().clone().requires_grad_() for t in (x, w, b, skip, go)]
        on = device if fn is fcn_kernels.upsample_skip else "cpu"
        y = fn(*(t.to(on) for t in leaves[:4]), **c.kwargs(), **extra)
        grads = torch.autograd.grad(y, leaves[:4], leaves[4].to(on), create_graph=True)
        wrt = (leaves[0], leaves[1], leaves[4])  # and grad_out: bias and skip gradients are linear in it
        results.append([g.cpu() for g in torch.autograd.grad(sum((g * g).sum() for g in grads), wrt)])
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=lambda m: f"seed={seed}: {m}")


# The same bits every run: forward and every gradient. cpu: a dense upscore8-like problem; cuda: FCN-8s's
# upscore8 at full size; Triton: its dense tl.dot path (the weight gradient's fixed-order split sums).
DETERMINISM = {
    "cpu": case(N=3, channels=6, H=9, W=11, K=16, stride=8, out_offset=(5, 3), bias=True),
    "cuda": case(N=2, channels=21, groups=21, H=70, W=70, K=16, stride=8, out_offset=31, out_size=500),
    "triton": SMALL["dense-dot"],
}


@pytest.mark.parametrize("backend", backends())
def test_deterministic_bits(seed, backend):
    problem = DETERMINISM[backend]
    inputs = [t.to(device_of(backend)) if t is not None else None for t in make_inputs(problem, F32)]
    go = torch.randn(problem.N, problem.cout, *problem.crop, device=device_of(backend))
    first = run(fcn_kernels.upsample_skip, inputs, go, backend=backend, **problem.kwargs())
    again = run(fcn_kernels.upsample_skip, inputs, go, backend=backend, **problem.kwargs())
    assert torch.equal(first[0], again[0]), f"forward not bitwise reproducible on {backend}"
    for name, a, b in zip(("x", "weight", "bias", "skip"), first[1], again[1]):
        if a is not None:
            assert torch.equal(a, b), f"grad {name} not bitwise reproducible on {backend}"


@pytest.mark.parametrize("form", ["bilinear", "random"])
@pytest.mark.parametrize("backend", backends("cpu"))
def test_cpu_bits_whatever_the_threads(seed, backend, form):
    """The CPU forwards hand their rows to the threads as each comes free (csrc/cpu/parallel_chunks.h): the
    scores and the labels have the same bits on 1 and 2 threads and on every call. Enough rows for many chunks;
    bilinear filters take the aligned rows (float), random ones the register blocks."""
    c = case(N=2, channels=5, groups=5, H=23, W=19, K=16, stride=8, out_offset=(31, 9), out_size=(150, 131), bias=True)
    x, w, b, _ = make_inputs(c, F32)
    if form == "bilinear":
        w = outer_product_weight(c, F32, "bilinear")
    results = per_thread_count(
        lambda: (
            fcn_kernels.upsample_skip(x, w, b, **c.kwargs(), backend=backend),
            fcn_kernels.upsample_argmax(x, w, b, **c.kwargs(), backend=backend),
        ),
        (1, 2, 2),
    )
    for got in results[1:]:
        assert torch.equal(got[0], results[0][0]) and torch.equal(got[1], results[0][1]), f"seed={seed} {form}"
    assert torch.equal(results[0][1], results[0][0].argmax(1)), f"seed={seed} {form}"


@pytest.mark.parametrize("stride", [8, 16])
@pytest.mark.parametrize("backend", backends("cpu"))
def test_separable_rows_same_bits_wherever_a_row_starts(seed, backend, stride):
    """Bilinear upsampling in float (on AVX-512 CPUs the aligned rows, upsample_skip_kernel.cpp: each row's lanes
    laid out from its address's place in a 64-byte line, its combined row computed from its two input rows, or
    taken from a buffer where it has one): a row's scores have the same bits, signs of zero included, whatever
    its width puts it at. Crops at several phases, reaching x's first and last blocks and the output's rows with
    one input row; bias and skip or not. The scores are the reference's within float32's bound, and the labels
    their argmax."""
    rng = random.Random(seed)
    for trial in range(6):
        H, W = rng.randint(2, 6), rng.randint(3, 12)
        full = ((H - 1) * stride + 2 * stride, (W - 1) * stride + 2 * stride)
        oy, ox = rng.randint(0, stride + 1), rng.choice([0, 1, stride - 1, stride, rng.randint(0, full[1] - 18)])
        ho, wo = rng.randint(1, full[0] - oy), full[1] - ox - rng.choice([0, 0, 1, stride])
        skip = trial % 2 == 1
        c = case(
            N=2, channels=3, groups=3, H=H, W=W, K=2 * stride, stride=stride, out_offset=(oy, ox),
            out_size=(ho, wo), bias=trial % 3 == 0, skip_offset=(1, 2), skip_hw=(ho + 1, wo + 2) if skip else None,
        )  # fmt: skip
        x, _, b, sk = make_inputs(c, F32)
        w = outer_product_weight(c, F32, "bilinear")
        y = fcn_kernels.upsample_skip(x, w, b, sk, **c.kwargs(), backend=backend)
        assert_matches_reference(c, (x, w, b, sk), None, y, what=f"seed={seed} trial={trial}")
        labels = fcn_kernels.upsample_argmax(x, w, b, sk, **c.kwargs(), backend=backend)
        assert torch.equal(labels, y.argmax(1)), (seed, trial)
        for narrower in (1, 3, 4, 7):  # other widths: other row starts within a 64-byte line
            if wo - narrower < 1:
                continue
            kw = dict(c.kwargs(), out_size=(ho, wo - narrower))
            got = fcn_kernels.upsample_skip(x, w, b, sk, **kw, backend=backend)
            want = y[..., : wo - narrower].contiguous()
            assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (seed, trial, narrower)


@pytest.mark.parametrize("backend", backends("cuda"))
def test_cuda_matches_cpu_kernels(seed, backend):
    problem = DETERMINISM["cuda"]
    x, w, _, _ = make_inputs(problem, F32)
    y = fcn_kernels.upsample_skip(x.cuda(), w.cuda(), backend=backend, **problem.kwargs())
    y_cpu = fcn_kernels.upsample_skip(x, w, backend="cpu", **problem.kwargs())
    torch.testing.assert_close(y.cpu(), y_cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", backends())
def test_fixed_weight_costs_no_weight_gradient(backend):
    """A weight that does not require grad (FCN's fixed bilinear upsampling): no weight-gradient op runs (each
    backend's is named <op>_backward_weight[_triton], fcn_kernels/_autograd/)."""
    device = device_of(backend)
    x = torch.randn(2, 3, 5, 5, device=device, requires_grad=True)
    skip = torch.randn(2, 3, 20, 20, device=device, requires_grad=True)
    for trainable in (False, True):
        w = fcn_kernels.bilinear_kernel(3, 4, groups=3, device=device).requires_grad_(trainable)

        def call(w=w):
            y = fcn_kernels.upsample_skip(x, w, None, skip, stride=2, groups=3, skip_offset=5, backend=backend)
            y.sum().backward()

        ours = op_names(call, "fcn_kernels::upsample_skip")
        assert any("backward_weight" in n for n in ours) == trainable, ours
        assert any("backward_input" in n for n in ours), ours
        assert (w.grad is not None) == trainable


# opcheck problems: bias and skip each present or not (groups 2, 3 -> 6 channels), and the depthwise and
# tl.dot problems of Triton.
_PLAIN = case(N=2, cin=4, cout=6, groups=2, H=5, W=6, out_offset=(1, 2), out_size=(9, 10), skip_offset=(3, 2))
OPCHECK = {
    "plain": _PLAIN,
    "bias": replace(_PLAIN, bias=True),
    "skip": replace(_PLAIN, skip_hw=(15, 16)),
    "bias+skip": replace(_PLAIN, skip_hw=(15, 16), bias=True),
    "depthwise": SMALL["upscore2+pool4-dw"],
    "dot": SMALL["dense-dot"],
}


@pytest.mark.parametrize("backend, name", opcheck_grid(OPCHECK, ("skip", "dot"), ("depthwise", "dot"), ("depthwise",)))
def test_opcheck(seed, backend, name):
    """The forward op and its backward pair (torch.library.opcheck: schema, fake, autograd registration)."""
    c = OPCHECK[name]
    suffix = "_triton" if backend == "triton" else ""
    ops = torch.ops.fcn_kernels
    x, w, b, skip = [t.to(device_of(backend)).requires_grad_() if t is not None else None for t in make_inputs(c, F32)]
    geometry = [list(c.stride), c.groups, list(c.out_offset)]
    opcheck(
        getattr(ops, f"upsample_skip{suffix}").default, (x, w, b, skip, *geometry, list(c.crop), list(c.skip_offset))
    )
    go = torch.randn(c.N, c.cout, *c.crop, device=x.device)
    # x and weight still require grad: the backward ops' own autograd (double backward) is checked too
    opcheck(getattr(ops, f"upsample_skip_backward_input{suffix}").default, (go, w, list(x.shape), *geometry))
    opcheck(getattr(ops, f"upsample_skip_backward_weight{suffix}").default, (go, x, list(w.shape), *geometry))


# the module test's problem: FCN's depthwise upsampling by 2 with a crop and a skip
MODULE_CASE = case(
    N=2, channels=3, groups=3, H=5, W=6, out_offset=1, out_size=(9, 10), skip_offset=(1, 2), skip_hw=(12, 14), bias=True
)


@pytest.mark.parametrize("backend", backends("cpu", "cuda", pytest.param("triton", marks=NEEDS_GPU)))
def test_module_and_compile_fullgraph(seed, backend):
    """FusedUpsampleSkip under torch.compile(fullgraph=True), forward and backward, against float64 on CPU."""
    device = device_of(backend)
    c = MODULE_CASE
    geometry = dict(groups=c.groups, skip_offset=c.skip_offset, out_offset=c.out_offset)
    m = fcn_kernels.FusedUpsampleSkip(
        c.cin, c.cout, c.K, c.stride, **geometry, bias=True, init="default", backend=backend, device=device
    )
    x = torch.randn(c.N, c.cin, c.H, c.W, device=device, requires_grad=True)
    skip = torch.randn(c.N, c.cout, *c.skip_hw, device=device, requires_grad=True)
    torch._dynamo.reset()
    y = torch.compile(lambda x, s: m(x, s, out_size=c.out_size), fullgraph=True)(x, skip)
    go = torch.randn_like(y)
    gx, gw, gb, gs = torch.autograd.grad(y, (x, m.weight, m.bias, skip), go)
    assert_matches_reference(c, (x, m.weight, m.bias, skip), go, y, [gx, gw, gb, gs], f"compiled {backend}")


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_autocast_casts_like_a_convolution(seed, backend):
    device = device_of(backend)
    x = torch.randn(2, 4, 6, 6, device=device)
    w, skip = torch.randn(4, 1, 4, 4, device=device), torch.randn(2, 4, 16, 16, device=device)
    with torch.autocast(device, dtype=BF16):
        y = fcn_kernels.upsample_skip(x, w, None, skip, stride=2, groups=4, skip_offset=1, backend=backend)
        y_ref = reference.upsample_skip(x, w, None, skip.bfloat16(), stride=2, groups=4, skip_offset=1)
    assert y.dtype == BF16 and y_ref.dtype == BF16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)


# ---- CUDA kernels only ----------------------------------------------------------------------------------------

# Shapes that take each path of csrc/cuda/plane_kernel.cuh: widths that are and are not a multiple of
# the 16-byte run (vector and scalar stores, misaligned skip rows), more channels than one weight slab
# holds (64 x 16 x 16 fp32 > 32 KB), filters too big for the tile (read in place), and more planes than
# one grid dimension takes (65535: the grid-stride loop), reached through the batch (a float64 reference
# over as many groups is slow).
PATH_CASES = {
    "fcn8s_upscore8_even": case(N=2, channels=21, groups=21, H=70, W=70, K=16, stride=8, out_offset=31, out_size=500),
    "fcn8s_upscore8_odd": case(
        channels=21, groups=21, H=70, W=70, K=16, stride=8, out_offset=31, out_size=(497, 501), bias=True
    ),
    "skip_misaligned": replace(
        case(N=2, channels=6, groups=6, H=9, W=11, out_offset=1, out_size=(17, 19), bias=True),
        skip_offset=(5, 3),
        skip_hw=(25, 27),
    ),
    "dense_two_slabs": case(channels=64, H=5, W=6, K=16, stride=8, out_offset=(3, 5), bias=True),
    "untiled_filter": case(
        channels=2, groups=2, H=2, W=3, K=(1, 9000), stride=1, out_offset=(0, 100), out_size=(2, 37)
    ),
    "many_planes": case(N=66000, channels=1, H=1, W=2, K=2, stride=2, bias=True),
}
GPU_CHECK_PATHS = {
    ("skip_misaligned", F32, "int32"),
    ("skip_misaligned", F32, "int64"),
    ("fcn8s_upscore8_odd", BF16, "int32"),
    ("many_planes", F32, "int32"),
}


# the random problems on which test_cuda_matches_triton compares the two GPU backends
RANDOM_PROBLEMS = (
    random_case,
    make_inputs,
    lambda c: c.crop,
    run,
    fcn_kernels.upsample_skip,
)
cuda_tests = cuda_kernel_tests(PATH_CASES, GPU_CHECK_PATHS, check_against_reference, *RANDOM_PROBLEMS)
test_cuda_kernel_paths, test_cuda_matches_triton = cuda_tests
