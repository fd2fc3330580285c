"""rarefied_conv2d in Triton (docs/DESIGN.md §2): kernels, launchers, `torch.library.triton_op` registration and
autograd, in one file (as fcn_kernels/triton/upsample_skip.py).

The op is F.conv2d(x, w, b, stride=1, padding=p, dilation=r, groups=g). Index math (csrc/index/
rarefied_conv2d.h): along one axis, output o reads input i = o - p + k * r through tap k; positions outside
[0, in) are the zero padding. Only the K real taps are visited (the rarefied filter, zeros between the taps,
is never formed).

Kernels (every accumulation in float32, float64 for float64 inputs; one rounding to the output dtype):
  forward    _fwd_dw_kernel      one input channel per group (depthwise, channel multiplier allowed): a
                                 BLOCK_H x BLOCK_W tile of one output plane per program, row-contiguous
                                 (coalesced) shifted loads per tap, bias added before the one store.
             _fwd_dense_kernel   implicit GEMM: a tile of output positions x BLOCK_CO output channels per
                                 program, reduced over (tap, input-channel chunk): tl.dot when both
                                 per-group channel counts are >= 8 (not float64), else an FMA loop.
  grad x     _bwd_input_dw_kernel / _bwd_input_dense_kernel: the transposed correlation
             gx[i] = sum_{co, k} go[i + p - k * r] w[co, k], channels as above.
  grad w     _bwd_weight_dw_kernel: per (output channel, kh), go rows read once per row and x gathered at the
             Kw shifted columns, a [Kw, BLOCK_Q] accumulator reduced at the end; _bwd_weight_dense_kernel:
             per tap, a [Cin/g, Cout/g] GEMM over the output positions that tap reads inside the input.
             Both write per-split partial sums that a fixed-order sum reduces: no atomics, so the same bits
             on every call within a process; the split and tile shapes come from the autotuned config
             (FCN_KERNELS_TRITON_AUTOTUNE=0 pins it: the same bits in every process on one GPU model, never
             across GPU models; docs/DESIGN.md §4.2).
  grad bias  bias_grad.py's kernel (both ops' bias gradient: per-tile partial sums, fixed-order sum).

The dense kernels read the weight as wk = (groups, Kh, Kw, Cin/g, Cout/g) (one permuted copy per call, so
that the weight tiles load coalesced along the output channels).

Large tensors: batch and plane offsets are int64 always; channel offsets inside one image become int64
(constexpr BIG) when an image holds 2**31 elements or more.
"""

from typing import List, Optional

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .._autograd import register_rarefied_conv2d
from ._tiles import channel, group_tile, plane_tile, store_channels, tap_chunk, weight_task
from .bias_grad import backward_bias_skip_triton
from .utils import (
    BWD_WEIGHT_DENSE_FMA_CONFIGS,
    HW,
    acc_dtype,
    autotune,
    check_plane_int32,
    configs,
    dense_constexprs,
    dot_operand,
    dot_precision,
    group_tile_grid,
    launch,
    partial_dtype,
    pow2_clamp,
    splits,
    tile_grid,
    use_dot,
)

# ---------------------------------------------------------------------------------------------------------
# autotune configs (only the first runs under the interpreter: utils.autotune). The depthwise kernels are memory-bound:
# 1-4K elements per program. The dense kernels' channel blocks are chosen by the launcher
# (_channel_blocks); the configs tile the positions. Tiles stay modest: the AOT check holds every config to
# no spills on sm_80 and sm_90 under triton 3.6 and 3.8.
# ---------------------------------------------------------------------------------------------------------
# Rows: (num_warps, num_stages, BLOCK_H, BLOCK_W) (BLOCK_Q), utils.configs. FWD_DENSE_DOT's (4, 2, 4, 32):
# (4 warps, 3 stages) spills a few bytes on sm_80 (TF32) / sm_90. FWD_DENSE_FMA's (2, 2, 4, 16): >= 32
# positions per warp, as fewer (4 warps, 4x16) spills a few bytes.
FWD_DW_CONFIGS = configs(HW, (4, 2, 4, 32), (4, 2, 4, 64), (4, 2, 8, 64), (8, 2, 8, 128), (8, 2, 16, 64))
FWD_DENSE_DOT_CONFIGS = configs(HW, (4, 2, 2, 8), (4, 2, 4, 16), (4, 3, 2, 32), (4, 2, 4, 32), (8, 3, 8, 16))
FWD_DENSE_FMA_CONFIGS = configs(HW, (2, 2, 4, 16), (4, 2, 8, 16), (8, 2, 8, 32))
BWD_INPUT_DW_CONFIGS = configs(HW, (4, 2, 4, 32), (4, 2, 4, 64), (4, 2, 8, 64), (8, 2, 8, 128))
# the dense input gradient is the forward's loop over (tap, channel chunk) on the input plane
BWD_INPUT_DENSE_DOT_CONFIGS = FWD_DENSE_DOT_CONFIGS
BWD_INPUT_DENSE_FMA_CONFIGS = FWD_DENSE_FMA_CONFIGS
BWD_WEIGHT_DW_CONFIGS = configs(("BLOCK_Q",), (4, 2, 32), (4, 2, 64), (4, 2, 128), (8, 2, 256))
# positions are the dot's K: small K tiles keep the operands in registers
BWD_WEIGHT_DENSE_DOT_CONFIGS = configs(HW, (4, 2, 1, 16), (4, 2, 1, 32), (4, 2, 2, 16))


# ---------------------------------------------------------------------------------------------------------
# forward: y[n, co, oh, ow] = b[co] + sum_{ci in group, kh, kw} x[n, ci, oh - ph + kh*rh, ow - pw + kw*rw]
#                                                               * w[co, ci - g*cin_g, kh, kw]
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _read(o, k, r, p, size, mask):
    # the input o - p + k * r that output o reads through tap k, and mask where it is in [0, size)
    i = o - p + k * r
    return i, mask & (i >= 0) & (i < size)


@triton.jit
def _reached(i, k, r, p, size, mask):
    # the output i + p - k * r that reads input i through tap k, and mask where it is in [0, size)
    o = i + p - k * r
    return o, mask & (o >= 0) & (o < size)


@triton.jit
def _fwd_dw_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    Cin,
    Cout,
    cout_g,
    H,
    W,
    Kh,
    Kw,
    rh,
    rw,
    ph,
    pw,
    Ho,
    Wo,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    plane = tl.program_id(0)  # n * Cout + co
    n = plane // Cout
    co = plane % Cout
    ci = co // cout_g  # one input channel per group
    oh, ow, omask = plane_tile(Ho, Wo, BLOCK_H, BLOCK_W)
    x_plane = x_ptr + (n * Cin + ci).to(tl.int64) * H * W
    w_chan = w_ptr + co * Kh * Kw
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    for kh in range(0, Kh):
        ih, mh = _read(oh, kh, rh, ph, H, omask)
        for kw in range(0, Kw):
            iw, m = _read(ow, kw, rw, pw, W, mh)
            xv = tl.load(x_plane + ih * W + iw, mask=m, other=0.0).to(ACC)
            acc += xv * tl.load(w_chan + kh * Kw + kw).to(ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + co).to(ACC)
    out_plane = out_ptr + plane.to(tl.int64) * Ho * Wo
    tl.store(out_plane + oh * Wo + ow, acc.to(out_ptr.dtype.element_ty), mask=omask)


@triton.jit
def _fwd_dense_kernel(
    x_ptr,
    wk_ptr,
    b_ptr,
    out_ptr,
    Cin,
    Cout,
    groups,
    cin_g,
    cout_g,
    H,
    W,
    Kh,
    Kw,
    rh,
    rw,
    ph,
    pw,
    Ho,
    Wo,
    HAS_BIAS: tl.constexpr,
    USE_DOT: tl.constexpr,
    DOT_PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_CI: tl.constexpr,
    BLOCK_CO: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    # output-channel block on grid axis 1
    n, g, oh, ow, o_ok = group_tile(tl.program_id(0), groups, Ho, Wo, BLOCK_H, BLOCK_W)
    P: tl.constexpr = BLOCK_H * BLOCK_W
    co = tl.program_id(1) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    co_ok = co < cout_g
    x_img = x_ptr + n.to(tl.int64) * Cin * H * W
    wk_grp = wk_ptr + g * Kh * Kw * cin_g * cout_g
    acc = tl.zeros([P, BLOCK_CO], dtype=ACC)
    if USE_DOT:
        # one pipelined loop over (tap, input-channel chunk)
        n_chunks = tl.cdiv(cin_g, BLOCK_CI)
        for kk in range(0, Kh * Kw * n_chunks):
            tap, kh, kw, ci = tap_chunk(kk, n_chunks, Kw, BLOCK_CI)
            ih = oh - ph + kh * rh
            iw = ow - pw + kw * rw
            m = o_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            ci_ok = ci < cin_g
            ch = channel(g, cin_g, ci, BIG)
            xt = tl.load(
                x_img + ch[None, :] * H * W + (ih * W + iw)[:, None], mask=m[:, None] & ci_ok[None, :], other=0.0
            )
            wt = tl.load(
                wk_grp + (tap * cin_g + ci)[:, None] * cout_g + co[None, :],
                mask=ci_ok[:, None] & co_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(dot_operand(xt, DOT_F32), dot_operand(wt, DOT_F32), acc, input_precision=DOT_PREC)
    else:
        for kh in range(0, Kh):
            ih, mh = _read(oh, kh, rh, ph, H, o_ok)
            for kw in range(0, Kw):
                iw, m = _read(ow, kw, rw, pw, W, mh)
                x_tap = x_img + ih * W + iw
                w_tap = wk_grp + (kh * Kw + kw) * cin_g * cout_g + co
                for ci in range(0, cin_g):
                    ch = channel(g, cin_g, ci, BIG)
                    xv = tl.load(x_tap + ch * H * W, mask=m, other=0.0).to(ACC)
                    wv = tl.load(w_tap + ci * cout_g, mask=co_ok, other=0.0).to(ACC)
                    acc += xv[:, None] * wv[None, :]
    co_glob = g * cout_g + co
    if HAS_BIAS:
        acc += tl.load(b_ptr + co_glob, mask=co_ok, other=0.0).to(ACC)[None, :]
    store_channels(out_ptr, n, Cout, co_glob, oh, ow, Ho, Wo, acc, o_ok, co_ok, BIG)


# ---------------------------------------------------------------------------------------------------------
# grad x: gx[n, ci, i, j] = sum_{co in group, kh, kw} go[n, co, i + ph - kh*rh, j + pw - kw*rw] w[co, ci, kh, kw]
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _bwd_input_dw_kernel(
    go_ptr,
    w_ptr,
    gx_ptr,
    Cin,
    Cout,
    cout_g,
    H,
    W,
    Kh,
    Kw,
    rh,
    rw,
    ph,
    pw,
    Ho,
    Wo,
    ACC: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    plane = tl.program_id(0)  # n * Cin + ci
    n = plane // Cin
    ci = plane % Cin
    ih, iw, in_ok = plane_tile(H, W, BLOCK_H, BLOCK_W)
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    for mult in range(0, cout_g):  # the output channels of this input channel's group
        co = ci * cout_g + mult
        go_plane = go_ptr + (n * Cout + co).to(tl.int64) * Ho * Wo
        w_chan = w_ptr + co * Kh * Kw
        for kh in range(0, Kh):
            oh, mh = _reached(ih, kh, rh, ph, Ho, in_ok)
            for kw in range(0, Kw):
                ow, m = _reached(iw, kw, rw, pw, Wo, mh)
                gv = tl.load(go_plane + oh * Wo + ow, mask=m, other=0.0).to(ACC)
                acc += gv * tl.load(w_chan + kh * Kw + kw).to(ACC)
    gx_plane = gx_ptr + plane.to(tl.int64) * H * W
    tl.store(gx_plane + ih * W + iw, acc.to(gx_ptr.dtype.element_ty), mask=in_ok)


@triton.jit
def _bwd_input_dense_kernel(
    go_ptr,
    wk_ptr,
    gx_ptr,
    Cin,
    Cout,
    groups,
    cin_g,
    cout_g,
    H,
    W,
    Kh,
    Kw,
    rh,
    rw,
    ph,
    pw,
    Ho,
    Wo,
    USE_DOT: tl.constexpr,
    DOT_PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_CI: tl.constexpr,
    BLOCK_CO: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    n, g, ih, iw, in_ok = group_tile(tl.program_id(0), groups, H, W, BLOCK_H, BLOCK_W)
    P: tl.constexpr = BLOCK_H * BLOCK_W
    ci = tl.program_id(1) * BLOCK_CI + tl.arange(0, BLOCK_CI)
    ci_ok = ci < cin_g
    ci_glob = g * cin_g + ci
    go_img = go_ptr + n.to(tl.int64) * Cout * Ho * Wo
    wk_grp = wk_ptr + g * Kh * Kw * cin_g * cout_g
    acc = tl.zeros([P, BLOCK_CI], dtype=ACC)
    if USE_DOT:
        # one pipelined loop over (tap, output-channel chunk)
        n_chunks = tl.cdiv(cout_g, BLOCK_CO)
        for kk in range(0, Kh * Kw * n_chunks):
            tap, kh, kw, co = tap_chunk(kk, n_chunks, Kw, BLOCK_CO)
            oh = ih + ph - kh * rh
            ow = iw + pw - kw * rw
            m = in_ok & (oh >= 0) & (oh < Ho) & (ow >= 0) & (ow < Wo)
            co_ok = co < cout_g
            ch = channel(g, cout_g, co, BIG)
            got = tl.load(
                go_img + ch[None, :] * Ho * Wo + (oh * Wo + ow)[:, None], mask=m[:, None] & co_ok[None, :], other=0.0
            )
            wt = tl.load(
                wk_grp + (tap * cin_g + ci[None, :]) * cout_g + co[:, None],
                mask=co_ok[:, None] & ci_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(dot_operand(got, DOT_F32), dot_operand(wt, DOT_F32), acc, input_precision=DOT_PREC)
    else:
        for kh in range(0, Kh):
            oh, mh = _reached(ih, kh, rh, ph, Ho, in_ok)
            for kw in range(0, Kw):
                ow, m = _reached(iw, kw, rw, pw, Wo, mh)
                go_tap = go_img + oh * Wo + ow
                w_tap = wk_grp + (kh * Kw + kw) * cin_g * cout_g + ci * cout_g
                for co in range(0, cout_g):
                    ch = channel(g, cout_g, co, BIG)
                    gv = tl.load(go_tap + ch * Ho * Wo, mask=m, other=0.0).to(ACC)
                    wv = tl.load(w_tap + co, mask=ci_ok, other=0.0).to(ACC)
                    acc += gv[:, None] * wv[None, :]
    store_channels(gx_ptr, n, Cin, ci_glob, ih, iw, H, W, acc, in_ok, ci_ok, BIG)


# ---------------------------------------------------------------------------------------------------------
# grad w: gw[co, ci, kh, kw] = sum_{n, oh, ow} go[n, co, oh, ow] x[n, ci, oh - ph + kh*rh, ow - pw + kw*rw],
# (oh, ow) over the outputs whose tap (kh, kw) reads a real input (_tap_lo / _tap_hi: outputs_for_tap).
# Partial sums per split go to part[split, ...] in the weight's layout; the launcher sums them in a fixed
# order.
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _tap_lo(k, r, p):
    return tl.maximum(p - k * r, 0)


@triton.jit
def _tap_hi(k, r, p, n_in, n_out):
    return tl.minimum(n_out, n_in + p - k * r)


@triton.jit
def _bwd_weight_dw_kernel(
    go_ptr,
    x_ptr,
    part_ptr,
    N,
    Cin,
    Cout,
    cout_g,
    H,
    W,
    Kh,
    Kw,
    rh,
    rw,
    ph,
    pw,
    Ho,
    Wo,
    SPLIT,
    KWP: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    # One (output channel, kh) and every SPLIT-th output row of the tap's window. The go row is read once
    # per chunk of columns; x is gathered at the Kw shifted columns (the same input row, cached) into a
    # [KWP, BLOCK_Q] accumulator that one reduction per kw turns into w[co, 0, kh, kw].
    task = tl.program_id(0)  # co * Kh + kh
    split = tl.program_id(1)
    co = task // Kh
    kh = task % Kh
    ci = co // cout_g
    oh_lo = _tap_lo(kh, rh, ph)
    rows = tl.maximum(_tap_hi(kh, rh, ph, H, Ho) - oh_lo, 0)
    kw = tl.arange(0, KWP)[:, None]
    kw_ok = kw < Kw
    q = tl.arange(0, BLOCK_Q)[None, :]
    acc = tl.zeros([KWP, BLOCK_Q], dtype=ACC)
    for t in range(split, N * rows, SPLIT):
        n = t // rows
        oh = oh_lo + t % rows
        go_row = go_ptr + (n * Cout + co).to(tl.int64) * Ho * Wo + oh * Wo
        x_row = x_ptr + (n * Cin + ci).to(tl.int64) * H * W + (oh - ph + kh * rh) * W
        for j0 in range(0, Wo, BLOCK_Q):
            ow = j0 + q
            o_ok = ow < Wo
            gv = tl.load(go_row + ow, mask=o_ok, other=0.0).to(ACC)
            iw = ow - pw + kw * rw
            m = o_ok & kw_ok & (iw >= 0) & (iw < W)
            xv = tl.load(x_row + iw, mask=m, other=0.0).to(ACC)
            acc += gv * xv
    tot = tl.sum(acc, axis=1)  # [KWP]
    kw1 = tl.arange(0, KWP)
    out = part_ptr + split.to(tl.int64) * Cout * Kh * Kw + task * Kw
    tl.store(out + kw1, tot.to(part_ptr.dtype.element_ty), mask=kw1 < Kw)


@triton.jit
def _bwd_weight_dense_kernel(
    go_ptr,
    x_ptr,
    part_ptr,
    N,
    Cin,
    Cout,
    groups,
    cin_g,
    cout_g,
    H,
    W,
    Kh,
    Kw,
    rh,
    rw,
    ph,
    pw,
    Ho,
    Wo,
    SPLIT,
    USE_DOT: tl.constexpr,
    DOT_PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_CI: tl.constexpr,
    BLOCK_CO: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    split = tl.program_id(1)
    g, tap, ci, co = weight_task(groups, cin_g, cout_g, BLOCK_CI, BLOCK_CO)
    kh = tap // Kw
    kw = tap % Kw
    oh_lo = _tap_lo(kh, rh, ph)
    oh_hi = _tap_hi(kh, rh, ph, H, Ho)
    ow_lo = _tap_lo(kw, rw, pw)
    ow_hi = _tap_hi(kw, rw, pw, W, Wo)
    n_rt = tl.cdiv(tl.maximum(oh_hi - oh_lo, 0), BLOCK_H)
    ci_ok = ci < cin_g
    co_ok = co < cout_g
    xch = channel(g, cin_g, ci, BIG)
    gch = channel(g, cout_g, co, BIG)
    shift = (kh * rh - ph) * W + kw * rw - pw  # x position of output (oh, ow) through this tap, minus oh*W + ow
    P: tl.constexpr = BLOCK_H * BLOCK_W
    offs = tl.arange(0, P)
    acc = tl.zeros([BLOCK_CI, BLOCK_CO], dtype=ACC)
    for t in range(split, N * n_rt, SPLIT):
        n = t // n_rt
        oh = oh_lo + (t % n_rt) * BLOCK_H + offs // BLOCK_W
        x_img = x_ptr + n.to(tl.int64) * Cin * H * W
        go_img = go_ptr + n.to(tl.int64) * Cout * Ho * Wo
        for w0 in range(ow_lo, ow_hi, BLOCK_W):
            ow = w0 + offs % BLOCK_W
            m = (oh < oh_hi) & (ow < ow_hi)
            xt = tl.load(
                x_img + xch[:, None] * H * W + (oh * W + ow + shift)[None, :],
                mask=ci_ok[:, None] & m[None, :],
                other=0.0,
            )
            gt = tl.load(
                go_img + gch[None, :] * Ho * Wo + (oh * Wo + ow)[:, None], mask=m[:, None] & co_ok[None, :], other=0.0
            )
            if USE_DOT:
                acc = tl.dot(dot_operand(xt, DOT_F32), dot_operand(gt, DOT_F32), acc, input_precision=DOT_PREC)
            else:
                acc += tl.sum(xt.to(ACC)[:, :, None] * gt.to(ACC)[None, :, :], axis=1)
    w_idx = ((g * cout_g + co[None, :]) * cin_g + ci[:, None]) * Kh * Kw + tap
    out = part_ptr + split.to(tl.int64) * Cout * cin_g * Kh * Kw
    tl.store(out + w_idx, acc.to(part_ptr.dtype.element_ty), mask=ci_ok[:, None] & co_ok[None, :])


_DENSE_KEY = ["cin_g", "cout_g", "H", "W", "Kh", "Kw", "rh", "rw"]
_fwd_dw = autotune(FWD_DW_CONFIGS, key=["Ho", "Wo", "Kh", "Kw"])(_fwd_dw_kernel)
_fwd_dense_dot = autotune(FWD_DENSE_DOT_CONFIGS, key=_DENSE_KEY)(_fwd_dense_kernel)
_fwd_dense_fma = autotune(FWD_DENSE_FMA_CONFIGS, key=_DENSE_KEY)(_fwd_dense_kernel)
_bwd_input_dw = autotune(BWD_INPUT_DW_CONFIGS, key=["H", "W", "Kh", "Kw", "cout_g"])(_bwd_input_dw_kernel)
_bwd_input_dense_dot = autotune(BWD_INPUT_DENSE_DOT_CONFIGS, key=_DENSE_KEY)(_bwd_input_dense_kernel)
_bwd_input_dense_fma = autotune(BWD_INPUT_DENSE_FMA_CONFIGS, key=_DENSE_KEY)(_bwd_input_dense_kernel)
_bwd_weight_dw = autotune(BWD_WEIGHT_DW_CONFIGS, key=["Wo", "Kw"])(_bwd_weight_dw_kernel)
_bwd_weight_dense_dot = autotune(BWD_WEIGHT_DENSE_DOT_CONFIGS, key=_DENSE_KEY)(_bwd_weight_dense_kernel)
_bwd_weight_dense_fma = autotune(BWD_WEIGHT_DENSE_FMA_CONFIGS, key=_DENSE_KEY)(_bwd_weight_dense_kernel)

# (name, autotuned kernel) for every kernel above: the AOT check (fcn_kernels.triton.aot) compiles each
# with each of its configs.
AUTOTUNED = {
    "fwd_dw": _fwd_dw,
    "fwd_dense_dot": _fwd_dense_dot,
    "fwd_dense_fma": _fwd_dense_fma,
    "bwd_input_dw": _bwd_input_dw,
    "bwd_input_dense_dot": _bwd_input_dense_dot,
    "bwd_input_dense_fma": _bwd_input_dense_fma,
    "bwd_weight_dw": _bwd_weight_dw,
    "bwd_weight_dense_dot": _bwd_weight_dense_dot,
    "bwd_weight_dense_fma": _bwd_weight_dense_fma,
}


# ---------------------------------------------------------------------------------------------------------
# launchers (plain functions on tensors; importable and callable without the op registration). Arguments:
# rarefaction and padding as pairs (rows, cols), groups an int, already validated.
# ---------------------------------------------------------------------------------------------------------
# Largest channel blocks of the dense kernels, (input, output) channels per program and tl.dot step:
# tensor-core dots (bfloat16, float16, TF32); float32 "ieee" dots, which Triton emulates with FMAs in
# registers (larger blocks spill on sm_80 under triton 3.8); the FMA loops.
DOT_MAX_CI, DOT_MAX_CO = 32, 64
IEEE_MAX_CI, IEEE_MAX_CO = 16, 32
FMA_MAX_C = 16


def _channel_blocks(cin_g, cout_g, dot, prec="ieee", dtype=torch.float32):
    if dot:  # [16, 16] is tl.dot's smallest tile
        ieee = dtype == torch.float32 and prec == "ieee"
        ci_max, co_max = (IEEE_MAX_CI, IEEE_MAX_CO) if ieee else (DOT_MAX_CI, DOT_MAX_CO)
        return pow2_clamp(cin_g, 16, ci_max), pow2_clamp(cout_g, 16, co_max)
    return pow2_clamp(cin_g, 1, FMA_MAX_C), pow2_clamp(cout_g, 1, FMA_MAX_C)


def _output_hw(H, W, Kh, Kw, rh, rw, ph, pw):
    return H + 2 * ph - (Kh - 1) * rh, W + 2 * pw - (Kw - 1) * rw


def _tap_major(weight, groups):
    """(Cout, Cin/g, Kh, Kw) -> contiguous (groups, Kh, Kw, Cin/g, Cout/g): the dense kernels' layout."""
    cout, cin_g, kh, kw = weight.shape
    return weight.view(groups, cout // groups, cin_g, kh, kw).permute(0, 3, 4, 2, 1).contiguous()


def _geometry(x_shape, weight_shape, groups, rarefaction, padding, out_hw=None):
    """(Cin, Cout, groups, cin_g, cout_g) and (H, W, Kh, Kw, rh, rw, ph, pw, Ho, Wo): the kernels' argument
    groups; out_hw None: the forward's output size."""
    (_, Cin, H, W), (Cout, cin_g, Kh, Kw) = x_shape, weight_shape
    geom = (H, W, Kh, Kw, *rarefaction, *padding)
    return (Cin, Cout, groups, cin_g, Cout // groups), geom + tuple(out_hw or _output_hw(*geom))


def forward(x, weight, bias, rarefaction, padding, groups):
    chans, geom = _geometry(x.shape, weight.shape, groups, rarefaction, padding)
    N, (Cin, Cout, _, cin_g, cout_g), (Ho, Wo) = x.shape[0], chans, geom[-2:]
    out = torch.empty((N, Cout, Ho, Wo), device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out
    x = x.contiguous()
    bias = bias.contiguous() if bias is not None else None
    check_plane_int32("rarefied_conv2d", x.shape, out.shape)
    b_arg = bias if bias is not None else out  # never read (HAS_BIAS=False)
    if cin_g == 1:
        args = (x, weight.contiguous(), b_arg, out, Cin, Cout, cout_g, *geom)
        launch(_fwd_dw, tile_grid(N * Cout, Ho, Wo), *args, HAS_BIAS=bias is not None, ACC=acc_dtype(x.dtype))
        return out
    dot = use_dot(cin_g, cout_g, x.dtype)
    blocks = _channel_blocks(cin_g, cout_g, dot, dot_precision(x.dtype), x.dtype)
    grid = group_tile_grid(N * groups, Ho, Wo, triton.cdiv(cout_g, blocks[1]))
    kernel = _fwd_dense_dot if dot else _fwd_dense_fma
    args = (x, _tap_major(weight, groups), b_arg, out, *chans, *geom)
    launch(kernel, grid, *args, HAS_BIAS=bias is not None, **dense_constexprs(x.dtype, dot, blocks, x, out))
    return out


def backward_input(grad_out, weight, input_size, rarefaction, padding, groups):
    chans, geom = _geometry(input_size, weight.shape, groups, rarefaction, padding, grad_out.shape[2:])
    (N, Cin, H, W), (_, Cout, _, cin_g, cout_g) = input_size, chans
    if grad_out.numel() == 0 or N * Cin * H * W == 0:
        return grad_out.new_zeros(input_size)
    gx = grad_out.new_empty(input_size)
    grad_out = grad_out.contiguous()
    check_plane_int32("rarefied_conv2d", gx.shape, grad_out.shape)
    if cin_g == 1:
        args = (grad_out, weight.contiguous(), gx, Cin, Cout, cout_g, *geom)
        launch(_bwd_input_dw, tile_grid(N * Cin, H, W), *args, ACC=acc_dtype(gx.dtype))
        return gx
    dot = use_dot(cin_g, cout_g, grad_out.dtype)
    blocks = _channel_blocks(cin_g, cout_g, dot, dot_precision(grad_out.dtype), grad_out.dtype)
    grid = group_tile_grid(N * groups, H, W, triton.cdiv(cin_g, blocks[0]))
    kernel = _bwd_input_dense_dot if dot else _bwd_input_dense_fma
    args = (grad_out, _tap_major(weight, groups), gx, *chans, *geom)
    launch(kernel, grid, *args, **dense_constexprs(gx.dtype, dot, blocks, gx, grad_out))
    return gx


# rows of output positions per reduction step of the dense weight gradient (for the split count only)
_DENSE_WEIGHT_ROWS = 2


def backward_weight(grad_out, x, weight_size, rarefaction, padding, groups):
    chans, geom = _geometry(x.shape, weight_size, groups, rarefaction, padding, grad_out.shape[2:])
    N, (Cin, Cout, _, cin_g, cout_g), (Kh, Kw), Ho = x.shape[0], chans, weight_size[2:], geom[-2]
    if grad_out.numel() == 0 or x.numel() == 0:
        return grad_out.new_zeros(weight_size)
    grad_out, x = grad_out.contiguous(), x.contiguous()
    check_plane_int32("rarefied_conv2d", x.shape, grad_out.shape)
    numel = Cout * cin_g * Kh * Kw
    if cin_g == 1:
        tasks = Cout * Kh
        split = splits(tasks, N * Ho, x.device)
        part = torch.empty((split, numel), device=x.device, dtype=partial_dtype(x.dtype))
        args = (grad_out, x, part, N, Cin, Cout, cout_g, *geom, split)
        launch(_bwd_weight_dw, (tasks, split), *args, KWP=triton.next_power_of_2(Kw), ACC=acc_dtype(x.dtype))
    else:
        dot = use_dot(cin_g, cout_g, x.dtype)
        blocks = _channel_blocks(cin_g, cout_g, dot, dot_precision(x.dtype), x.dtype)
        tasks = Kh * Kw * groups * triton.cdiv(cin_g, blocks[0]) * triton.cdiv(cout_g, blocks[1])
        split = splits(tasks, N * triton.cdiv(Ho, _DENSE_WEIGHT_ROWS), x.device)
        part = torch.empty((split, numel), device=x.device, dtype=partial_dtype(x.dtype))
        kernel = _bwd_weight_dense_dot if dot else _bwd_weight_dense_fma
        args = (grad_out, x, part, N, *chans, *geom, split)
        launch(kernel, (tasks, split), *args, **dense_constexprs(x.dtype, dot, blocks, x, grad_out))
    # fixed-order reduction of the splits (deterministic), one rounding to the weight's dtype
    return part.sum(0).view(weight_size).to(x.dtype)


# ---------------------------------------------------------------------------------------------------------
# torch.library registration: triton_op (torch.compile sees the kernels; the body is the fake), named and
# differentiated by the rules of fcn_kernels/_autograd/.
# ---------------------------------------------------------------------------------------------------------
@triton_op("fcn_kernels::rarefied_conv2d_triton", mutates_args={})
def rarefied_conv2d_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    rarefaction: List[int],
    padding: List[int],
    groups: int,
) -> torch.Tensor:
    return forward(x, weight, bias, tuple(rarefaction), tuple(padding), groups)


@triton_op("fcn_kernels::rarefied_conv2d_backward_input_triton", mutates_args={})
def rarefied_conv2d_backward_input_triton(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    input_size: List[int],
    rarefaction: List[int],
    padding: List[int],
    groups: int,
) -> torch.Tensor:
    return backward_input(grad_out, weight, list(input_size), tuple(rarefaction), tuple(padding), groups)


@triton_op("fcn_kernels::rarefied_conv2d_backward_weight_triton", mutates_args={})
def rarefied_conv2d_backward_weight_triton(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight_size: List[int],
    rarefaction: List[int],
    padding: List[int],
    groups: int,
) -> torch.Tensor:
    return backward_weight(grad_out, x, list(weight_size), tuple(rarefaction), tuple(padding), groups)


register_rarefied_conv2d(
    rarefied_conv2d_triton,
    rarefied_conv2d_backward_input_triton,
    rarefied_conv2d_backward_weight_triton,
    bias_skip=backward_bias_skip_triton,
)


def rarefied_conv2d(x, weight, bias, rarefaction, padding, groups):
    """Entry point of fcn_kernels.rarefied_conv2d for backend "triton" (arguments already validated,
    rarefaction and padding normalised to pairs)."""
    return rarefied_conv2d_triton(x, weight, bias, list(rarefaction), list(padding), groups)
