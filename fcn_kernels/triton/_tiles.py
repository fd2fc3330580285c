"""Program -> work decompositions shared by the kernels of upsample_skip.py and rarefied_conv2d.py, and the
per-class score gather (output_phases, class_score) of upsample_argmax.py and upsample_cross_entropy.py.

Triton inlines these @triton.jit helpers into the calling kernel. They and their call sites keep the
statement order the kernels had inline: ptxas's register counts (python -m fcn_kernels.triton.aot) move
with instruction order, e.g. with where a kernel reads tl.program_id(1) or adds a block origin.
"""

import triton
import triton.language as tl

from .utils import MAX_UNROLLED_TAPS


@triton.jit
def plane_tile(H, W, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """The depthwise kernels' grid: a BLOCK_H x BLOCK_W tile of one H x W plane per program, tile row and
    column on grid axes 1 and 2. Returns its rows [BLOCK_H, 1], columns [1, BLOCK_W] and in-plane mask."""
    rows = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    cols = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    return rows, cols, (rows < H) & (cols < W)


@triton.jit
def _acc_round(v, ACC: tl.constexpr):
    # one rounding of a float64 value to ACC, kept in float64: float32 arithmetic done exactly in float64
    # (each step of float32 operands is exact in float64, or rounds harmlessly twice: 53 >= 2 * 24 + 2 bits)
    # with no FMA contraction across the steps but the one bilinear_taps writes out (tl.fma)
    return v.to(ACC).to(tl.float64)


@triton.jit
def bilinear_taps(o, size_in, size_out, ALIGN: tl.constexpr, ACC: tl.constexpr):
    """F.interpolate(mode="bilinear")'s taps along one axis at output coordinates o (int32, >= 0): input
    indices i0 <= i1 (int32) and weights l0, l1 (ACC), PyTorch's rule in its op-math type ACC
    (ATen/native/UpSample.h: area_pixel_compute_scale, compute_source_index_and_lambda), the taps that
    csrc/host/interpolate.h computes for the C++ kernels: the source coordinate's multiply-add fused, as
    PyTorch's FMA builds (its AVX2/AVX-512 CPU kernels, CUDA) compute it, and floored as floorf floors it."""
    fin = size_in.to(tl.float64)
    fo = o.to(tl.float64)
    if ALIGN:  # (in - 1) / (out - 1); the one coordinate of a size-1 output is 0 whatever the scale
        scale = _acc_round((fin - 1.0) / tl.maximum(size_out - 1, 1).to(tl.float64), ACC)
        # never below 0: the maximum only keeps the GPU compiler from fusing this product into l1's
        # subtraction below (float64: aggressive FMA fusion, which the host's compiler does not do)
        src = tl.maximum(_acc_round(scale * _acc_round(fo, ACC), ACC), 0.0)
    else:
        scale = _acc_round(fin / size_out.to(tl.float64), ACC)
        # fma in float64 rounded to ACC: a float32 fma's one rounding (its product is exact in float64, and
        # so is the sum where it is not clamped to 0); i + 0.5 rounded twice in ACC, as the host's T(i) + 0.5
        src = _acc_round(tl.fma(scale, _acc_round(_acc_round(fo, ACC) + 0.5, ACC), -0.5), ACC)
        src = tl.maximum(src, 0.0)
    # floorf(src): a float64 coordinate rounds to float32 first; src >= 0, so truncation is floor
    i0 = tl.minimum(src.to(tl.float32).to(tl.int32), size_in - 1)
    l1 = tl.minimum(tl.maximum(_acc_round(src - i0.to(tl.float64), ACC), 0.0), 1.0)
    i1 = i0 + (i0 < size_in - 1).to(tl.int32)
    l0 = _acc_round(1.0 - l1, ACC)
    same = size_in == size_out  # a copy: one tap, so that a non-finite neighbour never meets a zero weight
    i0 = tl.where(same, o, i0)
    i1 = tl.where(same, o, i1)
    l0 = tl.where(same, 1.0, l0)
    l1 = tl.where(same, 0.0, l1)
    return i0, i1, l0.to(ACC), l1.to(ACC)


@triton.jit
def bilinear_tile(H, W, Ho, Wo, ALIGN: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """The bilinear forwards' grid: plane_tile's tile of one image's Ho x Wo output, the image on grid axis 0.
    Returns the image (int64), the tile's rows, columns and mask, and their taps (bilinear_taps)."""
    i, j, omask = plane_tile(Ho, Wo, BLOCK_H, BLOCK_W)
    ri0, ri1, rl0, rl1 = bilinear_taps(i, H, Ho, ALIGN, ACC)
    ci0, ci1, cl0, cl1 = bilinear_taps(j, W, Wo, ALIGN, ACC)
    return tl.program_id(0).to(tl.int64), i, j, omask, ri0, ri1, rl0, rl1, ci0, ci1, cl0, cl1


@triton.jit
def bilinear_score(plane, ri0, ri1, rl0, rl1, ci0, ci1, cl0, cl1, mask, W, ACC: tl.constexpr):
    """One class's F.interpolate score at the outputs of row taps (ri*, rl*) and column taps (ci*, cl*) of
    one input plane (W columns), blended in PyTorch's order (csrc/index/interpolate.h's blend, its
    multiply-adds fused as there) in ACC and
    rounded once to the plane's dtype, as F.interpolate stores it; returned in ACC."""
    x00 = tl.load(plane + ri0 * W + ci0, mask=mask, other=0.0).to(ACC)
    x01 = tl.load(plane + ri0 * W + ci1, mask=mask, other=0.0).to(ACC)
    x10 = tl.load(plane + ri1 * W + ci0, mask=mask, other=0.0).to(ACC)
    x11 = tl.load(plane + ri1 * W + ci1, mask=mask, other=0.0).to(ACC)
    # each step csrc/index/interpolate.h's blend2: a * wa + b * wb with the first product fused
    v = tl.fma(tl.fma(x00, cl0, x01 * cl1), rl0, tl.fma(x10, cl0, x11 * cl1) * rl1)
    return v.to(plane.dtype.element_ty).to(ACC)


@triton.jit
def take_class(v, c, best, label):
    """The running argmax's step for class c's scores v: c takes over where csrc/index/upsample_argmax.h's
    takes_over(v, best) holds (v above best, or v NaN where best is not: the first NaN wins, as in
    torch.argmax). Returns the new best and label."""
    take = (best == best) & ((v > best) | (v != v))
    return tl.where(take, v, best), tl.where(take, c, label)


@triton.jit
def group_tile(pid, groups, H, W, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, row0=0, col0=0):
    """The dense kernels' grid: pid -> (n, group, tile of the H x W positions from (row0, col0)), tile
    fastest so that neighbouring programs share their inputs. Returns n, the group, and the tile's rows,
    columns (both flattened to [BLOCK_H * BLOCK_W], row-major) and mask of the positions inside."""
    tiles_w = tl.cdiv(W, BLOCK_W)
    tiles = tl.cdiv(H, BLOCK_H) * tiles_w
    tile = pid % tiles
    ng = pid // tiles
    g = ng % groups
    n = ng // groups
    offs = tl.arange(0, BLOCK_H * BLOCK_W)
    rows = row0 + (tile // tiles_w) * BLOCK_H + offs // BLOCK_W
    cols = col0 + (tile % tiles_w) * BLOCK_W + offs % BLOCK_W
    return n, g, rows, cols, (rows < row0 + H) & (cols < col0 + W)


@triton.jit
def weight_task(groups, cin_g, cout_g, BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr):
    """The dense weight gradients' grid axis 0: (tap, group, input-channel block, output-channel block),
    output block fastest. Returns the group, the tap (kh * Kw + kw) and the blocks' channels within the
    group."""
    ci_tiles = tl.cdiv(cin_g, BLOCK_CI)
    co_tiles = tl.cdiv(cout_g, BLOCK_CO)
    pid = tl.program_id(0)
    co_t = pid % co_tiles
    rest = pid // co_tiles
    ci_t = rest % ci_tiles
    rest = rest // ci_tiles
    ci = ci_t * BLOCK_CI + tl.arange(0, BLOCK_CI)
    co = co_t * BLOCK_CO + tl.arange(0, BLOCK_CO)
    return rest % groups, rest // groups, ci, co


@triton.jit
def tap_chunk(kk, n_chunks, Kw, BLOCK_C: tl.constexpr):
    """Step kk of a dense kernel's one pipelined loop over (tap, channel chunk), chunk fastest: the tap
    (kh * Kw + kw), kh, kw and the chunk's channels within the group."""
    tap = kk // n_chunks
    return tap, tap // Kw, tap % Kw, (kk % n_chunks) * BLOCK_C + tl.arange(0, BLOCK_C)


@triton.jit
def channel(g, per_group, c, BIG: tl.constexpr):
    """Channel c of group g as an index into the image's channels: int64 when BIG (an image of 2**31
    elements or more), so that channel * plane offsets do not overflow."""
    ch = g * per_group + c
    if BIG:
        ch = ch.to(tl.int64)
    return ch


@triton.jit
def output_phases(i, j, oy, ox, sh, sw):
    """Cropped output (i, j) as full-output blocks and phases: p = i + oy = bi * sh + phase_h (likewise q, bj,
    phase_w), the per-phase sub-filter of upsample_skip.py's index math. Returns bi, phase_h, bj, phase_w."""
    p = i + oy
    q = j + ox
    bi = p // sh
    bj = q // sw
    return bi, p - bi * sh, bj, q - bj * sw


@triton.jit
def _score_tap(acc, x_img, w_ptr, g, co_l, th, tw, phases, omask, geo, ACC: tl.constexpr, BIG: tl.constexpr):
    # acc plus tap (th, tw) of class co_l of group g over the group's input channels
    cin_g, cout_g, H, W, Kh, Kw, sh, sw, _, _, _, _ = geo
    bi, phase_h, bj, phase_w = phases
    kh = phase_h + th * sh
    ih = bi - th
    kw = phase_w + tw * sw
    iw = bj - tw
    m = omask & (kh < Kh) & (ih >= 0) & (ih < H) & (kw < Kw) & (iw >= 0) & (iw < W)
    for ci in range(0, cin_g):
        ch = channel(g, cin_g, ci, BIG)
        xv = tl.load(x_img + ch * H * W + ih * W + iw, mask=m, other=0.0).to(ACC)
        wv = tl.load(w_ptr + ((ch * cout_g + co_l) * Kh + kh) * Kw + kw, mask=m, other=0.0).to(ACC)
        acc += xv * wv
    return acc


@triton.jit
def class_score(x_img, w_ptr, b_ptr, s_img, g, co_l, phases, i, j, omask, geo, TH, TW, HAS_BIAS, HAS_SKIP, ACC, BIG):
    """Class co_l of group g's score at cropped outputs (i, j) as upsample_skip stores it, the scores of
    upsample_argmax.py and upsample_cross_entropy.py: TH x TW sub-filter taps summed over the group's input
    channels in ACC, bias then skip (x_img's, s_img's image) added, one rounding to x's dtype; returned in ACC.
    phases: output_phases(i, j, ...); geo: (cin_g, cout_g, H, W, Kh, Kw, sh, sw, Hs, Ws, sy, sx). TH to BIG are the
    calling kernel's constexprs (a @triton.jit helper is specialised on every constexpr it is passed)."""
    acc = tl.zeros(omask.shape, dtype=ACC)
    if TH * TW <= MAX_UNROLLED_TAPS:
        for th in tl.static_range(TH):
            for tw in tl.static_range(TW):
                acc = _score_tap(acc, x_img, w_ptr, g, co_l, th, tw, phases, omask, geo, ACC, BIG)
    else:  # long filters (stride 1 with 16 taps and more): a runtime loop, or compiles take minutes
        for th in range(0, TH):
            for tw in range(0, TW):
                acc = _score_tap(acc, x_img, w_ptr, g, co_l, th, tw, phases, omask, geo, ACC, BIG)
    _, cout_g, _, _, _, _, _, _, Hs, Ws, sy, sx = geo
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * cout_g + co_l).to(ACC)
    if HAS_SKIP:
        s_plane = s_img + channel(g, cout_g, co_l, BIG) * Hs * Ws
        acc += tl.load(s_plane + (i + sy) * Ws + (j + sx), mask=omask, other=0.0).to(ACC)
    return acc.to(x_img.dtype.element_ty).to(ACC)


@triton.jit
def subfilter_tap(th, tw, phase_h, phase_w, bi, bj, sh, sw):
    """Sub-filter tap (th, tw) of the outputs at phase (phase_h, phase_w) of blocks (bi, bj) (upsample_skip.py's
    index math): the filter tap kh, the input row ih it reads, then kw and the input column iw."""
    return phase_h + th * sh, bi - th, phase_w + tw * sw, bj - tw


@triton.jit
def output_phase(i, j, oy, ox, sh, sw):
    """upsample_skip.py's index math at cropped outputs (i, j): the full-output coordinates p = i + oy = bi * sh
    + phase_h and q = j + ox = bj * sw + phase_w (>= 0); returns (phase_h, phase_w, bi, bj)."""
    p = i + oy
    q = j + ox
    bi = p // sh
    phase_h = p - bi * sh
    bj = q // sw
    phase_w = q - bj * sw
    return phase_h, phase_w, bi, bj


@triton.jit
def store_channels(ptr, n, C, c_glob, rows, cols, H, W, acc, pos_ok, c_ok, BIG: tl.constexpr):
    """The dense kernels' store: acc [positions, channels] at (rows, cols) of the H x W planes of channels
    c_glob of image n (C channels), rounded once to the tensor's dtype."""
    if BIG:
        c_glob = c_glob.to(tl.int64)
    img = ptr + n.to(tl.int64) * C * H * W
    mask = pos_ok[:, None] & c_ok[None, :]
    tl.store(img + c_glob[None, :] * H * W + (rows * W + cols)[:, None], acc.to(ptr.dtype.element_ty), mask=mask)
