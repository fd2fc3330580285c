"""fcn_kernels.upsample_argmax on every backend (cpu; cuda; triton) against the float64 reference and against
the backend's own upsample_skip (docs/DESIGN.md §2): a label may differ from the exact argmax only where two
classes' exact scores are within their error bounds of each other, and equals the argmax of the backend's
upsample_skip scores wherever both round alike (_helpers/argmax_cases.py).

Fresh random inputs every run (conftest's `seed`; replay one with FCN_TEST_SEED=...). Triton gets the tiny
variants (`tiny`): under TRITON_INTERPRET=1 its kernels run in Python.
"""

import random
from dataclasses import replace

import pytest
import torch

import fcn_kernels
from _helpers.argmax_cases import check
from _helpers.backends import NEEDS_GPU, backends, device_of, gpu_check, grid, tiny
from _helpers.opcheck import opcheck
from _helpers.suites import case_tests
from _helpers.threads import per_thread_count
from _helpers.upsample_cases import (
    FCN8S_STAGES,
    FCN_LAST_STAGES,
    LAYOUTS,
    SMALL as SKIP_CASES,
    case,
    outer_product_weight,
    random_case,
)
from fcn_kernels import reference
from fcn_kernels.app import bench

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16
DTYPES = [F64, F32, BF16, F16]

SMALL = {
    "upscore8-dw": case(
        N=2, channels=3, groups=3, H=4, W=3, K=16, stride=8, out_offset=(31, 5), out_size=(7, 13), bias=True
    ),
    "upscore2+pool4-dw": case(channels=4, groups=4, H=4, W=5, K=4, stride=2, skip_offset=5, skip_hw=(16, 18)),
    "dense": SKIP_CASES["dense-fma"],
    "edges": replace(
        case(cin=2, cout=3, K=(3, 4), stride=(3, 1), out_offset=(0, 2), out_size=(9, 4), bias=True),
        skip_offset=(2, 0),
        skip_hw=(11, 4),
    ),
    # fcn_kernels.app.doctor's dense problem: the CUDA kernel's illegal memory access in bfloat16 on an H200
    "dense-16": case(cin=16, cout=16, H=3, W=4, K=4, stride=2, skip_offset=(1, 0), skip_hw=(9, 10)),
}
CASES = {**SMALL, **{f"fcn8s-{name}": c for name, c in FCN8S_STAGES.items()}}
TRITON_CASES = [(n, d) for d in DTYPES for n in SMALL if n != "dense-16"] + [("dense-16", BF16)]
GPU_CHECK_CASES = {
    ("dense-16", BF16),
    ("dense-16", F16),
    ("dense-16", F32),
    ("upscore8-dw", F32),
    ("dense", F64),
    ("upscore2+pool4-dw", BF16),
}


test_cases = case_tests(check, CASES, DTYPES, TRITON_CASES, GPU_CHECK_CASES)


def _tiny(problem):
    """A small map and window (the interpreter is slow) that fits the shrunken full output, no skip."""
    problem.H, problem.W = min(problem.H, 3), min(problem.W, 3)
    problem.out_offset, problem.skip_hw = (0, 0), None
    problem.out_size = tuple(min(n, f) for n, f in zip((2, 3), problem.full))
    return problem


RANDOM = {"cpu": 20, "cuda": 20, "triton": 3}


@pytest.mark.parametrize(
    "backend, dtype, batch",
    grid(
        cpu=[(d, b) for d in DTYPES for b in range(3)],
        cuda=[gpu_check(d, 0) if d in (F32, F16) else (d, 0) for d in DTYPES],
        triton=[(F32, 0)],
    ),
)
def test_random_cases(seed, backend, dtype, batch):
    rng = random.Random(seed + batch)
    for _ in range(RANDOM[backend]):
        problem = _tiny(random_case(rng, max_batch=1)) if tiny(backend) else random_case(rng)
        check(problem, backend, dtype)


@pytest.mark.parametrize("backend, dtype", grid(cuda=[F64, F32, gpu_check(BF16), F16]))
def test_cuda_64bit_index_path(seed, backend, dtype, monkeypatch):
    """Every launch down the CUDA kernel's 64-bit index path (else only calls past 2**31 elements take it)."""
    monkeypatch.setenv("FCN_KERNELS_CUDA_INDEX64", "1")
    rng = random.Random(seed)
    for problem in [random_case(rng) for _ in range(20)] + list(CASES.values()):
        check(problem, backend, dtype)


@pytest.mark.parametrize("backend, stride", grid(cpu=range(1, 9), cuda=range(1, 9)))
def test_every_stride_with_windows_at_both_edges(seed, backend, stride):
    for K in (stride, 2 * stride, stride + 1):
        full, wo = (4 - 1) * stride + K, (5 - 1) * stride + K + 1
        for off, size in ((0, full // 2 + 1), (full - full // 2 - 1, full // 2 + 1), (0, full)):
            for groups, cin_g, cout_g in ((3, 1, 1), (1, 2, 3), (1, 4, 5)):
                problem = case(
                    N=2,
                    cin=cin_g * groups,
                    cout=cout_g * groups,
                    groups=groups,
                    H=4,
                    W=5,
                    K=(K, K + 1),
                    stride=stride,
                    out_offset=(off, 0),
                    out_size=(size, wo),
                    skip_offset=(1, 0),
                    skip_hw=(size + 2, wo + 1),
                    bias=True,
                )
                check(problem, backend, F32)


@pytest.mark.parametrize("backend, layout", grid(cpu=LAYOUTS, cuda=LAYOUTS, triton=LAYOUTS))
def test_non_contiguous_inputs(seed, backend, layout):
    rng = random.Random(seed)
    problems = [SMALL["dense"]] if tiny(backend) else [random_case(rng) for _ in range(10)]
    for problem in problems:
        check(problem, backend, F32, LAYOUTS[layout])


@pytest.mark.parametrize("backend", backends("cpu", gpu_check("cuda"), gpu_check("triton")))
def test_empty_results(backend):
    for N, size in ((0, (5, 6)), (2, (0, 6)), (2, (5, 0)), (0, None)):
        x, w = torch.randn(N, 4, 3, 3, device=device_of(backend)), torch.randn(4, 1, 4, 4, device=device_of(backend))
        out = fcn_kernels.upsample_argmax(x, w, stride=2, groups=4, out_size=size, backend=backend)
        assert out.shape == (N, *(size or (8, 8))) and out.dtype == torch.int64


@pytest.mark.parametrize("backend", backends("cpu", gpu_check("cuda"), gpu_check("triton")))
def test_ties_go_to_the_lowest_class(seed, backend):
    device = device_of(backend)
    shape = (1, 6, 3, 3) if tiny(backend) else (2, 6, 4, 5)
    x, w = torch.randn(*shape, device=device), torch.zeros(6, 1, 4, 4, device=device)
    ua = lambda *a, **k: fcn_kernels.upsample_argmax(*a, **k, backend=backend)  # noqa: E731
    assert (ua(x, w, stride=2, groups=6) == 0).all()
    for bias, want in (([0.0] * 6, 0), ([0.0, 5.0, 1.0, 5.0, 5.0, -1.0], 1), ([0.0, 2.0, 2.0, 1.0, 0.0, 0.0], 1)):
        assert (ua(x, w, torch.tensor(bias, device=device), stride=2, groups=6) == want).all(), bias
    # equal after rounding to bfloat16 (1 + 2**-9 rounds to 1): the lowest class, as argmax of the scores
    bias = torch.tensor([0.0, 1.0, 1.0 + 2.0**-9, 0.0, 0.0, 0.0]).to(device=device, dtype=BF16)
    assert (ua(x.bfloat16(), w.bfloat16(), bias, stride=2, groups=6) == 1).all()


@pytest.mark.parametrize("backend", backends("cpu", gpu_check("cuda"), gpu_check("triton")))
def test_nan_counts_as_the_largest_like_torch_argmax(seed, backend):
    device = device_of(backend)
    ua = lambda *a, **k: fcn_kernels.upsample_argmax(*a, **k, backend=backend).cpu()  # noqa: E731
    nan, inf = float("nan"), float("inf")
    shape = (1, 4, 3, 3) if tiny(backend) else (2, 4, 4, 5)
    x, w = torch.randn(*shape, device=device), torch.zeros(4, 1, 4, 4, device=device)
    for bias, want in (
        ([0.0, 1.0, nan, 2.0], 2),
        ([nan, inf, nan, 2.0], 0),
        ([inf, 1.0, nan, nan], 2),
        ([-inf, -inf, -inf, -inf], 0),
        ([1.0, nan, 5.0, nan], 1),
    ):
        assert (ua(x, w, torch.tensor(bias, device=device), stride=2, groups=4) == want).all(), bias
    # NaN at some pixels only: the first NaN class there, the exact argmax elsewhere (depthwise, dense)
    for groups, cin in ((4, 4), (1, 5)) if tiny(backend) else ((4, 4), (1, 3), (1, 5)):
        hw = (5, 4) if tiny(backend) else (6, 7)
        x, w = torch.randn(2, cin, *hw, dtype=F64), torch.randn(cin, 4 // groups, 4, 4).double()
        x[0, cin - 1, 2, 3] = nan
        x[1, cin // 2, 4, 1] = nan
        labels = ua(x.to(device), w.to(device), stride=2, groups=groups)
        want = reference.upsample_argmax(x, w, stride=2, groups=groups)
        assert torch.equal(labels, want)
        assert labels.ne(reference.upsample_skip(x.nan_to_num(), w, stride=2, groups=groups).argmax(1)).any()


@pytest.mark.parametrize("dtype", [F32, F16, F64])
@pytest.mark.parametrize("backend", backends("cpu", gpu_check("cuda")))
def test_non_finite_scores_at_fcn_strides(seed, backend, dtype):
    """Stride 8 (the CPU kernel's register blocks, whose core blocks compare once per score where no score can
    be NaN): NaN inputs (NaN scores), finite inputs whose products overflow (scores of both infinities; NaN too
    where a sum is not contracted to FMAs), and float16 scores rounding to +-Inf from finite float32 sums (one
    comparison). Labels equal the argmax of the backend's own scores, edge and core blocks alike."""
    device = device_of(backend)
    kw = dict(stride=8, groups=5, out_offset=(3, 5), out_size=(37, 45), backend=backend)
    x, w = torch.randn(2, 5, 6, 7, dtype=dtype), torch.rand(5, 1, 16, 16, dtype=dtype) + 0.5
    big = torch.finfo(dtype).max
    nan_x = x.clone()
    nan_x[0, 3, 2, 4] = float("nan")  # a core block's inputs
    nan_x[1, 1, 0, 0] = float("nan")  # an edge block's
    over = x.sign() * big  # finite inputs, products past the largest finite value
    f16_inf = x.clone()
    f16_inf[:, 2] = 40000  # float16: float32 sums past 65504 (4 taps, weights >= 0.5), scores of +Inf
    for xs in (x, nan_x, over, f16_inf):
        xs, ws = xs.to(device), w.to(device)
        scores = fcn_kernels.upsample_skip(xs, ws, **kw)
        assert torch.equal(fcn_kernels.upsample_argmax(xs, ws, **kw), scores.argmax(1))
    over_scores = fcn_kernels.upsample_skip(over.to(device), w.to(device), **kw)
    assert over_scores.eq(float("inf")).any() and over_scores.eq(float("-inf")).any()
    assert fcn_kernels.upsample_skip(f16_inf.to(device), w.to(device), **kw).isinf().any() == (dtype == F16)
    assert fcn_kernels.upsample_skip(nan_x.to(device), w.to(device), **kw).isnan().any()


# Units in the last place of each dtype, for near ties.
ULP = {F64: 2.0**-52, F32: 2.0**-23, BF16: 2.0**-7, F16: 2.0**-10}


@pytest.mark.parametrize("kind", ["bilinear", "random"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_outer_product_filters_near_ties(seed, backend, dtype, kind, monkeypatch):
    """Filters that are exact outer products (the CPU kernels' separable form, upsample_rows.h) and near ties:
    every class's filter is the same and its input one map plus a unit in the last place or none, so that
    roundings decide the labels (they differ from the exact argmax somewhere, below float64). The labels are
    the argmax of the backend's own scores, with and without bias and skip, and with a NaN input (the direct
    form); on the CPU with the block groups forced on and off (upscore8's rows are one group each), whose
    scores must round as the forward's in any build (the sanitizers' -O1 contracts no multiply-add)."""
    device = device_of(backend)
    stages = [FCN8S_STAGES["upscore8"], *FCN_LAST_STAGES.values()]
    stages.append(replace(stages[0], N=1, cin=6, cout=6, groups=6, skip_offset=(2, 3), skip_hw=(44, 125), bias=True))
    differs = False
    for c in stages:
        w = outer_product_weight(c, dtype, kind)[:1].repeat(c.cin, 1, 1, 1)  # one filter: near ties
        base = torch.randn(c.N, 1, c.H, c.W, dtype=F64)
        x = (base * (1 + ULP[dtype] * torch.randint(-1, 2, (c.N, c.cin, c.H, c.W)))).to(dtype)
        b = (torch.randn(1, dtype=F64) * (1 + ULP[dtype] * torch.randint(-2, 3, (c.cout,)))).to(dtype)
        skip = torch.randn(c.N, 1, *c.skip_hw, dtype=dtype).expand(-1, c.cout, -1, -1) if c.skip_hw else None
        kw = dict(**c.kwargs(), backend=backend)
        nan_x = torch.where(torch.rand(x.shape) < 0.01, float("nan"), x)
        for i, x_ in enumerate((x, nan_x)):
            inputs = (x_, w, b if c.bias else None, skip)
            args = [t.to(device) if t is not None else None for t in inputs]
            scores = fcn_kernels.upsample_skip(*args, **kw)
            for groups in ("0", "1") if torch.device(device).type == "cpu" else ("",):
                monkeypatch.setenv("FCN_KERNELS_CPU_BLOCK_GROUPS", groups)
                labels = fcn_kernels.upsample_argmax(*args, **kw)
                assert torch.equal(labels, scores.argmax(1)), (c, seed, groups)
            if i == 0 and dtype != F64:  # in float64 the reference is no more exact than the kernel
                exact = reference.upsample_skip(*(t.double() if t is not None else None for t in inputs), **c.kwargs())
                differs |= bool(labels.cpu().ne(exact.argmax(1)).any())
    assert differs or dtype == F64, f"no near tie decided by rounding (seed={seed})"


@pytest.mark.parametrize("classes", [2, 3, 4, 5, 21])
@pytest.mark.parametrize("dtype", [F32, BF16, F16])
@pytest.mark.parametrize("backend", backends("cpu"))
def test_stride_8_block_groups_ties_and_crops(seed, backend, dtype, classes, monkeypatch):
    """FCN's bilinear upsampling by 8 without bias: with AVX-512, the CPU kernel scores 16 blocks of a row at one
    column each in a 16-lane vector, a class at a time, and transposes the labels at the end, on CPUs where that
    pays (FCN_KERNELS_CPU_BLOCK_GROUPS forces it on or off: both run here). Scores drawn from few values tie
    often; the labels are the argmax of the scores (the lowest tied class), the same bits either way, with crops
    at every phase of the 8-column blocks: blocks reaching past x at the row's ends (odd trials start in block 0,
    even ones in block 1), and blocks inside x that the window cuts (trials 1, 2, 4, 5, 7 end inside x), on rows
    of fewer than 16 inner blocks (no groups), of one group, and of several, the last overlapping the one before."""
    torch.manual_seed(seed)
    w = fcn_kernels.bilinear_kernel(classes, 16, classes).to(dtype)
    for trial in range(8):
        width = (9, 14, 18, 23, 28, 33, 38, 44)[trial]  # 8, 13, 16, 22, 27, 31, 37, 43 inner blocks
        x = torch.randint(-2, 3, (2, classes, 5, width)).to(dtype)
        if trial % 2:  # the largest value in one class only somewhere, ties elsewhere
            x[:, torch.randint(0, classes, (1,))] += (torch.rand(2, 1, 5, width) < 0.2).to(dtype)
        full = (4 * 8 + 16, (width - 1) * 8 + 16)
        ox = trial + 8 * (1 - trial % 2)
        size = (full[0] - 5, full[1] - ox - 2 - 8 * (trial % 3) - trial % 5)
        kw = dict(stride=8, groups=classes, out_offset=(3, ox), out_size=size, backend=backend)
        monkeypatch.setenv("FCN_KERNELS_CPU_BLOCK_GROUPS", "1")
        labels = fcn_kernels.upsample_argmax(x, w, **kw)
        monkeypatch.setenv("FCN_KERNELS_CPU_BLOCK_GROUPS", "0")
        assert torch.equal(labels, fcn_kernels.upsample_argmax(x, w, **kw)), (trial, seed)
        assert torch.equal(labels, fcn_kernels.upsample_skip(x, w, **kw).argmax(1)), (trial, seed)
        exact = reference.upsample_skip(
            x.double(), w.double(), stride=8, groups=classes, out_offset=(3, ox), out_size=kw["out_size"]
        )
        assert labels.eq(exact.argmax(1)).float().mean() > 0.99, (trial, seed)  # ties exact: scores are k/64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [8, 16, 32])
@pytest.mark.parametrize("backend", backends("cpu"))
def test_blocks_past_x_at_fcn_strides(seed, backend, stride, dtype):
    """The blocks at a row's ends whose terms reach past x (crops starting in block 0, ending in the last block):
    the CPU kernel scores them as inner blocks over combined rows padded with zeros, whose terms add nothing and
    change no sign of zero. Bilinear filters (the separable form) on noise and on ties, with and without a bias,
    and crops cutting those blocks at every phase: the labels are the argmax of the forward's own scores."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    classes, H, W = 5, 3, 6
    w = fcn_kernels.bilinear_kernel(classes, 2 * stride, classes, dtype=dtype)
    full = (H + 1) * stride, (W + 1) * stride
    for trial in range(6):
        x = torch.randn(2, classes, H, W) if trial % 2 else torch.randint(-2, 3, (2, classes, H, W)).float()
        x = x.to(dtype)
        bias = torch.randn(classes, dtype=dtype) if trial >= 4 else None
        ox = rng.choice([0, 1, stride // 2, stride - 1])  # a first block reaching column -1 of x
        end = full[1] - rng.choice([0, 1, stride // 2, stride - 1])  # a last block reaching column W
        kw = dict(
            stride=stride, groups=classes, out_offset=(rng.randrange(stride), ox), out_size=(H * stride, end - ox)
        )
        labels = fcn_kernels.upsample_argmax(x, w, bias, backend=backend, **kw)
        scores = fcn_kernels.upsample_skip(x, w, bias, backend=backend, **kw)
        assert torch.equal(labels, scores.argmax(1)), (trial, kw)


def _positive_outer_product(c, dtype, kind):
    """One filter for every class, its factors all positive: bilinear, or a and b multiples of 1/8 in (0, 2]."""
    if kind == "bilinear":
        return outer_product_weight(c, dtype, "bilinear")
    a = torch.randint(1, 17, (1, 1, c.K[0], 1)) / 8
    b = torch.randint(1, 17, (1, 1, 1, c.K[1])) / 8
    # both largest 2, so that the CPU finds the factors exactly (sqrt(max a * max b) = 2): its separable form
    a[0, 0, torch.randint(c.K[0], ())] = b[0, 0, 0, torch.randint(c.K[1], ())] = 2
    return (a * b).to(dtype).repeat(c.cin, 1, 1, 1)


@pytest.mark.parametrize("kind", ["bilinear", "positive"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_one_positive_filter_margins_around_the_rounding_bound(seed, backend, dtype, kind):
    """One filter for every class, of positive separable factors, no bias or skip: the CPU kernel's sure labels
    (upsample_argmax_kernel.cpp, SureLabels: a class ahead at every input point an output takes, by more than
    the roundings can move, is that output's label, its scores not computed). Region scores whose leading
    class's margin over the next runs from a few ulps to thousands (around the bound, so that roundings decide
    some labels), at magnitudes that underflow, and in float16 near its overflow (scores that round to inf and
    tie): the labels are the argmax of the backend's own scores, bit for bit."""
    device = device_of(backend)
    g = torch.Generator().manual_seed(seed)
    stages = [replace(FCN8S_STAGES["upscore8"], cin=7, cout=7, groups=7), *FCN_LAST_STAGES.values()]
    stages.append(case(N=2, channels=3, groups=3, H=5, W=9, K=16, stride=8, out_offset=(0, 9), out_size=(40, 63)))
    stages.append(case(channels=4, groups=4, H=24, W=40, K=16, stride=8, out_offset=(31, 7), out_size=(150, 300)))
    tiny = {F64: 2.0**-1030, F32: 2.0**-130, BF16: 2.0**-130, F16: 2.0**-20}[dtype]
    for c in stages:
        w = _positive_outer_product(c, dtype, kind)
        regions = bench.region_scores(c.N, c.cin, (c.H, c.W), present=3, margin=1, noise=0, generator=g)
        winner = regions.argmax(1, keepdim=True)
        base = torch.randn(c.N, c.cin, c.H, c.W, generator=g, dtype=F64).abs() + 1
        # the winner ahead of the largest other by |x| * ulp * 2^u: u = 16 (sure) outside patches, inside them
        # u in [-4, 6) (near the bound, whole cells of it: roundings decide some labels)
        patches = bench.region_scores(c.N, 2, (c.H, c.W), present=2, margin=1, noise=0, generator=g).argmax(1, True)
        u = torch.where(patches == 0, torch.rand(winner.shape, generator=g, dtype=F64) * 10 - 4, 16.0)
        lead = base.max(1, keepdim=True).values * (1 + ULP[dtype] * 2.0**u)
        x = base.scatter(1, winner, lead.to(F64))
        for scale in (1.0, tiny, -1.0):
            xs = (x * scale).to(dtype)
            args = [xs.to(device), w.to(device)]
            labels = fcn_kernels.upsample_argmax(*args, **c.kwargs(), backend=backend)
            assert torch.equal(labels, fcn_kernels.upsample_skip(*args, **c.kwargs(), backend=backend).argmax(1)), (
                c,
                scale,
                seed,
            )
    if dtype == F16:  # scores past float16's largest: inf, ties to the lowest class
        c = stages[0]
        w = 4 * _positive_outer_product(c, dtype, kind)
        x = 30000 + bench.region_scores(c.N, c.cin, (c.H, c.W), margin=1000, noise=10, generator=g)  # sure margins
        x = x.to(dtype).to(device)
        scores = fcn_kernels.upsample_skip(x, w.to(device), **c.kwargs(), backend=backend)
        assert scores.isinf().any()
        labels = fcn_kernels.upsample_argmax(x, w.to(device), **c.kwargs(), backend=backend)
        assert torch.equal(labels, scores.argmax(1))


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_one_positive_filter_underflow_in_the_combined_rows(backend, dtype):
    """Large column factors (b = 128) after row factors that underflow the combined rows (a = 2^-10 at the
    first and ninth row): the forward's scores there are 0 for every class (ties: class 0), although class 1
    leads at every input point by a subnormal margin that b would scale far above the scores' own roundings."""
    device = device_of(backend)
    c = case(channels=2, groups=2, H=6, W=20, K=16, stride=8)
    a = torch.full((16,), 128.0, dtype=F64)
    a[0] = a[8] = 2.0**-10
    w = (a[:, None] * torch.full((16,), 128.0, dtype=F64)).expand(2, 1, 16, 16).to(dtype).to(device)
    tiny = 300 * (2.0**-1074 if dtype == F64 else 2.0**-149)
    x = torch.zeros(1, 2, c.H, c.W, dtype=F64)
    x[:, 1] = tiny
    x = x.to(dtype).to(device)
    assert x[:, 1].ne(0).all()
    scores = fcn_kernels.upsample_skip(x, w, **c.kwargs(), backend=backend)
    assert scores[:, :, 0].eq(0).all() and scores[:, 1, 1:].gt(0).any()
    assert torch.equal(fcn_kernels.upsample_argmax(x, w, **c.kwargs(), backend=backend), scores.argmax(1))


@pytest.mark.parametrize("backend", backends("cpu"))
def test_one_positive_filter_with_flush_denormal(backend):
    """torch.set_flush_denormal(True): results below float32's least normal are 0, so that the first output row's
    scores (one input row, a = 1/16, x = 2^-123 for class 1) all flush to 0 and tie (class 0)."""
    c = case(channels=3, groups=3, H=5, W=20, K=16, stride=8)
    w = outer_product_weight(c, F32, "bilinear")
    x = torch.zeros(1, 3, c.H, c.W)
    x[:, 1] = 2.0**-123
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        scores = fcn_kernels.upsample_skip(x, w, **c.kwargs(), backend=backend)
        labels = fcn_kernels.upsample_argmax(x, w, **c.kwargs(), backend=backend)
    finally:
        torch.set_flush_denormal(False)
    assert scores[:, :, 0].eq(0).all()
    assert torch.equal(labels, scores.argmax(1))


@pytest.mark.parametrize("backend", backends("cpu"))
def test_flush_denormal_on_every_thread(backend):
    """torch.set_flush_denormal(True) sets the calling thread's flags only; the CPU forwards hand rows to other
    threads too, and copy the caller's flags there: no score is denormal, and scores and labels have the same
    bits on 1 and 2 threads, flushing having changed rows all down the map (products of 2^-123 and a or b =
    1/16 are denormal)."""
    c = case(channels=3, groups=3, H=23, W=19, K=16, stride=8)
    w = outer_product_weight(c, F32, "bilinear")
    x = torch.zeros(1, 3, c.H, c.W)
    x[:, 1] = 2.0**-123
    # first, with the flags off: the OpenMP threads start here, not with the caller's flush flags (a thread
    # started under them would keep them, for every later op)
    (kept,) = per_thread_count(lambda: fcn_kernels.upsample_skip(x, w, **c.kwargs(), backend=backend), (2,))
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        results = per_thread_count(
            lambda: (
                fcn_kernels.upsample_skip(x, w, **c.kwargs(), backend=backend),
                fcn_kernels.upsample_argmax(x, w, **c.kwargs(), backend=backend),
            ),
            (1, 2, 2),
        )
    finally:
        torch.set_flush_denormal(False)
    scores, labels = results[0]
    flushed_rows = scores.ne(kept).any(dim=-1)[0, 1]  # rows of class 1 that flushing changed
    assert flushed_rows.sum() >= len(flushed_rows) // 8 and flushed_rows[-len(flushed_rows) // 4 :].any()
    tiny = torch.finfo(torch.float32).tiny
    assert not scores.abs().lt(tiny).logical_and(scores.ne(0)).any(), "a denormal score was kept"
    assert torch.equal(labels, scores.argmax(1))
    for got in results[1:]:
        assert torch.equal(got[0], scores) and torch.equal(got[1], labels)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_one_positive_filter_noise_between_regions(seed, backend, threads):
    """Bands of region scores (labels proved) and of noise (none proved: the CPU kernel's backoff skips checks)
    down one map, on 1 and 2 threads: the labels are the argmax of the backend's own scores."""
    device = device_of(backend)
    g = torch.Generator().manual_seed(seed)
    c = case(N=2, channels=6, groups=6, H=60, W=30, K=16, stride=8, out_offset=31, out_size=(400, 200))
    x = bench.region_scores(c.N, c.cin, (c.H, c.W), generator=g)
    for lo, hi in ((8, 30), (41, 45), (50, 60)):
        x[:, :, lo:hi] = torch.randn(c.N, c.cin, hi - lo, c.W, generator=g)
    w = outer_product_weight(c, F32, "bilinear")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        args = (x.to(device), w.to(device))
        labels = fcn_kernels.upsample_argmax(*args, **c.kwargs(), backend=backend)
        assert torch.equal(labels, fcn_kernels.upsample_skip(*args, **c.kwargs(), backend=backend).argmax(1))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", backends())
def test_inputs_requiring_grad(backend):
    x = torch.randn(1, 3, 4, 4, device=device_of(backend), requires_grad=True)
    w = torch.randn(3, 1, 4, 4, device=device_of(backend), requires_grad=True)
    out = fcn_kernels.upsample_argmax(x, w, stride=2, groups=3, backend=backend)
    assert out.dtype == torch.int64 and not out.requires_grad


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))
def test_autocast_casts_like_upsample_skip(seed, backend):
    device = device_of(backend)
    x, w = torch.randn(2, 5, 4, 6, device=device), torch.randn(5, 1, 8, 8, device=device)
    b = torch.randn(5, device=device)
    with torch.autocast(device, dtype=BF16):
        labels = fcn_kernels.upsample_argmax(x, w, b, stride=4, groups=5, out_offset=3, backend=backend)
    want = fcn_kernels.upsample_skip(
        x.bfloat16(), w.bfloat16(), b.bfloat16(), stride=4, groups=5, out_offset=3, backend=backend
    )
    assert torch.equal(labels, want.argmax(1))


# (groups, in and out channels per group, bias, skip); "upscore8": FCN-8s's last stage, reduced
OPCHECK = {
    f"g{g}-{ci}x{co}{'-bias' if b else ''}{'-skip' if s else ''}": (g, ci, co, b, s)
    for g, ci, co in ((3, 1, 1), (1, 5, 4))
    for b in (False, True)
    for s in (False, True)
}


def _opcheck_args(name, device):
    if name == "upscore8":
        x, w = torch.randn(2, 4, 4, 5, device=device, requires_grad=True), torch.randn(4, 1, 16, 16, device=device)
        return x, w, None, torch.randn(2, 4, 30, 40, device=device), [8, 8], 4, [5, 5], [20, 30], [2, 3]
    groups, cin_g, cout_g, with_bias, with_skip = OPCHECK[name]
    x = torch.randn(2, cin_g * groups, 5, 6, device=device, requires_grad=True)
    w = torch.randn(cin_g * groups, cout_g, 4, 4, device=device)
    b = torch.randn(cout_g * groups, device=device) if with_bias else None
    skip = torch.randn(2, cout_g * groups, 12, 13, device=device) if with_skip else None
    return x, w, b, skip, [2, 2], groups, [1, 2], [9, 10], [3, 2]


@pytest.mark.parametrize(
    "backend, name",
    grid(
        cpu=[*OPCHECK, "upscore8"],
        cuda=[*OPCHECK, gpu_check("upscore8")],
        triton=[pytest.param(n, marks=NEEDS_GPU) for n in ("g3-1x1-skip", "g1-5x4-bias")],
    ),
)
def test_opcheck(seed, backend, name):
    op = torch.ops.fcn_kernels.upsample_argmax_triton if backend == "triton" else torch.ops.fcn_kernels.upsample_argmax
    opcheck(op.default, _opcheck_args(name, device_of(backend)))


@pytest.mark.parametrize("backend", backends("cpu", "cuda", pytest.param("triton", marks=NEEDS_GPU)))
def test_compile_fullgraph(seed, backend):
    device = device_of(backend)
    x, w, skip = (
        torch.randn(2, 4, 5, 6, device=device),
        torch.randn(4, 1, 16, 16, device=device),
        torch.randn(2, 4, 40, 50, device=device),
    )

    def fn(x, s):
        return fcn_kernels.upsample_argmax(
            x, w, None, s, stride=8, groups=4, out_offset=5, out_size=(30, 40), skip_offset=(2, 3), backend=backend
        )

    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True)(x, skip)
    assert torch.equal(got, fn(x, skip))


def test_errors():
    x, w = torch.randn(1, 4, 3, 3), torch.randn(4, 1, 4, 4)
    ua = fcn_kernels.upsample_argmax
    with pytest.raises(ValueError, match=r"weight.shape\[0\] \(3\)"):
        ua(x, torch.randn(3, 1, 4, 4), stride=2)
    with pytest.raises(ValueError, match="exceeds the full"):
        ua(x, w, stride=2, groups=4, out_size=(9, 9))
    with pytest.raises(ValueError, match="skip must have shape"):
        ua(x, w, None, torch.randn(1, 3, 8, 8), stride=2, groups=4)
    with pytest.raises(TypeError, match="weight has dtype"):
        ua(x, w.double(), stride=2, groups=4)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        ua(x.long(), w, stride=2, groups=4)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ua(x, w, stride=0, groups=4)
    with pytest.raises(ValueError, match="not one of"):
        ua(x, w, stride=2, groups=4, backend="nope")


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was not built")
def test_direct_op_call_is_checked_in_cpp():
    x, w = torch.randn(1, 4, 3, 3), torch.randn(4, 1, 4, 4)
    with pytest.raises(RuntimeError, match="exceeds the full output"):
        torch.ops.fcn_kernels.upsample_argmax(x, w, None, None, [2, 2], 4, [0, 0], [9, 9], [0, 0])
