"""fcn_kernels.upsample_argmax on CPU against the reference and the CPU upsample_skip (docs/DESIGN.md §2)."""
import os
import random

import pytest
import torch

import fcn_kernels
from fcn_kernels import reference
from argmax_cases import check_argmax
from upsample_cases import FCN8S_STAGES, LAYOUTS, case, random_case

pytestmark = pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(),
                                reason="fcn_kernels._C was not built")

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def check_cpu(case, dtype, transform=lambda t: t):
    """Near the exact argmax, and exactly the argmax of the CPU upsample_skip's rounded scores."""
    labels, inputs = check_argmax(case, "cpu", dtype, transform=transform)
    scores = fcn_kernels.upsample_skip(*inputs, backend="cpu", **case.kwargs())
    assert torch.equal(labels, scores.argmax(1)), f"{dtype} {case}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", range(3))
def test_random_cases(seed, dtype, batch):
    rng = random.Random(seed)
    for _ in range(20):
        check_cpu(random_case(rng), dtype)


@pytest.mark.parametrize("stage", FCN8S_STAGES)
def test_fcn8s_stages(seed, stage):
    for dtype in DTYPES:
        check_cpu(FCN8S_STAGES[stage], dtype)


@pytest.mark.parametrize("stride", range(1, 9))
def test_every_stride_with_windows_at_both_edges(seed, stride):
    for K in (stride, 2 * stride, stride + 1):
        full, wo = (4 - 1) * stride + K, (5 - 1) * stride + K + 1
        for off, size in ((0, full // 2 + 1), (full - full // 2 - 1, full // 2 + 1), (0, full)):
            for groups, cin_g, cout_g in ((3, 1, 1), (1, 2, 3), (1, 4, 5)):
                problem = case(N=2, cin=cin_g * groups, cout=cout_g * groups, groups=groups, H=4, W=5, K=(K, K + 1),
                               stride=stride, out_offset=(off, 0), out_size=(size, wo), skip_offset=(1, 0),
                               skip_hw=(size + 2, wo + 1), bias=True)
                check_cpu(problem, torch.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(seed, layout):
    rng = random.Random(seed)
    for _ in range(10):
        check_cpu(random_case(rng), torch.float32, LAYOUTS[layout])


def test_empty_results():
    for N, size in ((0, (5, 6)), (2, (0, 6)), (2, (5, 0))):
        x, w = torch.randn(N, 4, 3, 3), torch.randn(4, 1, 4, 4)
        out = fcn_kernels.upsample_argmax(x, w, stride=2, groups=4, out_size=size)
        assert out.shape == (N, *size) and out.dtype == torch.int64


def test_ties_go_to_the_lowest_class(seed):
    x, w = torch.randn(2, 6, 4, 5), torch.zeros(6, 1, 4, 4)
    assert (fcn_kernels.upsample_argmax(x, w, stride=2, groups=6) == 0).all()
    bias = torch.tensor([0.0, 5.0, 1.0, 5.0, 5.0, -1.0])
    assert (fcn_kernels.upsample_argmax(x, w, bias, stride=2, groups=6) == 1).all()
    # equal after rounding to bfloat16 (1 + 2**-9 rounds to 1): the lowest class, as argmax of the scores
    bias = torch.tensor([0.0, 1.0, 1.0 + 2.0**-9, 0.0, 0.0, 0.0]).to(torch.bfloat16)
    labels = fcn_kernels.upsample_argmax(x.bfloat16(), w.bfloat16(), bias, stride=2, groups=6)
    assert (labels == 1).all()


def test_nan_counts_as_the_largest_like_torch_argmax(seed):
    nan, inf = float("nan"), float("inf")
    x, w = torch.randn(2, 4, 4, 5), torch.zeros(4, 1, 4, 4)
    for bias, want in (([0.0, 1.0, nan, 2.0], 2), ([nan, inf, nan, 2.0], 0), ([inf, 1.0, nan, nan], 2),
                       ([-inf, -inf, -inf, -inf], 0)):
        assert (fcn_kernels.upsample_argmax(x, w, torch.tensor(bias), stride=2, groups=4) == want).all(), bias
    # NaN at some pixels only: the first NaN class there, the exact argmax elsewhere
    for groups, cin in ((4, 4), (1, 3), (1, 5)):
        x, w = torch.randn(2, cin, 6, 7, dtype=torch.float64), torch.randn(cin, 4 // groups, 4, 4).double()
        x[0, cin - 1, 2, 3] = nan
        x[1, cin // 2, 4, 1] = nan
        labels = fcn_kernels.upsample_argmax(x, w, stride=2, groups=groups)
        want = reference.upsample_argmax(x, w, stride=2, groups=groups)
        assert torch.equal(labels, want)
        assert labels.ne(reference.upsample_skip(x.nan_to_num(), w, stride=2, groups=groups).argmax(1)).any()


def test_inputs_requiring_grad():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    w = torch.randn(3, 1, 4, 4, requires_grad=True)
    out = fcn_kernels.upsample_argmax(x, w, stride=2, groups=3)
    assert out.dtype == torch.int64 and not out.requires_grad


def test_autocast_casts_like_upsample_skip(seed):
    x, w, b = torch.randn(2, 5, 4, 6), torch.randn(5, 1, 8, 8), torch.randn(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        labels = fcn_kernels.upsample_argmax(x, w, b, stride=4, groups=5, out_offset=3)
    want = fcn_kernels.upsample_skip(x.bfloat16(), w.bfloat16(), b.bfloat16(), stride=4, groups=5, out_offset=3)
    assert torch.equal(labels, want.argmax(1))


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_skip", [False, True])
@pytest.mark.parametrize("groups, cin_g, cout_g", [(3, 1, 1), (1, 5, 4)])
def test_opcheck(seed, with_bias, with_skip, groups, cin_g, cout_g):
    x = torch.randn(2, cin_g * groups, 5, 6, requires_grad=True)
    w = torch.randn(cin_g * groups, cout_g, 4, 4)
    b = torch.randn(cout_g * groups) if with_bias else None
    skip = torch.randn(2, cout_g * groups, 12, 13) if with_skip else None
    torch.library.opcheck(torch.ops.fcn_kernels.upsample_argmax.default,
                          (x, w, b, skip, [2, 2], groups, [1, 2], [9, 10], [3, 2]))


def test_compile_fullgraph(seed):
    x, w, skip = torch.randn(2, 4, 5, 6), torch.randn(4, 1, 16, 16), torch.randn(2, 4, 40, 50)
    fn = lambda x, s: fcn_kernels.upsample_argmax(x, w, None, s, stride=8, groups=4, out_offset=5,
                                                  out_size=(30, 40), skip_offset=(2, 3))
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
    with pytest.raises(RuntimeError, match="exceeds the full output"):  # the C++ op checks too
        torch.ops.fcn_kernels.upsample_argmax(x, w, None, None, [2, 2], 4, [0, 0], [9, 9], [0, 0])


# ---- CUDA (not run on this machine: no GPU) ---------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("FCN_EXPECT_CUDA_KERNELS") != "1",
                    reason="set by scripts/test.sh when torch is a CUDA build and a CUDA toolkit was found")
def test_cuda_kernel_registered():
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fcn_kernels::upsample_argmax", "CUDA")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index64", [False, True])
def test_cuda_against_reference(seed, dtype, index64, monkeypatch):
    if index64:
        monkeypatch.setenv("FCN_KERNELS_CUDA_INDEX64", "1")
    rng = random.Random(seed)
    cases = [random_case(rng) for _ in range(20)] + list(FCN8S_STAGES.values())
    for problem in cases:
        labels, inputs = check_argmax(problem, "cuda", dtype, device="cuda")
        # the same gather, order and rounding as the CUDA upsample_skip
        scores = fcn_kernels.upsample_skip(*inputs, backend="cuda", **problem.kwargs())
        assert torch.equal(labels, scores.argmax(1).cpu()), f"{dtype} {problem}"


@pytest.mark.cuda
def test_cuda_ties_nan_opcheck_and_compile(seed):
    x, w = torch.randn(2, 4, 4, 5, device="cuda"), torch.zeros(4, 1, 4, 4, device="cuda")
    nan = float("nan")
    for bias, want in (([0.0, 0.0, 0.0, 0.0], 0), ([0.0, 2.0, 2.0, 1.0], 1), ([1.0, nan, 5.0, nan], 1)):
        got = fcn_kernels.upsample_argmax(x, w, torch.tensor(bias, device="cuda"), stride=2, groups=4)
        assert (got == want).all(), bias
    w = torch.randn(4, 1, 16, 16, device="cuda")
    skip = torch.randn(2, 4, 30, 40, device="cuda")
    torch.library.opcheck(torch.ops.fcn_kernels.upsample_argmax.default,
                          (x, w, None, skip, [8, 8], 4, [5, 5], [20, 30], [2, 3]))
    fn = lambda x, s: fcn_kernels.upsample_argmax(x, w, None, s, stride=8, groups=4, out_offset=5,
                                                  out_size=(20, 30), skip_offset=(2, 3))
    assert torch.equal(torch.compile(fn, fullgraph=True)(x, skip), fn(x, skip))
