"""upsample_skip in Triton (docs/DESIGN.md §2): kernels, launchers, `torch.library.triton_op` registration and
autograd, in one file (Liger-Kernel style).

Index math (csrc/index/upsample_skip.h, the CPU kernel's column blocks): along one axis, input i reaches
full-output coordinate p = i * s + k through tap k. Full-output p = b * s + r (block b, phase r) receives
x[b - t] through tap k = r + t * s, t = 0 .. T - 1, T = ceil(K / s): every phase sees a fixed sub-filter,
so the forward gathers exactly T_h * T_w taps per output (no multiply-adds by taps that do not exist
where s divides K, FCN's case). The cropped output keeps p in [off, off + out), stored at p - off.

Kernels (every accumulation in float32, float64 for float64 inputs; one rounding to the output dtype):
  forward    _fwd_dw_kernel      depthwise (1 in, 1 out channel per group): a BLOCK_H x BLOCK_W tile of
                                 the cropped output per program, row-contiguous (coalesced) loads of skip
                                 and stores of out, bias and skip added before the one store.
             _fwd_dense_kernel   one output phase (phase_h, phase_w) and a tile of blocks per program, so that the
                                 tile's sub-filter is one [Cin/g, Cout/g] matrix per tap: tl.dot over
                                 channels (both >= 8 per group), else an FMA loop over input channels.
  grad x     _bwd_input_dw_kernel / _bwd_input_dense_kernel: the strided correlation
             gx[i, j] = sum_{kh, kw} go[i*sh + kh - oy, j*sw + kw - ox] * w[kh, kw], channels as above.
  grad w     _bwd_weight_dw_kernel: per (channel, kh) and a slice of the rows, go rows read contiguously,
             x gathered per tap column t, reduced per phase r into w[kh, r + t * sw] (the CPU kernel's
             column blocks); _bwd_weight_dense_kernel: per tap, a [Cin/g, Cout/g] GEMM over positions.
             Both write per-split partial sums that a fixed-order sum reduces: no atomics, so the same
             bits on every call within a process; the split and tile shapes come from the autotuned config
             (FCN_KERNELS_TRITON_AUTOTUNE=0 pins it: the same bits in every process on one GPU model, never
             across GPU models; docs/DESIGN.md §4.2).
  grad bias, skip  bias_grad.py's kernel (both ops' bias gradient): one pass over grad_out that writes
             the skip's gradient (grad_out in its window, zeros elsewhere) and per-tile bias partial sums.

Large tensors: batch and plane offsets are int64 always; channel offsets inside one image become int64
(constexpr BIG) when an image holds 2**31 elements or more.
"""

from typing import List, Optional

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .._autograd import register_upsample_skip
from ._tiles import channel, group_tile, output_phase, plane_tile, store_channels, subfilter_tap, tap_chunk, weight_task
from .bias_grad import backward_bias, backward_bias_skip_triton
from .utils import (
    BWD_WEIGHT_DENSE_FMA_CONFIGS,
    HW,
    MAX_UNROLLED_TAPS,
    acc_dtype,
    autotune,
    check_plane_int32,
    configs,
    dense_constexprs,
    dot_operand,
    group_tile_grid,
    launch,
    partial_dtype,
    pow2_clamp,
    splits,
    tile_grid,
    upsample_geometry,
    upsample_operands,
    use_dot,
)

# ---------------------------------------------------------------------------------------------------------
# autotune configs. Block shapes for the memory-bound depthwise kernels are 1-8K elements per program
# (4-8 warps): enough loads in flight on sm_80 (A100, 108 SMs) and sm_90 (H100, 132 SMs). The dot kernels
# use 2-4 stages (sm_80's cp.async pipeline, sm_90's larger shared memory). Under the interpreter only the
# first config runs (utils.autotune).
# ---------------------------------------------------------------------------------------------------------
# Rows: (num_warps, num_stages, block sizes), utils.configs.
BIJ = ("BLOCK_BI", "BLOCK_BJ")  # the dense forward's tile of blocks
FWD_DW_CONFIGS = configs(HW, (4, 2, 4, 64), (4, 2, 4, 128), (8, 2, 8, 128), (8, 2, 16, 64), (8, 2, 4, 256))
FWD_DENSE_DOT_CONFIGS = configs(BIJ, (4, 2, 4, 8), (4, 2, 4, 16), (4, 3, 8, 16), (8, 3, 8, 32), (8, 4, 16, 16))
FWD_DENSE_FMA_CONFIGS = configs(BIJ, (4, 2, 4, 16), (4, 2, 8, 16), (8, 2, 8, 32))
BWD_INPUT_DW_CONFIGS = configs(HW, (4, 2, 4, 32), (4, 2, 4, 64), (8, 2, 8, 64), (8, 2, 4, 128))
BWD_INPUT_DENSE_DOT_CONFIGS = configs(HW, (4, 2, 4, 8), (4, 2, 4, 16), (4, 3, 8, 16), (8, 3, 8, 32))
BWD_INPUT_DENSE_FMA_CONFIGS = configs(HW, (4, 2, 4, 16), (4, 2, 8, 16), (8, 2, 8, 32))
BWD_WEIGHT_DW_CONFIGS = configs(("BLOCK_Q",), (4, 2, 64), (4, 2, 128), (4, 2, 256), (8, 2, 512))
# Positions are the dot's K: small K tiles keep the operands in registers. No larger tiles: (8 warps, 2x32
# or 4x16) spill on sm_90 under triton 3.8 (128-register cap), and with 4 warps they spill on sm_80 (255
# registers); the AOT test holds every config to no spills.
BWD_WEIGHT_DENSE_DOT_CONFIGS = configs(HW, (4, 2, 1, 32), (4, 2, 2, 16))
# BWD_WEIGHT_DENSE_FMA_CONFIGS: utils.py's, shared with rarefied_conv2d.py (the same loop over positions).


# ---------------------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _fwd_dw_tap(acc, x_plane, w_chan, th, tw, phase_h, phase_w, bi, bj, omask, H, W, Kh, Kw, sh, sw, ACC: tl.constexpr):
    # acc plus the products of sub-filter tap (th, tw): tap (phase_h + th*sh, phase_w + tw*sw) of each output's phase
    kh, ih, kw, iw = subfilter_tap(th, tw, phase_h, phase_w, bi, bj, sh, sw)
    m = omask & (kh < Kh) & (ih >= 0) & (ih < H) & (kw < Kw) & (iw >= 0) & (iw < W)
    xv = tl.load(x_plane + ih * W + iw, mask=m, other=0.0).to(ACC)
    wv = tl.load(w_chan + kh * Kw + kw, mask=m, other=0.0).to(ACC)
    return acc + xv * wv


@triton.jit
def _fwd_dw_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    s_ptr,
    out_ptr,
    C,
    H,
    W,
    Kh,
    Kw,
    sh,
    sw,
    oy,
    ox,
    Ho,
    Wo,
    Hs,
    Ws,
    sy,
    sx,
    TH: tl.constexpr,
    TW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    plane = tl.program_id(0)  # n * C + c
    c = plane % C
    i, j, omask = plane_tile(Ho, Wo, BLOCK_H, BLOCK_W)
    phase_h, phase_w, bi, bj = output_phase(i, j, oy, ox, sh, sw)
    x_plane = x_ptr + plane.to(tl.int64) * H * W
    w_chan = w_ptr + c * Kh * Kw
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    if TH * TW <= MAX_UNROLLED_TAPS:
        for th in tl.static_range(TH):
            for tw in tl.static_range(TW):
                acc = _fwd_dw_tap(
                    acc, x_plane, w_chan, th, tw, phase_h, phase_w, bi, bj, omask, H, W, Kh, Kw, sh, sw, ACC
                )
    else:
        for th in range(0, TH):
            for tw in range(0, TW):
                acc = _fwd_dw_tap(
                    acc, x_plane, w_chan, th, tw, phase_h, phase_w, bi, bj, omask, H, W, Kh, Kw, sh, sw, ACC
                )
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(ACC)
    if HAS_SKIP:
        s_plane = s_ptr + plane.to(tl.int64) * Hs * Ws
        acc += tl.load(s_plane + (i + sy) * Ws + (j + sx), mask=omask, other=0.0).to(ACC)
    out_plane = out_ptr + plane.to(tl.int64) * Ho * Wo
    tl.store(out_plane + i * Wo + j, acc.to(out_ptr.dtype.element_ty), mask=omask)


@triton.jit
def _fwd_fma_tap(
    acc, x_img, w_ptr, th, tw, pos, valid, g, co, co_ok, cin_g, cout_g, geo, ACC: tl.constexpr, BIG: tl.constexpr
):
    # acc plus sub-filter tap (th, tw)'s products, an FMA per input channel of the group; pos: the outputs'
    # (phase_h, phase_w, bi, bj), geo: (H, W, Kh, Kw, sh, sw)
    phase_h, phase_w, bi, bj = pos
    H, W, Kh, Kw, sh, sw = geo
    kh, ih, kw, iw = subfilter_tap(th, tw, phase_h, phase_w, bi, bj, sh, sw)
    tap_ok = (kh < Kh) & (kw < Kw)
    m = valid & tap_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    sp = ih * W + iw
    for ci in range(0, cin_g):
        ch = channel(g, cin_g, ci, BIG)
        xv = tl.load(x_img + ch * H * W + sp, mask=m, other=0.0).to(ACC)
        wv = tl.load(w_ptr + (((g * cin_g + ci) * cout_g + co) * Kh + kh) * Kw + kw, mask=tap_ok & co_ok, other=0.0).to(
            ACC
        )
        acc += xv[:, None] * wv[None, :]
    return acc


@triton.jit
def _fwd_dense_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    s_ptr,
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
    sh,
    sw,
    oy,
    ox,
    Ho,
    Wo,
    Hs,
    Ws,
    sy,
    sx,
    bi_lo,
    bj_lo,
    n_bi,
    n_bj,
    TH: tl.constexpr,
    TW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    USE_DOT: tl.constexpr,
    DOT_PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_CI: tl.constexpr,
    BLOCK_CO: tl.constexpr,
    BLOCK_BI: tl.constexpr,
    BLOCK_BJ: tl.constexpr,
):
    # program -> (n, group, tile, phase), phase fastest: neighbouring programs share x and fill each
    # other's columns of the same output rows.
    phases = sh * sw
    pid = tl.program_id(0)
    phase = pid % phases
    n, g, bi, bj, _ = group_tile(pid // phases, groups, n_bi, n_bj, BLOCK_BI, BLOCK_BJ, bi_lo, bj_lo)
    phase_h = phase // sw
    phase_w = phase % sw
    P: tl.constexpr = BLOCK_BI * BLOCK_BJ
    p = bi * sh + phase_h
    q = bj * sw + phase_w
    valid = (p >= oy) & (p < oy + Ho) & (q >= ox) & (q < ox + Wo)
    co = tl.program_id(1) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    co_ok = co < cout_g
    x_img = x_ptr + n.to(tl.int64) * Cin * H * W
    acc = tl.zeros([P, BLOCK_CO], dtype=ACC)
    pos, geo = (phase_h, phase_w, bi, bj), (H, W, Kh, Kw, sh, sw)  # the FMA taps' arguments
    if USE_DOT:
        # one pipelined loop over (tap, input-channel chunk)
        n_chunks = tl.cdiv(cin_g, BLOCK_CI)
        for kk in range(0, TH * TW * n_chunks):
            tap, th, tw, ci = tap_chunk(kk, n_chunks, TW, BLOCK_CI)
            kh = phase_h + th * sh
            kw = phase_w + tw * sw
            ih = bi - th
            iw = bj - tw
            tap_ok = (kh < Kh) & (kw < Kw)
            m = valid & tap_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            ci_ok = ci < cin_g
            ch = channel(g, cin_g, ci, BIG)
            xt = tl.load(
                x_img + ch[None, :] * H * W + (ih * W + iw)[:, None], mask=m[:, None] & ci_ok[None, :], other=0.0
            )
            wt = tl.load(
                w_ptr + (((g * cin_g + ci)[:, None] * cout_g + co[None, :]) * Kh + kh) * Kw + kw,
                mask=tap_ok & ci_ok[:, None] & co_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(dot_operand(xt, DOT_F32), dot_operand(wt, DOT_F32), acc, input_precision=DOT_PREC)
    elif TH * TW <= MAX_UNROLLED_TAPS:
        for th in tl.static_range(TH):
            for tw in tl.static_range(TW):
                acc = _fwd_fma_tap(acc, x_img, w_ptr, th, tw, pos, valid, g, co, co_ok, cin_g, cout_g, geo, ACC, BIG)
    else:
        for th in range(0, TH):
            for tw in range(0, TW):
                acc = _fwd_fma_tap(acc, x_img, w_ptr, th, tw, pos, valid, g, co, co_ok, cin_g, cout_g, geo, ACC, BIG)
    co_glob = g * cout_g + co
    if HAS_BIAS:
        acc += tl.load(b_ptr + co_glob, mask=co_ok, other=0.0).to(ACC)[None, :]
    if BIG:
        co_glob = co_glob.to(tl.int64)
    omask = valid[:, None] & co_ok[None, :]
    i = p - oy
    j = q - ox
    if HAS_SKIP:
        s_img = s_ptr + n.to(tl.int64) * Cout * Hs * Ws
        acc += tl.load(
            s_img + co_glob[None, :] * Hs * Ws + ((i + sy) * Ws + (j + sx))[:, None], mask=omask, other=0.0
        ).to(ACC)
    out_img = out_ptr + n.to(tl.int64) * Cout * Ho * Wo
    tl.store(out_img + co_glob[None, :] * Ho * Wo + (i * Wo + j)[:, None], acc.to(out_ptr.dtype.element_ty), mask=omask)


# ---------------------------------------------------------------------------------------------------------
# grad x: gx[n, ci, i, j] = sum_{co in group, kh, kw} go[n, co, i*sh + kh - oy, j*sw + kw - ox] w[ci, co, kh, kw]
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _reached(a, k, s, off, size, mask):
    # the cropped output a * s + k - off that input a reaches through tap k, and mask where it is in [0, size)
    o = a * s + k - off
    return o, mask & (o >= 0) & (o < size)


@triton.jit
def _bwd_input_dw_kernel(
    go_ptr,
    w_ptr,
    gx_ptr,
    C,
    H,
    W,
    Kh,
    Kw,
    sh,
    sw,
    oy,
    ox,
    Ho,
    Wo,
    ACC: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    plane = tl.program_id(0)
    c = plane % C
    ih, iw, in_ok = plane_tile(H, W, BLOCK_H, BLOCK_W)
    go_plane = go_ptr + plane.to(tl.int64) * Ho * Wo
    w_chan = w_ptr + c * Kh * Kw
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    for kh in range(0, Kh):
        i, mh = _reached(ih, kh, sh, oy, Ho, in_ok)
        for kw in range(0, Kw):
            j, m = _reached(iw, kw, sw, ox, Wo, mh)
            gv = tl.load(go_plane + i * Wo + j, mask=m, other=0.0).to(ACC)
            acc += gv * tl.load(w_chan + kh * Kw + kw).to(ACC)
    gx_plane = gx_ptr + plane.to(tl.int64) * H * W
    tl.store(gx_plane + ih * W + iw, acc.to(gx_ptr.dtype.element_ty), mask=in_ok)


@triton.jit
def _bwd_input_dense_kernel(
    go_ptr,
    w_ptr,
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
    sh,
    sw,
    oy,
    ox,
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
    acc = tl.zeros([P, BLOCK_CI], dtype=ACC)
    if USE_DOT:
        # one pipelined loop over (tap, output-channel chunk)
        n_chunks = tl.cdiv(cout_g, BLOCK_CO)
        for kk in range(0, Kh * Kw * n_chunks):
            tap, kh, kw, co = tap_chunk(kk, n_chunks, Kw, BLOCK_CO)
            i = ih * sh + kh - oy
            j = iw * sw + kw - ox
            m = in_ok & (i >= 0) & (i < Ho) & (j >= 0) & (j < Wo)
            co_ok = co < cout_g
            ch = channel(g, cout_g, co, BIG)
            got = tl.load(
                go_img + ch[None, :] * Ho * Wo + (i * Wo + j)[:, None], mask=m[:, None] & co_ok[None, :], other=0.0
            )
            wt = tl.load(
                w_ptr + ((ci_glob[None, :] * cout_g + co[:, None]) * Kh + kh) * Kw + kw,
                mask=co_ok[:, None] & ci_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(dot_operand(got, DOT_F32), dot_operand(wt, DOT_F32), acc, input_precision=DOT_PREC)
    else:
        for kh in range(0, Kh):
            i, mh = _reached(ih, kh, sh, oy, Ho, in_ok)
            for kw in range(0, Kw):
                j, m = _reached(iw, kw, sw, ox, Wo, mh)
                sp = i * Wo + j
                for co in range(0, cout_g):
                    ch = channel(g, cout_g, co, BIG)
                    gv = tl.load(go_img + ch * Ho * Wo + sp, mask=m, other=0.0).to(ACC)
                    wv = tl.load(w_ptr + ((ci_glob * cout_g + co) * Kh + kh) * Kw + kw, mask=ci_ok, other=0.0).to(ACC)
                    acc += gv[:, None] * wv[None, :]
    store_channels(gx_ptr, n, Cin, ci_glob, ih, iw, H, W, acc, in_ok, ci_ok, BIG)


# ---------------------------------------------------------------------------------------------------------
# grad w: gw[ci, co, kh, kw] = sum_{n, i, j} x[n, ci, i, j] go[n, co, i*sh + kh - oy, j*sw + kw - ox],
# (i, j) over the inputs that tap (kh, kw) carries into the crop window (inputs_in_window).
# Partial sums per split go to part[split, ...]; the launcher sums them in a fixed order.
# ---------------------------------------------------------------------------------------------------------
@triton.jit
def _window_lo(off, k, s):
    # max(0, ceil((off - k) / s)), with non-negative operands only (C and Python division differ below 0)
    return (tl.maximum(off - k, 0) + s - 1) // s


@triton.jit
def _bwd_weight_dw_kernel(
    go_ptr,
    x_ptr,
    part_ptr,
    N,
    C,
    H,
    W,
    Kh,
    Kw,
    sh,
    sw,
    oy,
    ox,
    Ho,
    Wo,
    SPLIT,
    TW: tl.constexpr,
    TWP: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    # One (channel, kh) and every SPLIT-th input row of its window. Output row i = ih*sh + kh - oy is read
    # contiguously; its column j (full q = j + ox = m*sw + r, phase r) received x[m - t] through tap
    # kw = r + t*sw. acc[t, jj] sums go * x[m - t] per column; the columns advance by a multiple of sw, so
    # column jj keeps its phase (jj + ox) % sw throughout and one per-phase reduction at the end gives
    # w[kh, r + t*sw]. Needs sw <= BLOCK_Q (the launcher sends larger strides to the dense kernel).
    task = tl.program_id(0)  # c * Kh + kh
    split = tl.program_id(1)
    c = task // Kh
    kh = task % Kh
    ih_lo = _window_lo(oy, kh, sh)
    ih_hi = tl.minimum(H, _window_lo(oy + Ho, kh, sh))
    rows = tl.maximum(ih_hi - ih_lo, 0)
    step = (BLOCK_Q // sw) * sw
    t_idx = tl.arange(0, TWP)[:, None]
    jj = tl.arange(0, BLOCK_Q)[None, :]
    acc = tl.zeros([TWP, BLOCK_Q], dtype=ACC)
    for r in range(split, N * rows, SPLIT):
        n = r // rows
        ih = ih_lo + r % rows
        plane = (n * C + c).to(tl.int64)
        go_row = go_ptr + plane * Ho * Wo + (ih * sh + kh - oy) * Wo
        x_row = x_ptr + plane * H * W + ih * W
        for j0 in range(0, Wo, step):
            j = j0 + jj
            j_ok = (jj < step) & (j < Wo)
            gv = tl.load(go_row + j, mask=j_ok, other=0.0).to(ACC)
            iw = (j + ox) // sw - t_idx
            m = j_ok & (t_idx < TW) & (iw >= 0) & (iw < W)
            xv = tl.load(x_row + iw, mask=m, other=0.0).to(ACC)
            acc += gv * xv
    out = part_ptr + split.to(tl.int64) * C * Kh * Kw + (c * Kh + kh) * Kw
    t1 = tl.arange(0, TWP)
    for rph in range(0, sw):
        tot = tl.sum(tl.where(((jj + ox) % sw) == rph, acc, 0.0), axis=1)  # [TWP]
        kw = rph + t1 * sw
        tl.store(out + kw, tot.to(part_ptr.dtype.element_ty), mask=(t1 < TW) & (kw < Kw))


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
    sh,
    sw,
    oy,
    ox,
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
    ih_lo = _window_lo(oy, kh, sh)
    ih_hi = tl.minimum(H, _window_lo(oy + Ho, kh, sh))
    iw_lo = _window_lo(ox, kw, sw)
    iw_hi = tl.minimum(W, _window_lo(ox + Wo, kw, sw))
    n_rt = tl.cdiv(tl.maximum(ih_hi - ih_lo, 0), BLOCK_H)
    ci_ok = ci < cin_g
    co_ok = co < cout_g
    xch = channel(g, cin_g, ci, BIG)
    gch = channel(g, cout_g, co, BIG)
    P: tl.constexpr = BLOCK_H * BLOCK_W
    offs = tl.arange(0, P)
    acc = tl.zeros([BLOCK_CI, BLOCK_CO], dtype=ACC)
    for t in range(split, N * n_rt, SPLIT):
        n = t // n_rt
        ih = ih_lo + (t % n_rt) * BLOCK_H + offs // BLOCK_W
        x_img = x_ptr + n.to(tl.int64) * Cin * H * W
        go_img = go_ptr + n.to(tl.int64) * Cout * Ho * Wo
        for w0 in range(iw_lo, iw_hi, BLOCK_W):
            iw = w0 + offs % BLOCK_W
            m = (ih < ih_hi) & (iw < iw_hi)
            xt = tl.load(
                x_img + xch[:, None] * H * W + (ih * W + iw)[None, :], mask=ci_ok[:, None] & m[None, :], other=0.0
            )
            sp = (ih * sh + kh - oy) * Wo + iw * sw + kw - ox
            gt = tl.load(go_img + gch[None, :] * Ho * Wo + sp[:, None], mask=m[:, None] & co_ok[None, :], other=0.0)
            if USE_DOT:
                acc = tl.dot(dot_operand(xt, DOT_F32), dot_operand(gt, DOT_F32), acc, input_precision=DOT_PREC)
            else:
                acc += tl.sum(xt.to(ACC)[:, :, None] * gt.to(ACC)[None, :, :], axis=1)
    w_idx = (((g * cin_g + ci)[:, None] * cout_g + co[None, :]) * Kh + kh) * Kw + kw
    out = part_ptr + split.to(tl.int64) * Cin * cout_g * Kh * Kw
    tl.store(out + w_idx, acc.to(part_ptr.dtype.element_ty), mask=ci_ok[:, None] & co_ok[None, :])


_DENSE_KEY = ["cin_g", "cout_g", "H", "W", "Kh", "Kw", "sh", "sw"]
_fwd_dw = autotune(FWD_DW_CONFIGS, key=["Ho", "Wo", "sh", "sw"])(_fwd_dw_kernel)
_fwd_dense_dot = autotune(FWD_DENSE_DOT_CONFIGS, key=["cin_g", "cout_g", "Ho", "Wo", "sh", "sw"])(_fwd_dense_kernel)
_fwd_dense_fma = autotune(FWD_DENSE_FMA_CONFIGS, key=["cin_g", "cout_g", "Ho", "Wo", "sh", "sw"])(_fwd_dense_kernel)
_bwd_input_dw = autotune(BWD_INPUT_DW_CONFIGS, key=["H", "W", "Kh", "Kw", "sh", "sw"])(_bwd_input_dw_kernel)
_bwd_input_dense_dot = autotune(BWD_INPUT_DENSE_DOT_CONFIGS, key=_DENSE_KEY)(_bwd_input_dense_kernel)
_bwd_input_dense_fma = autotune(BWD_INPUT_DENSE_FMA_CONFIGS, key=_DENSE_KEY)(_bwd_input_dense_kernel)
_bwd_weight_dw = autotune(BWD_WEIGHT_DW_CONFIGS, key=["Wo", "Kh", "sw"])(_bwd_weight_dw_kernel)
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
# launchers (plain functions on tensors; importable and callable without the op registration)
# ---------------------------------------------------------------------------------------------------------
def _channel_blocks(cin_g, cout_g, dot):
    if dot:  # [16, 16] is tl.dot's smallest tile; 32 keeps the FMA-emulated fp32 dot within registers
        return pow2_clamp(cin_g, 16, 32), pow2_clamp(cout_g, 16, 32)
    return pow2_clamp(cin_g, 1, 8), pow2_clamp(cout_g, 1, 8)


def forward(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    """The cropped transposed conv plus bias and skip window (arguments normalised and validated)."""
    chans, geom = upsample_geometry(x.shape, weight.shape, groups, stride, out_offset, out_size)
    (sh, sw), (oy, ox), (Ho, Wo) = stride, out_offset, out_size
    (_, Cout, _, cin_g, cout_g), (N, Kh, Kw) = chans, (x.shape[0], *weight.shape[2:])
    out = torch.empty((N, Cout, Ho, Wo), device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out
    x, weight, bias, skip, skip_geom = upsample_operands("upsample_skip", out, x, weight, bias, skip, skip_offset)
    b_arg = bias if bias is not None else out  # never read (HAS_BIAS=False)
    s_arg = skip if skip is not None else out
    args = (x, weight, b_arg, s_arg, out)
    flags = dict(TH=triton.cdiv(Kh, sh), TW=triton.cdiv(Kw, sw), HAS_BIAS=bias is not None, HAS_SKIP=skip is not None)
    if cin_g == 1 and cout_g == 1:
        launch(_fwd_dw, tile_grid(N * Cout, Ho, Wo), *args, Cout, *geom, *skip_geom, **flags, ACC=acc_dtype(x.dtype))
        return out
    dot = use_dot(cin_g, cout_g, x.dtype)
    blocks = _channel_blocks(cin_g, cout_g, dot)
    bi_lo, bi_hi = oy // sh, triton.cdiv(oy + Ho, sh)
    bj_lo, bj_hi = ox // sw, triton.cdiv(ox + Wo, sw)
    n_bi, n_bj = bi_hi - bi_lo, bj_hi - bj_lo

    def grid(m):
        return (
            N * groups * sh * sw * triton.cdiv(n_bi, m["BLOCK_BI"]) * triton.cdiv(n_bj, m["BLOCK_BJ"]),
            triton.cdiv(cout_g, blocks[1]),
        )

    kernel = _fwd_dense_dot if dot else _fwd_dense_fma
    dense = dense_constexprs(x.dtype, dot, blocks, x, out, skip)
    launch(kernel, grid, *args, *chans, *geom, *skip_geom, bi_lo, bj_lo, n_bi, n_bj, **flags, **dense)
    return out


def backward_input(grad_out, weight, input_size, stride, groups, out_offset):
    chans, geom = upsample_geometry(input_size, weight.shape, groups, stride, out_offset, grad_out.shape[2:])
    N, (Cin, _, _, cin_g, cout_g), (H, W) = input_size[0], chans, input_size[2:]
    if grad_out.numel() == 0 or N * Cin * H * W == 0:
        return grad_out.new_zeros(input_size)
    gx = grad_out.new_empty(input_size)
    grad_out, weight = grad_out.contiguous(), weight.contiguous()
    check_plane_int32("upsample_skip", gx.shape, grad_out.shape)
    if cin_g == 1 and cout_g == 1:
        launch(_bwd_input_dw, tile_grid(N * Cin, H, W), grad_out, weight, gx, Cin, *geom, ACC=acc_dtype(gx.dtype))
        return gx
    dot = use_dot(cin_g, cout_g, grad_out.dtype)
    blocks = _channel_blocks(cin_g, cout_g, dot)
    grid = group_tile_grid(N * groups, H, W, triton.cdiv(cin_g, blocks[0]))
    kernel = _bwd_input_dense_dot if dot else _bwd_input_dense_fma
    launch(kernel, grid, grad_out, weight, gx, *chans, *geom, **dense_constexprs(gx.dtype, dot, blocks, gx, grad_out))
    return gx


# the depthwise weight-gradient kernel needs sw <= BLOCK_Q (smallest config); larger strides take the dense one
DW_WEIGHT_MAX_STRIDE = min(c.kwargs["BLOCK_Q"] for c in BWD_WEIGHT_DW_CONFIGS)


def backward_weight(grad_out, x, weight_size, stride, groups, out_offset):
    chans, geom = upsample_geometry(x.shape, weight_size, groups, stride, out_offset, grad_out.shape[2:])
    (N, _, H, _), (Cin, _, _, cin_g, cout_g), (Kh, Kw), sw = x.shape, chans, weight_size[2:], stride[1]
    if grad_out.numel() == 0 or x.numel() == 0:
        return grad_out.new_zeros(weight_size)
    grad_out, x = grad_out.contiguous(), x.contiguous()
    check_plane_int32("upsample_skip", x.shape, grad_out.shape)
    args = (grad_out, x)
    numel = Cin * cout_g * Kh * Kw
    if cin_g == 1 and cout_g == 1 and sw <= DW_WEIGHT_MAX_STRIDE:
        tasks = Cin * Kh
        split = splits(tasks, N * H, x.device)
        part = torch.empty((split, numel), device=x.device, dtype=partial_dtype(x.dtype))
        TW = triton.cdiv(Kw, sw)
        flags = dict(TW=TW, TWP=triton.next_power_of_2(TW), ACC=acc_dtype(x.dtype))
        launch(_bwd_weight_dw, (tasks, split), *args, part, N, Cin, *geom, split, **flags)
    else:
        dot = use_dot(cin_g, cout_g, x.dtype)
        blocks = _channel_blocks(cin_g, cout_g, dot)
        tasks = Kh * Kw * groups * triton.cdiv(cin_g, blocks[0]) * triton.cdiv(cout_g, blocks[1])
        split = splits(tasks, N * triton.cdiv(H, 8), x.device)
        part = torch.empty((split, numel), device=x.device, dtype=partial_dtype(x.dtype))
        kernel = _bwd_weight_dense_dot if dot else _bwd_weight_dense_fma
        dense = dense_constexprs(x.dtype, dot, blocks, x, grad_out)
        launch(kernel, (tasks, split), *args, part, N, *chans, *geom, split, **dense)
    # fixed-order reduction of the splits (deterministic), one rounding to the weight's dtype
    return part.sum(0).view(weight_size).to(x.dtype)


def backward_bias_skip(grad_out, skip_size, skip_offset, need_bias):
    """(grad bias or None, grad skip or None) in one pass over grad_out; skip_size None: no skip grad."""
    return backward_bias(grad_out, need_bias, skip_size, skip_offset)


# ---------------------------------------------------------------------------------------------------------
# torch.library registration: triton_op (torch.compile sees the kernels; the body is the fake), named and
# differentiated by the rules of fcn_kernels/_autograd/.
# ---------------------------------------------------------------------------------------------------------
@triton_op("fcn_kernels::upsample_skip_triton", mutates_args={})
def upsample_skip_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    stride: List[int],
    groups: int,
    out_offset: List[int],
    out_size: List[int],
    skip_offset: List[int],
) -> torch.Tensor:
    return forward(x, weight, bias, skip, tuple(stride), groups, tuple(out_offset), tuple(out_size), tuple(skip_offset))


@triton_op("fcn_kernels::upsample_skip_backward_input_triton", mutates_args={})
def upsample_skip_backward_input_triton(
    grad_out: torch.Tensor,
    weight: torch.Tensor,
    input_size: List[int],
    stride: List[int],
    groups: int,
    out_offset: List[int],
) -> torch.Tensor:
    return backward_input(grad_out, weight, list(input_size), tuple(stride), groups, tuple(out_offset))


@triton_op("fcn_kernels::upsample_skip_backward_weight_triton", mutates_args={})
def upsample_skip_backward_weight_triton(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight_size: List[int],
    stride: List[int],
    groups: int,
    out_offset: List[int],
) -> torch.Tensor:
    return backward_weight(grad_out, x, list(weight_size), tuple(stride), groups, tuple(out_offset))


register_upsample_skip(
    upsample_skip_triton,
    upsample_skip_backward_input_triton,
    upsample_skip_backward_weight_triton,
    bias_skip=backward_bias_skip_triton,
)


def upsample_skip(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    """Entry point of fcn_kernels.upsample_skip for backend "triton" (arguments already validated and
    normalised to tuples, out_size filled in)."""
    return upsample_skip_triton(
        x, weight, bias, skip, list(stride), groups, list(out_offset), list(out_size), list(skip_offset)
    )
