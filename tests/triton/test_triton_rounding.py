"""The two roundings the Triton kernels rely on to match the C++ kernels bit for bit: tl.fma rounds once
(_tiles.bilinear_taps' source coordinates, bilinear_score's blend: csrc/index/interpolate.h's blend2) and
float32 -> bfloat16 rounds to nearest even (the scores the argmax kernels compare). The GPU does both; Triton's
interpreter does neither, and fcn_kernels/triton/_interpreter.py patches it. Checked through a kernel on the
tests' device (the interpreter's patches or the GPU itself) against exact rational arithmetic and torch's
bfloat16."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from _helpers.triton_env import DEVICE, NOT_RUNNABLE, RUNNABLE

if not RUNNABLE:
    pytest.skip(NOT_RUNNABLE, allow_module_level=True)
pytest.importorskip("triton")

import triton
import triton.language as tl

import fcn_kernels.triton  # noqa: F401  (applies the interpreter's patches)
from _helpers.backends import gpu_check
from fcn_kernels.triton._tiles import bilinear_taps


@triton.jit
def _fma_kernel(x_ptr, y_ptr, z_ptr, out_ptr, n, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = k < n
    x = tl.load(x_ptr + k, mask=m)
    y = tl.load(y_ptr + k, mask=m)
    z = tl.load(z_ptr + k, mask=m)
    tl.store(out_ptr + k, tl.fma(x, y, z), mask=m)


@triton.jit
def _to_bfloat16_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = k < n
    tl.store(out_ptr + k, tl.load(x_ptr + k, mask=m).to(tl.bfloat16), mask=m)


@triton.jit
def _taps_kernel(i_ptr, l_ptr, n_in, n_out, ALIGN: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    m = o < n_out
    i0, i1, l0, l1 = bilinear_taps(o, n_in, n_out, ALIGN, ACC)
    tl.store(i_ptr + o, i0, mask=m)
    tl.store(i_ptr + BLOCK + o, i1, mask=m)
    tl.store(l_ptr + o, l0, mask=m)
    tl.store(l_ptr + BLOCK + o, l1, mask=m)


def host_taps(n_in, n_out, align, dtype):
    """csrc/host/interpolate.h's axis_taps, step by step in dtype: (i0, i1, l0, l1) lists."""
    T = np.float32 if dtype == torch.float32 else np.float64
    if align:
        scale = T(n_in - 1) / T(n_out - 1) if n_out > 1 else T(0)
    else:
        scale = T(n_in) / T(n_out)
    taps = []
    for i in range(n_out):
        if n_in == n_out:
            taps.append((i, i, 1.0, 0.0))
            continue
        if align:
            src = scale * T(i)
        else:
            src = T(rounded_once(float(scale), float(T(i) + T(0.5)), -0.5, dtype))
            src = max(src, T(0))
        i0 = min(int(np.floor(np.float32(src))), n_in - 1)  # floorf
        l1 = min(max(src - T(i0), T(0)), T(1))
        taps.append((i0, i0 + (i0 < n_in - 1), float(T(1) - l1), float(l1)))
    return [list(t) for t in zip(*taps)]


@pytest.mark.parametrize("dtype", [gpu_check(torch.float32), gpu_check(torch.float64)])
def test_bilinear_taps_are_the_hosts(seed, dtype):
    """Triton's in-kernel taps (_tiles.bilinear_taps) equal the C++ kernels' host taps, bit for bit: on a GPU
    this catches the compiler fusing a multiply-add the host does not (float64 align_corners did)."""
    rng = np.random.default_rng(seed)
    sizes = [(3, 6), (5, 15), (3, 13), (7, 7), (4, 1), (1, 9), (64, 9)]
    sizes += [tuple(int(v) for v in rng.integers(1, 100, 2)) for _ in range(6)]
    for n_in, n_out in sizes:
        for align in (False, True):
            want = host_taps(n_in, n_out, align, dtype)
            i = torch.empty(2, 128, dtype=torch.int32, device=DEVICE)
            lam = torch.empty(2, 128, dtype=dtype, device=DEVICE)
            _taps_kernel[(1,)](
                i, lam, n_in, n_out, ALIGN=align, ACC=tl.float32 if dtype == torch.float32 else tl.float64, BLOCK=128
            )
            got = [i[0, :n_out].tolist(), i[1, :n_out].tolist(), lam[0, :n_out].tolist(), lam[1, :n_out].tolist()]
            assert got == want, (n_in, n_out, align)


def rounded_once(x, y, z, dtype):
    """x * y + z in rationals, rounded once to dtype (nearest, ties to even)."""
    q = Fraction(x) * Fraction(y) + Fraction(z)
    nearest = torch.tensor(float(q), dtype=dtype)  # float64 first: within an ulp of dtype's answer
    inf = torch.tensor(float("inf"), dtype=dtype)
    options = [nearest, torch.nextafter(nearest, inf), torch.nextafter(nearest, -inf)]
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    return min(options, key=lambda o: (abs(Fraction(o.item()) - q), o.view(bits).item() % 2)).item()


def fma_cases(dtype, n, seed):
    """Random operands over 80 binades of z, and halfway cases: z = -(x * y rounded), so that the exact
    result is the product's rounding error, and z = 2**k with products landing on a halfway point."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    z = torch.randn(n, generator=g, dtype=torch.float64) * torch.exp2(torch.randint(-40, 40, (n,), generator=g))
    x, y, z = x.to(dtype), y.to(dtype), z.to(dtype)
    third = n // 3
    z[:third] = -(x[:third] * y[:third])  # the product rounded to dtype
    # x = 1 + 2**-p, y = 1 + 2**-q: x * y = 1 + 2**-p + 2**-q + 2**-(p + q) sits just off a halfway point of 1
    mant = 24 if dtype == torch.float32 else 53
    x[third : 2 * third] = 1 + 2.0 ** -(mant - 1)
    y[third : 2 * third] = 0.5 + 2.0**-mant
    z[third : 2 * third] = torch.randint(-2, 3, (third,), generator=g).to(dtype)
    # x * y + z exactly halfway between two floats but for a term below float64's precision, the wrong side
    # of it by ties-to-even after two roundings: x = 2**-(m+1) (1 + 2**-(m-1)), y = 1 - 2**-(m-1),
    # z = 1 + 2**-(m-1), scaled by powers of 2 and negated at random
    k = slice(2 * third, 2 * third + 64)
    a = torch.randint(-20, 20, (64,), generator=g).to(torch.float64)
    b = torch.randint(-20, 20, (64,), generator=g).to(torch.float64)
    sign = torch.randint(0, 2, (64,), generator=g).to(torch.float64) * 2 - 1
    x[k] = (sign * 2.0**-mant * (1 + 2.0 ** -(mant - 1)) * torch.exp2(a)).to(dtype)
    y[k] = ((1 - 2.0 ** -(mant - 1)) * torch.exp2(b)).to(dtype)
    z[k] = (sign * (1 + 2.0 ** -(mant - 1)) * torch.exp2(a + b)).to(dtype)
    return x, y, z


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fma_rounds_once(seed, dtype):
    n = 300 if DEVICE == "cpu" and dtype == torch.float64 else 3000  # the float64 patch is per element
    x, y, z = fma_cases(dtype, n, seed)
    cases = zip(x.tolist(), y.tolist(), z.tolist())
    want = torch.tensor([rounded_once(a, b, c, dtype) for a, b, c in cases], dtype=dtype)
    assert not torch.equal(x * y + z, want), "no case where one rounding and two differ"
    x, y, z = (t.to(DEVICE) for t in (x, y, z))
    out = torch.empty_like(x)
    _fma_kernel[(triton.cdiv(n, 256),)](x, y, z, out, n, BLOCK=256)
    assert torch.equal(out.cpu(), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fma_edges(dtype):
    """Infinities, NaN, an exact zero's sign, overflow; and, in float32, a sum just below the overflow
    threshold whose float64 sum lands on it (rounds to the largest float32, not to infinity)."""
    inf, nan, big = float("inf"), float("nan"), torch.finfo(dtype).max
    rows = [(inf, 1.0, 1.0, inf), (1.0, inf, -inf, nan), (-1.0, 0.0, -0.0, -0.0), (big, 2.0, 0.0, inf)]
    rows.append((-big, 2.0, 0.0, -inf))
    if dtype == torch.float32:
        x = 2.0**103 * (1 + 2.0**-23)
        rows += [(x, 1 - 2.0**-23, big, big), (-x, 1 - 2.0**-23, -big, -big)]
    x, y, z, want = (torch.tensor(c, dtype=dtype) for c in zip(*rows))
    out = torch.empty_like(x, device=DEVICE)
    _fma_kernel[(1,)](x.to(DEVICE), y.to(DEVICE), z.to(DEVICE), out, len(rows), BLOCK=8)
    torch.testing.assert_close(out.cpu(), want, rtol=0, atol=0, equal_nan=True)
    numbers = ~want.isnan()
    assert torch.equal(out.cpu()[numbers].signbit(), want[numbers].signbit())  # -0.0 above


def test_float32_to_bfloat16_rounds_to_nearest_even(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4096, generator=g) * torch.exp2(torch.randint(-130, 120, (4096,), generator=g).float())
    # exactly halfway between two bfloat16s (ties to even both ways) and an ulp either side of halfway
    halfway = (torch.randint(0, 2**16, (512,), generator=g, dtype=torch.int32) << 16) | 0x8000
    halfway = halfway.view(torch.float32)
    edges = torch.tensor([float("inf"), -float("inf"), 3.4e38, -3.4e38, 1e-40, -1e-45, 0.0, -0.0])
    x = torch.cat([x, halfway, torch.nextafter(halfway, halfway * 2), torch.nextafter(halfway, halfway * 0), edges])
    x = x[torch.isfinite(x) | torch.isinf(x)]  # the random halfway bits include NaNs: compared apart below
    want = x.bfloat16()
    assert not torch.equal((x.view(torch.int32) >> 16 << 16).view(torch.float32).bfloat16(), want)  # truncation
    out = torch.empty(x.shape, dtype=torch.bfloat16, device=DEVICE)
    _to_bfloat16_kernel[(triton.cdiv(x.numel(), 512),)](x.to(DEVICE), out, x.numel(), BLOCK=512)
    assert torch.equal(out.cpu().view(torch.int16), want.view(torch.int16))


def test_nan_stays_nan_in_bfloat16():
    x = torch.tensor([float("nan"), -float("nan"), 1.0], device=DEVICE)
    out = torch.empty(3, dtype=torch.bfloat16, device=DEVICE)
    _to_bfloat16_kernel[(1,)](x, out, 3, BLOCK=4)
    assert out.isnan().tolist() == [True, True, False]


def test_exact_fma_rejects_other_dtypes():
    from fcn_kernels.triton._interpreter import exact_fma

    with pytest.raises(NotImplementedError, match="float16"):
        exact_fma(np.ones(2, np.float16), np.ones(2, np.float16), np.ones(2, np.float16))
