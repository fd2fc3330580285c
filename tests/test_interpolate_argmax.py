"""fcn_kernels.interpolate_argmax (docs/DESIGN.md §2.6) against F.interpolate(x, size, mode="bilinear").argmax(1):
labels whose exact (float64) score is within the scores' error bound of the best exact score, ties and NaN as
torch.argmax. Fresh random inputs every run (conftest's `seed`). Each test takes a `backend` (cpu, cuda, triton);
Triton gets the tiny variants (`tiny`): under TRITON_INTERPRET=1 its kernels run in Python."""

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, note, strategies as st

import fcn_kernels
from _helpers.backends import NEEDS_GPU, backends, device_of, gpu_check, grid, tiny
from _helpers.loss_cases import random_shape
from _helpers.opcheck import opcheck
from _helpers.upsample_cases import LAYOUTS
from fcn_kernels._tolerance import EPS, error_bound

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16
# docs/DESIGN.md §2.6.
BACKENDS = backends("cpu", "cuda", "triton")


def exact_scores(x, size, align_corners):
    return F.interpolate(x.double(), size=size, mode="bilinear", align_corners=align_corners)


def check_labels(x, size, align_corners, backend, transform=lambda t: t):
    """interpolate_argmax's labels: the right shape and dtype, and each one's exact score within the bound of the
    best exact score (a label may differ from the reference's only where two classes are that close). The bound:
    a score's rounding to x's dtype, its 4 products' accumulation, and the weights' float32 rounding (see
    test_interpolate_cross_entropy.problem)."""
    labels = fcn_kernels.interpolate_argmax(
        transform(x).to(device_of(backend)), size, align_corners=align_corners, backend=backend
    ).cpu()
    exact = exact_scores(x, size, align_corners)
    N, C, H, W = x.shape
    assert labels.dtype == torch.int64 and labels.shape == (N, *size), (labels.dtype, labels.shape)
    if labels.numel() == 0:
        return
    eps = EPS[F64] if x.dtype == F64 else EPS[F32]
    dl = 2 * eps * (H + 2) + 2 * eps * (W + 2)
    bound = error_bound(exact, exact_scores(x.abs(), size, align_corners), 6, x.dtype)
    bound = bound + 4 * dl * x.double().abs().amax((2, 3), keepdim=True)
    chosen = exact.gather(1, labels.unsqueeze(1)).squeeze(1)
    best, where = exact.max(1)
    slack = bound.gather(1, labels.unsqueeze(1)).squeeze(1) + bound.gather(1, where.unsqueeze(1)).squeeze(1)
    assert bool((best - chosen <= slack).all()), f"labels off by more than the bound for {x.shape} -> {size}"
    return labels


def check_random_shapes(seed, backend, count, dtype, transform=lambda t: t):
    """check_labels on `count` random problems (random_shape's; tiny ones on a tiny backend) of dtype scores."""
    rng = random.Random(seed)
    for _ in range(count):
        s = random_shape(rng, tiny=tiny(backend))
        x = torch.randn(s["N"], s["C"], s["H"], s["W"], dtype=dtype)
        check_labels(x, s["size"], s["align_corners"], backend, transform)


@pytest.mark.parametrize(
    "backend, dtype",
    grid(cpu=[F64, F32, BF16, F16], cuda=[F64, gpu_check(F32), BF16, F16], triton=[F64, F32, BF16, F16]),
)
def test_random_shapes(seed, backend, dtype):
    check_random_shapes(seed, backend, 3 if tiny(backend) else 15, dtype)


@pytest.mark.parametrize("backend", backends("cpu", "cuda", gpu_check("triton")))
@pytest.mark.parametrize("align_corners", [False, True])
def test_heads(seed, backend, align_corners):
    heads = [(2, 150, 8, 8, (64, 64)), (1, 19, 16, 32, (128, 256)), (1, 21, 63, 63, (500, 500))]
    for N, C, H, W, size in [(1, 6, 8, 8, (16, 16)), (1, 5, 6, 9, (13, 20))] if tiny(backend) else heads:
        check_labels(torch.randn(N, C, H, W), size, align_corners, backend)


@pytest.mark.parametrize("backend", backends("triton"))
@pytest.mark.parametrize("dtype", [F64, gpu_check(F32), BF16])
def test_same_labels_as_the_cpu_kernel(seed, backend, dtype):
    """The C++ kernel computes every score as F.interpolate does and rounds it to x's dtype; Triton's kernel
    follows the same rule (the same fused multiply-adds: csrc/index/interpolate.h's blend2, the taps'
    source coordinate), so that near ties resolve alike: the same labels, bit for bit. With the fusing left
    to each compiler and the interpreter truncating to bfloat16, 11 of 450 runs of 3 problems (150 seeds a
    dtype) failed: 8 bfloat16, 2 float32, 1 float64."""
    rng = random.Random(seed)
    for _ in range(10):
        s = random_shape(rng, tiny=True)
        x = torch.randn(s["N"], s["C"], s["H"], s["W"], dtype=dtype).round(decimals=1)  # many near ties
        want = fcn_kernels.interpolate_argmax(x, s["size"], align_corners=s["align_corners"], backend="cpu")
        got = fcn_kernels.interpolate_argmax(
            x.to(device_of(backend)), s["size"], align_corners=s["align_corners"], backend=backend
        )
        assert torch.equal(got.cpu(), want), s


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(seed, backend, layout):
    check_random_shapes(seed, backend, 1 if tiny(backend) else 4, torch.float32, LAYOUTS[layout])


@pytest.mark.parametrize("backend", backends("cpu", gpu_check("cuda"), "triton"))
def test_ties_and_nan_as_torch_argmax(backend):
    x = torch.zeros(2, 5, 4, 4, device=device_of(backend))
    size = (9, 7)
    want = lambda x: F.interpolate(x, size=size, mode="bilinear").argmax(1)  # noqa: E731
    assert torch.equal(fcn_kernels.interpolate_argmax(x, size, backend=backend), want(x))  # every class ties: 0
    x[:, 3] = 1.0
    x[:, 4] = 1.0
    assert bool((fcn_kernels.interpolate_argmax(x, size, backend=backend) == 3).all())  # the lowest of the tied
    x[1, 2, 1, 1] = float("nan")  # NaN wins where it is blended in
    labels = fcn_kernels.interpolate_argmax(x, size, backend=backend)
    assert torch.equal(labels, want(x)) and bool((labels[1] == 2).any()) and bool((labels[0] == 3).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_zero_and_size_forms(backend):
    dev = device_of(backend)
    assert fcn_kernels.interpolate_argmax(torch.randn(0, 3, 4, 4, device=dev), 8, backend=backend).shape == (0, 8, 8)
    x = torch.randn(1, 3, 4, 5, device=dev)
    assert torch.equal(
        fcn_kernels.interpolate_argmax(x, 8, backend=backend),
        fcn_kernels.interpolate_argmax(x, (8, 8), backend=backend),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors(backend):
    x = torch.randn(1, 3, 4, 5)
    for args, error, words in [
        ((x, 0), ValueError, "size"),
        ((x, (2, 3, 4)), TypeError, "size"),
        ((x[0], 4), ValueError, "x"),
        ((x.long(), 4), TypeError, "x"),
        ((x[:, :0], 4), ValueError, "x"),
    ]:
        with pytest.raises(error, match=words):
            fcn_kernels.interpolate_argmax(*args, backend=backend)
    with pytest.raises(TypeError, match="align_corners"):
        fcn_kernels.interpolate_argmax(x, 4, align_corners=None, backend=backend)
    with pytest.raises(RuntimeError, match="size must be >= 1"):
        torch.ops.fcn_kernels.interpolate_argmax(x, [0, 4], False)


@pytest.mark.parametrize("backend", backends("cpu", "cuda", pytest.param("triton", marks=NEEDS_GPU)))
def test_opcheck_and_compile(backend):
    x = torch.randn(2, 6, 5, 4, device=device_of(backend))
    op = (
        torch.ops.fcn_kernels.interpolate_argmax_triton
        if backend == "triton"
        else torch.ops.fcn_kernels.interpolate_argmax
    )
    opcheck(op.default, (x, [11, 9], True))
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: fcn_kernels.interpolate_argmax(x, (11, 9), backend=backend), fullgraph=True)
    assert torch.equal(compiled(x), fcn_kernels.interpolate_argmax(x, (11, 9), backend=backend))


@pytest.mark.parametrize("backend", backends("cpu", "cuda"))  # hypothesis's many draws: too slow for the interpreter
@given(
    shape=st.builds(lambda seed: random_shape(random.Random(seed)), st.integers(0, 2**31 - 1)),
    dtype=st.sampled_from([F64, F32, BF16, F16]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_labels_within_the_bound(backend, shape, dtype, seed):
    torch.manual_seed(seed)
    note(f"{shape} {dtype}")
    s = shape
    check_labels(torch.randn(s["N"], s["C"], s["H"], s["W"], dtype=dtype), s["size"], s["align_corners"], backend)
