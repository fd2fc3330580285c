"""Running the kernels under Triton's interpreter (TRITON_INTERPRET=1) with the versions we support."""

import math
import os
from fractions import Fraction

import numpy as np
import torch
import triton.language as tl


def _interpreter():
    """triton.runtime.interpreter where TRITON_INTERPRET=1 and triton has it, else None."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return None
    try:
        from triton.runtime import interpreter
    except ImportError:
        return None
    return interpreter


def patch_interpreter():
    """Make the interpreter compute what the GPU computes where our kernels rely on it (each fix once):
    the scalar indices of NumPy >= 2.4, float32 -> bfloat16 rounding and tl.fma."""
    interpreter = _interpreter()
    if interpreter is None:
        return
    _fix_scalar_index(interpreter)
    builder = getattr(interpreter, "InterpreterBuilder", None)
    if builder is None or getattr(builder, "_fcn_fixed", False):
        return
    _fix_bfloat16_rounding(builder)
    _fix_fma(builder)
    builder._fcn_fixed = True


def _fix_scalar_index(interpreter):
    """triton 3.6's interpreter turns scalar tensors into ints with int(ndarray of shape (1,)), which
    NumPy >= 2.4 rejects ("only 0-dimensional arrays can be converted to Python scalars"): every
    `range(...)` over a runtime scalar fails. triton-lang/triton#9171, fixed upstream by #9172 (squeeze
    first); until the pinned triton has it, apply the same one-line fix here."""
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_fcn_fixed", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._fcn_fixed = True
    interpreter._patch_lang_tensor = patched


def bfloat16_bits(values):
    """float32 values (NumPy) -> their bfloat16 bits (uint16), rounded to nearest even as the GPU's
    conversion and c10::BFloat16 round; NaN -> 0x7FC0 (c10's)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(values), np.uint16(0x7FC0), rounded)


def _fix_bfloat16_rounding(builder):
    """The interpreter truncates float32 -> bfloat16 (`x.to(tl.bfloat16)`: its cast passes no rounding
    mode to its bit converter), where the GPU rounds to nearest even: a score one float32 ulp either side
    of a bfloat16 tie lands on another bfloat16, and the labels of a comparison on rounded scores differ
    from the C++ kernels'. Round as the GPU does."""
    original = builder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            return interpreter_tensor(bfloat16_bits(src.data), dst_type.scalar)
        return original(self, src, dst_type)

    builder.cast_impl = cast_impl


def _fma_float32(x, y, z):
    """Float32 x * y + z rounded once: the product is exact in float64 and the sum s + e exact (TwoSum);
    s rounds to float32 as s + e does unless s lies exactly halfway between two float32s (the overflow
    threshold included), where e's sign decides (a halfway point is a float64, so e never carries s across
    one). Non-finite operands: x * y + z."""
    with np.errstate(invalid="ignore", over="ignore"):
        p = x.astype(np.float64) * y.astype(np.float64)
        z = z.astype(np.float64)
        s = p + z
        t = s - p
        e = (p - (s - t)) + (z - t)
        r = s.astype(np.float32)
        toward_s = np.where(s > r, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
        other = np.nextafter(r, toward_s)
        halfway = (r.astype(np.float64) != s) & ((r.astype(np.float64) + other.astype(np.float64)) / 2 == s)
        wrong_side = halfway & (e != 0) & ((e > 0) == (other > r))
        big = float(np.finfo(np.float32).max)
        overflow_tie = np.isinf(r) & (np.abs(s) == big + 2.0**103) & (e * s < 0)  # just below: the largest
        r = np.where(wrong_side, other, r)
        return np.where(overflow_tie, np.copysign(np.float32(big), s), r).astype(np.float32)


def _fma_exact(x, y, z):
    """x * y + z rounded once, in rationals (one element at a time: keep the arrays small)."""
    with np.errstate(invalid="ignore", over="ignore"):
        out = (x * y + z).astype(z.dtype)  # non-finite operands, and the sign of an exact zero
    for k in np.ndindex(out.shape):
        a, b, c = float(x[k]), float(y[k]), float(z[k])
        if math.isfinite(a) and math.isfinite(b) and math.isfinite(c):
            q = Fraction(a) * Fraction(b) + Fraction(c)
            if q == 0:
                continue
            try:
                out[k] = float(q)  # int / int in CPython: rounded once, to nearest even
            except OverflowError:
                out[k] = math.inf if q > 0 else -math.inf
    return out


def exact_fma(x, y, z):
    """x * y + z rounded once, elementwise over NumPy arrays of one float dtype (float32 or float64)."""
    x, y, z = np.broadcast_arrays(*(np.asarray(a) for a in (x, y, z)))
    if z.dtype == np.float32:
        return _fma_float32(x, y, z)
    if z.dtype == np.float64:
        return _fma_exact(x, y, z)
    raise NotImplementedError(f"tl.fma in the interpreter: {z.dtype} (float32 and float64 only)")


def _fix_fma(builder):
    """tl.fma in the interpreter is x * y + z in NumPy, two roundings; on the GPU it is one (the fused
    coordinates and scores of _tiles.bilinear_taps and bilinear_score depend on it). Round once."""

    def create_fma(self, x, y, z):
        return interpreter_tensor(exact_fma(x.data, y.data, z.data), z.dtype.scalar)

    builder.create_fma = create_fma


def interpreter_tensor(data, dtype):
    from triton.runtime.interpreter import TensorHandle

    return TensorHandle(data, dtype)


def wrap_triton(kernel):
    """torch.library.wrap_triton, except under the interpreter, where the kernel launches as is: what torch
    2.14 does itself, while torch 2.11 wraps an interpreted autotuner in a wrapper that fails to launch it
    outside a triton_op's body (AttributeError: 'function' object has no attribute 'fn')."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return kernel
    return torch.library.wrap_triton(kernel)
