"""upsample_cross_entropy's statistics in Triton (docs/DESIGN.md §2.5): upsample_logsumexp and its backward,
the same schemas as the C++ ops, differentiated by fcn_kernels/_autograd/losses.py. No tensor of the scores'
size (N, C, Ho, Wo) is ever made: every kernel recomputes the scores it needs from x with _tiles.class_score,
exactly as upsample_skip stores them (rounded to x's dtype); statistics in float32, float64 for float64.

Kernels:
  _lse_kernel     one program per BLOCK_H x BLOCK_W tile of one image's cropped output; a loop over the
                  classes keeps an online log-sum-exp (running maximum m and sum s of exp(v - m)) and the
                  target's score. lse is NaN where a score is NaN or m is infinite, as the CPU kernel's (and
                  F.log_softmax's); picked is 0 at ignored pixels.
  The backward's score gradient, recomputed per pixel and class:
      d = grad_lse * exp(v - lse) + grad_picked * [c == target], target not ignore_index,
  its first term 0 where grad_lse is 0 (the loss's ignored pixels), whatever the scores.
  _pixel_kernel   the output tiles again, a loop over the classes: grad_skip's window is d (zeros outside),
                  and per-tile sums of d are the bias gradient's partial sums.
  _gx_kernel      per BLOCK_P input pixels of one image and group, and a block of the group's input channels,
                  lanes (input pixel, filter tap k = kh * Kw + kw): each lane recomputes d at the output it
                  reaches, grad_x[ci] = sum over the group's classes and the taps of d * w[ci, co, kh, kw].
  _gw_kernel      per class and block of its group's input channels, a slice (split) of the images' BLOCK_P
                  input pixels, the same lanes: grad_w[ci, co, kh, kw] = sum over input pixels of x[ci] * d.
The recomputation costs about ceil(Kh / sh) * ceil(Kw / sw) forwards per gradient (4 for FCN's Kh = 2 sh).
Deterministic, no atomics: each output element has one writer, and the weight and bias gradients' partial sums
(fixed tiles: the backward kernels are not autotuned; the weight's split follows utils.splits, so the SM count)
are reduced by a fixed-order sum.

Labels: every label must be ignore_index or in [0, C). The forward op checks them with one reduction and one
device sync (a ValueError naming the first bad label), skipped while torch.compile traces the op (its body is
then the fake kernel); the kernels only compare labels with classes, never index with them, so an unchecked
bad label gives a wrong statistic, never a bad memory access.
"""

from typing import List, Optional, Tuple

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .._autograd.losses import register_upsample_logsumexp
from ._tiles import channel, class_score, output_phases, plane_tile
from .utils import (
    INTERPRET,
    acc_dtype,
    autotune,
    check_labels,
    check_plane_int32,
    config,
    launch,
    needs_int64,
    partial_dtype,
    pow2_clamp,
    splits,
)

LSE_CONFIGS = [  # no 4-warp 8 x 64: it spills on sm_90 (python -m fcn_kernels.triton.aot)
    config(4, BLOCK_H=4, BLOCK_W=64),
    config(8, BLOCK_H=8, BLOCK_W=128),
    config(8, BLOCK_H=16, BLOCK_W=64),
]
# The backward's tiles are fixed (one config each): the bias and weight partial sums, and so their bits,
# follow them.
PIXEL_CONFIGS = [config(4, BLOCK_H=4, BLOCK_W=64)]
GX_CONFIGS = [config(4)]  # their blocks are the launcher's (BLOCK_P from LANES)
GW_CONFIGS = [config(8)]
MAX_BLOCK_CI = 16
# The grad_x and grad_weight kernels' (input pixel, tap) lanes per program: 2048 spill on sm_80 and sm_90;
# the interpreter, which runs each program in Python, takes wide ones.
LANES = 8192 if INTERPRET else 512


@triton.jit
def _score_grad(v, co, lse, ga, gb, y, labelled):
    # d of class co at the tile's pixels: grad_lse * softmax, 0 where grad_lse is 0 (so that an ignored pixel's
    # NaN or infinite scores add nothing), plus grad_picked at the target's class
    d = tl.where(ga != 0, ga * tl.exp(v - lse), 0.0)
    return d + tl.where(labelled & (y == co), gb, 0.0)


@triton.jit
def _lse_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    s_ptr,
    t_ptr,
    lse_ptr,
    picked_ptr,
    Cin,
    Cout,
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
    ignore_index,
    TH: tl.constexpr,
    TW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    i, j, omask = plane_tile(Ho, Wo, BLOCK_H, BLOCK_W)
    phases = output_phases(i, j, oy, ox, sh, sw)
    geo = (cin_g, cout_g, H, W, Kh, Kw, sh, sw, Hs, Ws, sy, sx)
    x_img = x_ptr + n * Cin * H * W
    s_img = s_ptr + n * Cout * Hs * Ws
    pix = n * Ho * Wo + i * Wo + j
    y = tl.load(t_ptr + pix, mask=omask, other=ignore_index)
    labelled = y != ignore_index
    m = tl.full([BLOCK_H, BLOCK_W], float("-inf"), ACC)
    s = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    picked = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    for co in range(0, Cout):
        g = co // cout_g
        co_l = co - g * cout_g
        v = class_score(
            x_img, w_ptr, b_ptr, s_img, g, co_l, phases, i, j, omask, geo, TH, TW, HAS_BIAS, HAS_SKIP, ACC, BIG
        )
        # online log-sum-exp: NaN never becomes the maximum (s takes it), a -inf score adds 0, and an unchanged
        # maximum rescales by exactly 1 (also -inf, where exp(m - m) would be NaN)
        m_new = tl.where(v > m, v, m)
        s = s * tl.where(m == m_new, 1.0, tl.exp(m - m_new)) + tl.where(v == float("-inf"), 0.0, tl.exp(v - m_new))
        m = m_new
        picked = tl.where(labelled & (y == co), v, picked)
    finite = (m > float("-inf")) & (m < float("inf"))
    tl.store(lse_ptr + pix, tl.where(finite, tl.log(s) + m, float("nan")), mask=omask)
    tl.store(picked_ptr + pix, picked, mask=omask)


@triton.jit
def _pixel_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    s_ptr,
    t_ptr,
    lse_ptr,
    ga_ptr,
    gb_ptr,
    gs_ptr,
    part_ptr,
    Cin,
    Cout,
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
    ignore_index,
    TH: tl.constexpr,
    TW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    NEED_BIAS: tl.constexpr,
    NEED_SKIP: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    i, j, omask = plane_tile(Ho, Wo, BLOCK_H, BLOCK_W)
    phases = output_phases(i, j, oy, ox, sh, sw)
    geo = (cin_g, cout_g, H, W, Kh, Kw, sh, sw, Hs, Ws, sy, sx)
    x_img = x_ptr + n * Cin * H * W
    s_img = s_ptr + n * Cout * Hs * Ws
    gs_img = gs_ptr + n * Cout * Hs * Ws
    pix = n * Ho * Wo + i * Wo + j
    y = tl.load(t_ptr + pix, mask=omask, other=ignore_index)
    labelled = y != ignore_index
    lse = tl.load(lse_ptr + pix, mask=omask, other=0.0)
    ga = tl.load(ga_ptr + pix, mask=omask, other=0.0)
    gb = tl.load(gb_ptr + pix, mask=omask, other=0.0)
    tile = (n * tl.num_programs(1) + tl.program_id(1)) * tl.num_programs(2) + tl.program_id(2)
    for co in range(0, Cout):
        g = co // cout_g
        co_l = co - g * cout_g
        v = class_score(
            x_img, w_ptr, b_ptr, s_img, g, co_l, phases, i, j, omask, geo, TH, TW, HAS_BIAS, HAS_SKIP, ACC, BIG
        )
        d = tl.where(omask, _score_grad(v, co, lse, ga, gb, y, labelled), 0.0)
        if NEED_SKIP:
            gs_plane = gs_img + channel(g, cout_g, co_l, BIG) * Hs * Ws
            tl.store(gs_plane + (i + sy) * Ws + (j + sx), d.to(gs_ptr.dtype.element_ty), mask=omask)
        if NEED_BIAS:
            tl.store(part_ptr + tile * Cout + co, tl.sum(tl.sum(d, axis=1), axis=0))


@triton.jit
def _tap_lanes(q, H, W, Kh, Kw, sh, sw, oy, ox, Ho, Wo, KP: tl.constexpr):
    """Input pixels q (flattened in their plane, [BLOCK_P]) times the filter's taps k = kh * Kw + kw ([KP]):
    each lane's tap [1, KP], the cropped output (i, j) it reaches and whether that is a real input, tap and
    output ([BLOCK_P, KP])."""
    ih = (q // W)[:, None]
    iw = (q % W)[:, None]
    k = tl.arange(0, KP)[None, :]
    i = ih * sh + k // Kw - oy
    j = iw * sw + k % Kw - ox
    m = (q < H * W)[:, None] & (k < Kh * Kw) & (i >= 0) & (i < Ho) & (j >= 0) & (j < Wo)
    return k, i, j, m


@triton.jit
def _recomputed_grad(
    x_img,
    w_ptr,
    b_ptr,
    s_img,
    stats,
    g,
    co_l,
    i,
    j,
    m,
    geo,
    crop,
    ignore_index,
    TH: tl.constexpr,
    TW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
):
    """d of class co_l of group g at the cropped outputs (i, j) where m holds, 0 elsewhere (the grad_x and
    grad_weight kernels'). stats: the image's (target, lse, grad_lse, grad_picked); geo: class_score's;
    crop: (oy, ox, Wo)."""
    t_img, lse_img, ga_img, gb_img = stats
    oy, ox, Wo = crop
    sp = i * Wo + j
    y = tl.load(t_img + sp, mask=m, other=ignore_index)
    lse = tl.load(lse_img + sp, mask=m, other=0.0)
    ga = tl.load(ga_img + sp, mask=m, other=0.0)
    gb = tl.load(gb_img + sp, mask=m, other=0.0)
    phases = output_phases(i, j, oy, ox, geo[6], geo[7])
    v = class_score(x_img, w_ptr, b_ptr, s_img, g, co_l, phases, i, j, m, geo, TH, TW, HAS_BIAS, HAS_SKIP, ACC, BIG)
    return tl.where(m, _score_grad(v, g * geo[1] + co_l, lse, ga, gb, y, y != ignore_index), 0.0)


@triton.jit
def _gx_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    s_ptr,
    t_ptr,
    lse_ptr,
    ga_ptr,
    gb_ptr,
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
    Hs,
    Ws,
    sy,
    sx,
    ignore_index,
    TH: tl.constexpr,
    TW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_CI: tl.constexpr,
    BLOCK_P: tl.constexpr,
    KP: tl.constexpr,
):
    # axis 0: (image, group, tile of BLOCK_P input pixels), tile fastest; axis 1: a block of the group's inputs
    tiles = tl.cdiv(H * W, BLOCK_P)
    pid = tl.program_id(0)
    q = (pid % tiles) * BLOCK_P + tl.arange(0, BLOCK_P)
    g = (pid // tiles) % groups
    n = (pid // tiles // groups).to(tl.int64)
    ci0 = tl.program_id(1) * BLOCK_CI
    cis = ci0 + tl.arange(0, BLOCK_CI)
    k, i, j, m = _tap_lanes(q, H, W, Kh, Kw, sh, sw, oy, ox, Ho, Wo, KP)
    x_img = x_ptr + n * Cin * H * W
    pix0 = n * Ho * Wo
    stats = (t_ptr + pix0, lse_ptr + pix0, ga_ptr + pix0, gb_ptr + pix0)
    geo = (cin_g, cout_g, H, W, Kh, Kw, sh, sw, Hs, Ws, sy, sx)
    acc = tl.zeros([BLOCK_CI, BLOCK_P], dtype=ACC)
    for co_l in range(0, cout_g):
        d = _recomputed_grad(
            x_img,
            w_ptr,
            b_ptr,
            s_ptr + n * Cout * Hs * Ws,
            stats,
            g,
            co_l,
            i,
            j,
            m,
            geo,
            (oy, ox, Wo),
            ignore_index,
            TH,
            TW,
            HAS_BIAS,
            HAS_SKIP,
            ACC,
            BIG,
        )
        # each input channel's filter row against d, summed over the taps
        for ci in range(ci0, tl.minimum(ci0 + BLOCK_CI, cin_g)):
            ch = channel(g, cin_g, ci, BIG)
            wv = tl.load(w_ptr + (ch * cout_g + co_l) * Kh * Kw + k, mask=k < Kh * Kw, other=0.0).to(ACC)
            acc += tl.where(cis[:, None] == ci, tl.sum(d * wv, axis=1)[None, :], 0.0)
    chs = channel(g, cin_g, cis, BIG)
    tl.store(
        gx_ptr + n * Cin * H * W + chs[:, None] * H * W + q[None, :],
        acc.to(gx_ptr.dtype.element_ty),
        mask=(cis < cin_g)[:, None] & (q < H * W)[None, :],
    )


@triton.jit
def _gw_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    s_ptr,
    t_ptr,
    lse_ptr,
    ga_ptr,
    gb_ptr,
    part_ptr,
    N,
    Cin,
    Cout,
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
    ignore_index,
    SPLIT,
    TH: tl.constexpr,
    TW: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SKIP: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_CI: tl.constexpr,
    BLOCK_P: tl.constexpr,
    KP: tl.constexpr,
):
    # axis 0: (class, block of its group's inputs), block fastest; axis 1: the split, which takes every SPLIT-th
    # (image, tile of BLOCK_P input pixels)
    ci_blocks = tl.cdiv(cin_g, BLOCK_CI)
    co = tl.program_id(0) // ci_blocks
    ci0 = (tl.program_id(0) % ci_blocks) * BLOCK_CI
    cis = ci0 + tl.arange(0, BLOCK_CI)
    g = co // cout_g
    co_l = co - g * cout_g
    split = tl.program_id(1)
    tiles = tl.cdiv(H * W, BLOCK_P)
    geo = (cin_g, cout_g, H, W, Kh, Kw, sh, sw, Hs, Ws, sy, sx)
    acc = tl.zeros([BLOCK_CI, KP], dtype=ACC)
    for t in range(split, N * tiles, SPLIT):
        n = (t // tiles).to(tl.int64)
        q = (t % tiles) * BLOCK_P + tl.arange(0, BLOCK_P)
        k, i, j, m = _tap_lanes(q, H, W, Kh, Kw, sh, sw, oy, ox, Ho, Wo, KP)
        x_img = x_ptr + n * Cin * H * W
        pix0 = n * Ho * Wo
        stats = (t_ptr + pix0, lse_ptr + pix0, ga_ptr + pix0, gb_ptr + pix0)
        d = _recomputed_grad(
            x_img,
            w_ptr,
            b_ptr,
            s_ptr + n * Cout * Hs * Ws,
            stats,
            g,
            co_l,
            i,
            j,
            m,
            geo,
            (oy, ox, Wo),
            ignore_index,
            TH,
            TW,
            HAS_BIAS,
            HAS_SKIP,
            ACC,
            BIG,
        )
        # each input channel's pixels against d, summed over the pixels
        for ci in range(ci0, tl.minimum(ci0 + BLOCK_CI, cin_g)):
            ch = channel(g, cin_g, ci, BIG)
            xv = tl.load(x_img + ch * H * W + q, mask=q < H * W, other=0.0).to(ACC)
            acc += tl.where(cis[:, None] == ci, tl.sum(xv[:, None] * d, axis=0)[None, :], 0.0)
    chs = channel(g, cin_g, cis, BIG)
    k = tl.arange(0, KP)
    out = part_ptr + split.to(tl.int64) * Cin * cout_g * Kh * Kw
    tl.store(
        out + (chs[:, None] * cout_g + co_l) * Kh * Kw + k[None, :],
        acc,
        mask=(cis < cin_g)[:, None] & (k < Kh * Kw)[None, :],
    )


_STATS_KEY = ["Cout", "cin_g", "Ho", "Wo", "sh", "sw"]
_lse = autotune(LSE_CONFIGS, key=_STATS_KEY)(_lse_kernel)
_pixel = autotune(PIXEL_CONFIGS, key=_STATS_KEY)(_pixel_kernel)
_gx = autotune(GX_CONFIGS, key=_STATS_KEY)(_gx_kernel)
_gw = autotune(GW_CONFIGS, key=_STATS_KEY)(_gw_kernel)

# (name, autotuned kernel): the AOT check (fcn_kernels.triton.aot) compiles each with each of its configs.
AUTOTUNED = {"ce_lse": _lse, "ce_pixel": _pixel, "ce_gx": _gx, "ce_gw": _gw}


# ---------------------------------------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------------------------------------
def _geometry(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index):
    """The kernels' common runtime arguments and constexprs."""
    (sh, sw), (oy, ox), (sy, sx) = stride, out_offset, skip_offset
    N, Cin, H, W = x.shape
    _, cout_g, Kh, Kw = weight.shape
    Ho, Wo = target.shape[1], target.shape[2]
    Hs, Ws = (skip.shape[2], skip.shape[3]) if skip is not None else (0, 0)
    check_plane_int32("upsample_cross_entropy", x.shape, target.shape, *([skip.shape] if skip is not None else []))
    return dict(
        Cin=Cin,
        Cout=cout_g * groups,
        cin_g=Cin // groups,
        cout_g=cout_g,
        H=H,
        W=W,
        Kh=Kh,
        Kw=Kw,
        sh=sh,
        sw=sw,
        oy=oy,
        ox=ox,
        Ho=Ho,
        Wo=Wo,
        Hs=Hs,
        Ws=Ws,
        sy=sy,
        sx=sx,
        ignore_index=ignore_index,
    ), dict(
        TH=triton.cdiv(Kh, sh),
        TW=triton.cdiv(Kw, sw),
        HAS_BIAS=bias is not None,
        HAS_SKIP=skip is not None,
        ACC=acc_dtype(x.dtype),
        BIG=needs_int64(x, skip),
    )


def _contiguous(*tensors):
    return [t.contiguous() if t is not None else None for t in tensors]


def forward(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index):
    """(lse, picked), (N, Ho, Wo) in float32 (float64 for float64 x) (arguments normalised and validated)."""
    stats = torch.float64 if x.dtype == torch.float64 else torch.float32
    shape = (x.shape[0], target.shape[1], target.shape[2])
    lse, picked = (torch.empty(shape, device=x.device, dtype=stats) for _ in range(2))
    check_labels("upsample_logsumexp", target, weight.shape[1] * groups, ignore_index)
    if lse.numel() == 0:
        return lse, picked
    x, weight, bias, skip, target = _contiguous(x, weight, bias, skip, target)
    args, constexprs = _geometry(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index)

    def grid(m):
        return (x.shape[0], triton.cdiv(args["Ho"], m["BLOCK_H"]), triton.cdiv(args["Wo"], m["BLOCK_W"]))

    tensors = (x, weight, bias if bias is not None else x, skip if skip is not None else x, target, lse, picked)
    launch(_lse, grid, *tensors, *args.values(), **constexprs)
    return lse, picked


def backward(grad_lse, grad_picked, x, weight, bias, skip, target, lse, arguments, output_mask):
    """(grad_x, grad_weight, grad_bias, grad_skip); an empty (0,) tensor for each not in output_mask. arguments:
    (stride, groups, out_offset, skip_offset, ignore_index)."""
    need_x, need_w, need_b, need_s = output_mask
    need_b, need_s = need_b and bias is not None, need_s and skip is not None
    N, Cin, H, W = x.shape
    pixels = N * target.shape[1] * target.shape[2]

    def result(wanted, t, zeros):
        if not wanted:
            return x.new_empty((0,))
        return (
            torch.zeros_like(t, memory_format=torch.contiguous_format)
            if zeros
            else torch.empty_like(t, memory_format=torch.contiguous_format)
        )

    gx, gs = result(need_x, x, pixels == 0), result(need_s, skip, True)
    if pixels == 0 or not (need_x or need_w or need_b or need_s):
        return gx, result(need_w, weight, True), result(need_b, bias, True), gs
    x, weight, bias, skip, target, lse, grad_lse, grad_picked = _contiguous(
        x, weight, bias, skip, target, lse, grad_lse, grad_picked
    )
    args, constexprs = _geometry(x, weight, bias, skip, target, *arguments)
    groups = arguments[1]
    inputs = (x, weight, bias if bias is not None else x, skip if skip is not None else x, target, lse)
    grads = (grad_lse, grad_picked)
    cin_g, Cout, Kh, Kw = args["cin_g"], args["Cout"], args["Kh"], args["Kw"]
    block_ci = pow2_clamp(cin_g, 1, MAX_BLOCK_CI)
    part_dtype = partial_dtype(x.dtype)
    gb = result(need_b, bias, False)
    if need_b or need_s:
        cfg = PIXEL_CONFIGS[0].kwargs
        tiles = (N, triton.cdiv(args["Ho"], cfg["BLOCK_H"]), triton.cdiv(args["Wo"], cfg["BLOCK_W"]))
        part = torch.empty((tiles[0] * tiles[1] * tiles[2], Cout), device=x.device, dtype=part_dtype)
        launch(
            _pixel,
            tiles,
            *inputs,
            *grads,
            gs if need_s else x,
            part,
            *args.values(),
            NEED_BIAS=need_b,
            NEED_SKIP=need_s,
            **constexprs,
        )
        if need_b:
            gb = part.sum(0).to(x.dtype)  # fixed-order reduction of the tiles' partial sums
    kp = triton.next_power_of_2(Kh * Kw)
    blocks = dict(BLOCK_CI=block_ci, BLOCK_P=max(1, min(triton.next_power_of_2(H * W), LANES // kp)), KP=kp)
    tiles = triton.cdiv(H * W, blocks["BLOCK_P"])
    if need_x:
        grid = (N * groups * tiles, triton.cdiv(cin_g, block_ci))
        launch(_gx, grid, *inputs, *grads, gx, Cin, Cout, groups, *list(args.values())[2:], **blocks, **constexprs)
    gw = result(need_w, weight, False)
    if need_w:
        tasks = Cout * triton.cdiv(cin_g, block_ci)
        split = splits(tasks, N * tiles, x.device)
        part = torch.empty((split, weight.numel()), device=x.device, dtype=part_dtype)
        launch(_gw, (tasks, split), *inputs, *grads, part, N, *args.values(), split, **blocks, **constexprs)
        gw = part.sum(0).view(weight.shape).to(x.dtype)  # fixed-order reduction of the splits
    return gx, gw, gb, gs


# ---------------------------------------------------------------------------------------------------------
# torch.library registration: the C++ ops' schemas, one autograd (fcn_kernels/_autograd/losses.py)
# ---------------------------------------------------------------------------------------------------------
@triton_op("fcn_kernels::upsample_logsumexp_triton", mutates_args={})
def upsample_logsumexp_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    target: torch.Tensor,
    stride: List[int],
    groups: int,
    out_offset: List[int],
    skip_offset: List[int],
    ignore_index: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return forward(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index)


@triton_op("fcn_kernels::upsample_logsumexp_backward_triton", mutates_args={})
def upsample_logsumexp_backward_triton(
    grad_lse: torch.Tensor,
    grad_picked: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    skip: Optional[torch.Tensor],
    target: torch.Tensor,
    lse: torch.Tensor,
    stride: List[int],
    groups: int,
    out_offset: List[int],
    skip_offset: List[int],
    ignore_index: int,
    output_mask: List[bool],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    arguments = (stride, groups, out_offset, skip_offset, ignore_index)
    return backward(grad_lse, grad_picked, x, weight, bias, skip, target, lse, arguments, output_mask)


register_upsample_logsumexp(upsample_logsumexp_triton, upsample_logsumexp_backward_triton)


def upsample_logsumexp(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index):
    """Entry point of fcn_kernels.upsample_cross_entropy for backend "triton": its statistics (lse, picked)
    (arguments already validated, target int64)."""
    return upsample_logsumexp_triton(
        x, weight, bias, skip, target, list(stride), groups, list(out_offset), list(skip_offset), ignore_index
    )
