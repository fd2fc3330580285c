"""interpolate_logsumexp in Triton (docs/DESIGN.md §2.6): the statistics of interpolate_cross_entropy, the
per-pixel log-sum-exp and target score of F.interpolate(x, size=target's, mode="bilinear")'s scores, and their
gradient in x, without any tensor of the scores' size. The same schemas as the C++ ops, so that the one
autograd (fcn_kernels/_autograd/losses.py) serves both.

Forward: one program per BLOCK_H x BLOCK_W tile of one image's output; a loop over the classes computes each
class's score on the tile (4 taps, _tiles.bilinear_taps and bilinear_score: PyTorch's coordinates, blend order
and rounding to x's dtype) and keeps an online log-sum-exp (running maximum m and sum s of exp(v - m)), NaN
where a score is NaN or the maximum is infinite, as F.log_softmax; the target's score is picked on the way.

Backward: a gather, no atomics and no full-resolution tensor. A first launch writes the taps of every output
row and column (Ho + Wo entries, _taps_kernel); then one program per (image, block of BLOCK_C classes, tile of
input pixels): each input pixel (h, w) sums over the output pixels whose 2 x 2 taps include it, from a window
of KR x KC candidates that holds them all (_window_start, _window), each kept only if its taps hit (h, w), with
weight l_row * l_col and the score gradient recomputed from x: d = grad_lse * exp(v - lse) + grad_picked *
[c == target] (the target's term only at labelled pixels). Each grad_x element has one writer and a fixed
summation order: deterministic. Taps of weight 0 may fall outside the window (outputs whose source coordinate
is clamped at 0 reach input row or column 1 with weight 0): they add 0 to finite gradients, but a NaN or
infinite score gradient there does not spread to that pixel as it does through F.interpolate's backward.
"""

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .._autograd.losses import register_interpolate_logsumexp
from ._tiles import bilinear_score, bilinear_taps, bilinear_tile, channel
from .utils import (
    BILINEAR_CONFIGS,
    HW,
    acc_dtype,
    autotune,
    check_labels,
    check_plane_int32,
    config,
    configs,
    launch,
    needs_int64,
    partial_dtype,
    pow2_clamp,
    tile_grid,
)

BACKWARD_CONFIGS = configs(HW, (4, 2, 8, 8), (4, 2, 4, 16), (8, 2, 8, 16))
MAX_BLOCK_C = 16  # classes per backward program: the per-pixel maps are read once for this many


@triton.jit
def _lse_kernel(
    x_ptr,
    t_ptr,
    lse_ptr,
    picked_ptr,
    C,
    H,
    W,
    Ho,
    Wo,
    ignore_index,
    ALIGN: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    n, i, j, omask, ri0, ri1, rl0, rl1, ci0, ci1, cl0, cl1 = bilinear_tile(H, W, Ho, Wo, ALIGN, ACC, BLOCK_H, BLOCK_W)
    x_img = x_ptr + n * C * H * W
    pix = n * Ho * Wo + i * Wo + j
    t = tl.load(t_ptr + pix, mask=omask, other=0)
    m = tl.full([BLOCK_H, BLOCK_W], float("-inf"), ACC)
    s = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    picked = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    for c in range(0, C):
        plane = x_img + channel(0, 0, c, BIG) * H * W
        v = bilinear_score(plane, ri0, ri1, rl0, rl1, ci0, ci1, cl0, cl1, omask, W, ACC)
        m_new = tl.where(v > m, v, m)  # NaN never becomes the maximum: it reaches s instead
        alpha = tl.where(m == m_new, 1.0, tl.exp(m - m_new))  # 1 also while m is -inf
        term = tl.where(v == float("-inf"), 0.0, tl.exp(v - m_new))
        s = s * alpha + term
        m = m_new
        picked = tl.where(t == c, v, picked)
    finite = (m > float("-inf")) & (m < float("inf"))
    lse = tl.where(finite, tl.log(s) + m, float("nan"))
    picked = tl.where(t == ignore_index, 0.0, picked)
    tl.store(lse_ptr + pix, lse, mask=omask)
    tl.store(picked_ptr + pix, picked, mask=omask)


@triton.jit
def _taps_kernel(idx_ptr, lam_ptr, H, W, Ho, Wo, ALIGN: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    # the backward's tap table: the row taps of outputs 0..Ho-1, then the column taps of 0..Wo-1, each as
    # (i0, i1) in idx_ptr's two rows and (l0, l1) in lam_ptr's (stride Ho + Wo)
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    total = Ho + Wo
    rows = k < Ho
    i0, i1, l0, l1 = bilinear_taps(tl.where(rows, k, k - Ho), tl.where(rows, H, W), tl.where(rows, Ho, Wo), ALIGN, ACC)
    mask = k < total
    tl.store(idx_ptr + k, i0, mask=mask)
    tl.store(idx_ptr + total + k, i1, mask=mask)
    tl.store(lam_ptr + k, l0, mask=mask)
    tl.store(lam_ptr + total + k, l1, mask=mask)


@triton.jit
def _window_start(h, size_in, size_out, ALIGN: tl.constexpr):
    # The first output coordinate that may have input h among its taps. Output i's taps are floor(src) and
    # the next, src its source coordinate, so they include h only where h - 1 <= src < h + 1: i within
    # [a, a + 2 rho) with a = (h - 1/2) rho - 1/2, rho = out / in (align_corners: a = (h - 1) rho, rho =
    # (out - 1) / (in - 1)). floor(a) (a and src in float32: off by far less than 1) starts a window of
    # ceil(2 rho) + 3 outputs (_window) that holds them all; the exact taps then pick them.
    if ALIGN:
        rho = (size_out - 1).to(tl.float32) / tl.maximum(size_in - 1, 1).to(tl.float32)
        first = tl.floor((h - 1).to(tl.float32) * rho)
    else:
        rho = size_out.to(tl.float32) / size_in.to(tl.float32)
        first = tl.floor((h.to(tl.float32) - 0.5) * rho - 0.5)
    return tl.maximum(first.to(tl.int32), 0)


def _window(size_in, size_out, align_corners):
    """Candidates per input coordinate from _window_start, at most every output (all of them for a size-1
    input with align_corners, whose rho is unbounded)."""
    if align_corners and size_in == 1:
        return size_out
    num, den = (size_out - 1, size_in - 1) if align_corners else (size_out, size_in)
    return min(size_out, -(-2 * num // den) + 3)


@triton.jit
def _tap_weight(idx_ptr, lam_ptr, total, o, h, m):
    # output o's taps from the table and the weight with which they reach input h (both taps on h: both)
    i0 = tl.load(idx_ptr + o, mask=m, other=-1)
    i1 = tl.load(idx_ptr + total + o, mask=m, other=-1)
    l0 = tl.load(lam_ptr + o, mask=m, other=0.0)
    l1 = tl.load(lam_ptr + total + o, mask=m, other=0.0)
    reach = m & ((i0 == h) | (i1 == h))
    return i0, i1, l0, l1, tl.where(i0 == h, l0, 0.0) + tl.where(i1 == h, l1, 0.0), reach


@triton.jit
def _lse_backward_kernel(
    x_ptr,
    t_ptr,
    lse_ptr,
    ga_ptr,
    gb_ptr,
    idx_ptr,
    lam_ptr,
    gx_ptr,
    C,
    H,
    W,
    Ho,
    Wo,
    ignore_index,
    KR,
    KC,
    ALIGN: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    pid = tl.program_id(0)
    c_blocks = tl.cdiv(C, BLOCK_C)
    n = (pid // c_blocks).to(tl.int64)
    c = (pid % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)[:, None]  # [BLOCK_C, 1]
    offs = tl.arange(0, BLOCK_H * BLOCK_W)
    h = (tl.program_id(1) * BLOCK_H + offs // BLOCK_W)[None, :]  # [1, P]: the tile's input pixels
    w = (tl.program_id(2) * BLOCK_W + offs % BLOCK_W)[None, :]
    pmask = (h < H) & (w < W)
    cmask = c < C
    planes = x_ptr + n * C * H * W + channel(0, 0, c, BIG) * H * W
    first_i = _window_start(h, H, Ho, ALIGN)
    first_j = _window_start(w, W, Wo, ALIGN)
    total = Ho + Wo
    acc = tl.zeros([BLOCK_C, BLOCK_H * BLOCK_W], dtype=ACC)
    for kr in range(0, KR):
        i = first_i + kr
        ri0, ri1, rl0, rl1, wr, rmask = _tap_weight(idx_ptr, lam_ptr, total, i, h, pmask & (i < Ho))
        for kc in range(0, KC):
            j = first_j + kc
            ci0, ci1, cl0, cl1, wc, m = _tap_weight(idx_ptr + Ho, lam_ptr + Ho, total, j, w, rmask & (j < Wo))
            pix = n * Ho * Wo + i * Wo + j
            lse = tl.load(lse_ptr + pix, mask=m, other=0.0)
            ga = tl.load(ga_ptr + pix, mask=m, other=0.0)
            gb = tl.load(gb_ptr + pix, mask=m, other=0.0)
            t = tl.load(t_ptr + pix, mask=m, other=0)
            v = bilinear_score(planes, ri0, ri1, rl0, rl1, ci0, ci1, cl0, cl1, m & cmask, W, ACC)
            d = ga * tl.exp(v - lse) + tl.where((c == t) & (t != ignore_index), gb, 0.0)
            acc += tl.where(m, (wr * wc) * d, 0.0)
    gx = gx_ptr + n * C * H * W + channel(0, 0, c, BIG) * H * W
    tl.store(gx + h * W + w, acc.to(gx_ptr.dtype.element_ty), mask=cmask & pmask)


_taps = autotune([config(4, BLOCK=256)], key=[])(_taps_kernel)  # one config: autotuned for the AOT check
_lse = autotune(BILINEAR_CONFIGS, key=["C", "Ho", "Wo"])(_lse_kernel)
_lse_backward = autotune(BACKWARD_CONFIGS, key=["C", "H", "W", "KR", "KC"])(_lse_backward_kernel)

AUTOTUNED = {
    "ice_lse": _lse,
    "ice_lse_backward": _lse_backward,
    "ice_taps": _taps,
}  # for the AOT check (fcn_kernels.triton.aot)


def _check(op, x, target):
    if x.dim() != 4 or not x.is_floating_point():
        raise RuntimeError(f"{op}: x must be a 4-D floating tensor (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if target.dtype != torch.int64 or target.dim() != 3 or target.shape[0] != x.shape[0]:
        raise RuntimeError(
            f"{op}: target must be int64 (N, Ho, Wo) with N = {x.shape[0]}, got {target.dtype} {tuple(target.shape)}"
        )
    if min(x.shape[1:]) < 1 or min(target.shape[1:]) < 1:
        raise RuntimeError(f"{op}: x {tuple(x.shape)} and the output size {tuple(target.shape[1:])} must be >= 1")
    check_plane_int32(op, x.shape, target.shape)


@triton_op("fcn_kernels::interpolate_logsumexp_triton", mutates_args={})
def interpolate_logsumexp_triton(
    x: torch.Tensor, target: torch.Tensor, align_corners: bool, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    _check("interpolate_logsumexp (triton)", x, target)
    check_labels("interpolate_logsumexp", target, x.shape[1], ignore_index)
    N, C, H, W = x.shape
    _, Ho, Wo = target.shape
    lse = torch.empty((N, Ho, Wo), device=x.device, dtype=partial_dtype(x.dtype))
    picked = torch.empty_like(lse)
    if lse.numel() == 0:
        return lse, picked
    x, target = x.contiguous(), target.contiguous()
    flags = dict(ALIGN=align_corners, ACC=acc_dtype(x.dtype), BIG=needs_int64(x))
    launch(_lse, tile_grid(N, Ho, Wo), x, target, lse, picked, C, H, W, Ho, Wo, ignore_index, **flags)
    return lse, picked


@triton_op("fcn_kernels::interpolate_logsumexp_backward_triton", mutates_args={})
def interpolate_logsumexp_backward_triton(
    grad_lse: torch.Tensor,
    grad_picked: torch.Tensor,
    x: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    align_corners: bool,
    ignore_index: int,
) -> torch.Tensor:
    op = "interpolate_logsumexp_backward (triton)"
    _check(op, x, target)
    for name, t in (("grad_lse", grad_lse), ("grad_picked", grad_picked), ("lse", lse)):
        if t.shape != target.shape or t.dtype != partial_dtype(x.dtype):
            raise RuntimeError(
                f"{op}: {name} must be {partial_dtype(x.dtype)} of the target's shape {tuple(target.shape)}, "
                f"got {t.dtype} {tuple(t.shape)}"
            )
    N, C, H, W = x.shape
    _, Ho, Wo = target.shape
    grad_x = torch.empty(x.shape, device=x.device, dtype=x.dtype)  # every element written
    if grad_x.numel() == 0:
        return grad_x
    x, target = x.contiguous(), target.contiguous()
    block_c = pow2_clamp(C, 2, MAX_BLOCK_C)
    idx = torch.empty((2, Ho + Wo), device=x.device, dtype=torch.int32)
    lam = torch.empty((2, Ho + Wo), device=x.device, dtype=partial_dtype(x.dtype))
    acc = acc_dtype(x.dtype)
    taps = Ho + Wo
    launch(_taps, lambda m: (triton.cdiv(taps, m["BLOCK"]),), idx, lam, H, W, Ho, Wo, ALIGN=align_corners, ACC=acc)
    stats = (lse.contiguous(), grad_lse.contiguous(), grad_picked.contiguous(), idx, lam, grad_x)
    sizes = (C, H, W, Ho, Wo, ignore_index, _window(H, Ho, align_corners), _window(W, Wo, align_corners))
    flags = dict(ALIGN=align_corners, ACC=acc, BIG=needs_int64(x), BLOCK_C=block_c)
    launch(_lse_backward, tile_grid(N * triton.cdiv(C, block_c), H, W), x, target, *stats, *sizes, **flags)
    return grad_x


register_interpolate_logsumexp(
    torch.ops.fcn_kernels.interpolate_logsumexp_triton.default,
    torch.ops.fcn_kernels.interpolate_logsumexp_backward_triton.default,
)


def interpolate_logsumexp(x, target, align_corners, ignore_index):
    """Entry point of fcn_kernels.interpolate_cross_entropy for backend "triton" (arguments validated, target
    int64): (lse, picked), differentiable in x."""
    return torch.ops.fcn_kernels.interpolate_logsumexp_triton(x, target, align_corners, ignore_index)
