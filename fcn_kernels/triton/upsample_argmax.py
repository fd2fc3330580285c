"""upsample_argmax in Triton (docs/DESIGN.md §2): labels of FCN's last stage, never writing the scores.

One program per BLOCK_H x BLOCK_W tile of one image's cropped output. A loop over the classes computes each
class's scores on the tile with upsample_skip's per-phase sub-filter (full-output p = b * s + r receives
x[b - t] through tap r + t * s, TH x TW taps per output; see upsample_skip.py), summed over taps then the
group's input channels in float32 (float64 for float64) as upsample_skip's FMA kernels sum, bias then skip
added, and one rounding to x's dtype, the values upsample_skip would store (_tiles.class_score, shared with
upsample_cross_entropy.py). The running maximum and its class follow torch.argmax: NaN above every number,
the lowest class on ties.
Batch and plane offsets are int64; channel offsets inside one image become int64 (constexpr BIG) when an
image holds 2**31 elements or more, as in upsample_skip.py.
"""

from typing import List, Optional

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from ._tiles import class_score, output_phases, plane_tile, take_class
from .utils import (
    HW,
    acc_dtype,
    autotune,
    configs,
    launch,
    needs_int64,
    tile_grid,
    upsample_geometry,
    upsample_operands,
)

ARGMAX_CONFIGS = configs(HW, (4, 2, 4, 64), (4, 2, 8, 64), (8, 2, 8, 128), (8, 2, 16, 64))


@triton.jit
def _argmax_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    s_ptr,
    out_ptr,
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
    best = tl.full([BLOCK_H, BLOCK_W], float("-inf"), ACC)  # class 0 always takes over from -inf or ties it
    label = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.int32)
    for co in range(0, Cout):
        g = co // cout_g
        v = class_score(
            x_img,
            w_ptr,
            b_ptr,
            s_img,
            g,
            co - g * cout_g,
            phases,
            i,
            j,
            omask,
            geo,
            TH,
            TW,
            HAS_BIAS,
            HAS_SKIP,
            ACC,
            BIG,
        )
        best, label = take_class(v, co, best, label)
    tl.store(out_ptr + n * Ho * Wo + i * Wo + j, label.to(tl.int64), mask=omask)


_argmax = autotune(ARGMAX_CONFIGS, key=["Cout", "cin_g", "Ho", "Wo", "sh", "sw"])(_argmax_kernel)

AUTOTUNED = {"argmax": _argmax}  # for the AOT check (fcn_kernels.triton.aot)


def forward(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    """int64 labels (N, Ho, Wo) (arguments normalised and validated)."""
    (Cin, Cout, _, cin_g, cout_g), geom = upsample_geometry(x.shape, weight.shape, groups, stride, out_offset, out_size)
    N, (Ho, Wo), (Kh, Kw), (sh, sw) = x.shape[0], out_size, weight.shape[2:], stride
    out = torch.empty((N, Ho, Wo), device=x.device, dtype=torch.int64)
    if out.numel() == 0:
        return out
    x, weight, bias, skip, skip_geom = upsample_operands("upsample_argmax", out, x, weight, bias, skip, skip_offset)
    args = (x, weight, bias if bias is not None else x, skip if skip is not None else x, out, Cin, Cout, cin_g, cout_g)
    flags = dict(TH=triton.cdiv(Kh, sh), TW=triton.cdiv(Kw, sw), ACC=acc_dtype(x.dtype), BIG=needs_int64(x, skip))
    has = dict(HAS_BIAS=bias is not None, HAS_SKIP=skip is not None)
    launch(_argmax, tile_grid(N, Ho, Wo), *args, *geom, *skip_geom, **flags, **has)
    return out


@triton_op("fcn_kernels::upsample_argmax_triton", mutates_args={})
def upsample_argmax_triton(
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
    return forward(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset)  # lists serve as pairs


def upsample_argmax(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    """Entry point of fcn_kernels.upsample_argmax for backend "triton" (arguments already validated and
    normalised to tuples, out_size filled in)."""
    return torch.ops.fcn_kernels.upsample_argmax_triton(
        x, weight, bias, skip, list(stride), groups, list(out_offset), list(out_size), list(skip_offset)
    )
