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

from ._tiles import class_score, output_phases, plane_tile
from .utils import acc_dtype, autotune, check_plane_int32, config, launch, needs_int64

ARGMAX_CONFIGS = [
    config(4, BLOCK_H=4, BLOCK_W=64),
    config(4, BLOCK_H=8, BLOCK_W=64),
    config(8, BLOCK_H=8, BLOCK_W=128),
    config(8, BLOCK_H=16, BLOCK_W=64),
]


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
        take = (best == best) & ((v > best) | (v != v))
        best = tl.where(take, v, best)
        label = tl.where(take, co, label)
    tl.store(out_ptr + n * Ho * Wo + i * Wo + j, label.to(tl.int64), mask=omask)


_argmax = autotune(ARGMAX_CONFIGS, key=["Cout", "cin_g", "Ho", "Wo", "sh", "sw"])(_argmax_kernel)

AUTOTUNED = {"argmax": _argmax}  # for the AOT check (fcn_kernels.triton.aot)


def forward(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    """int64 labels (N, Ho, Wo) (arguments normalised and validated)."""
    (sh, sw), (oy, ox), (Ho, Wo), (sy, sx) = stride, out_offset, out_size, skip_offset
    N, Cin, H, W = x.shape
    _, cout_g, Kh, Kw = weight.shape
    Cout = cout_g * groups
    out = torch.empty((N, Ho, Wo), device=x.device, dtype=torch.int64)
    if out.numel() == 0:
        return out
    x, weight = x.contiguous(), weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    skip = skip.contiguous() if skip is not None else None
    Hs, Ws = (skip.shape[2], skip.shape[3]) if skip is not None else (0, 0)
    check_plane_int32("upsample_argmax", x.shape, out.shape, *([skip.shape] if skip is not None else []))

    def grid(m):
        return (N, triton.cdiv(Ho, m["BLOCK_H"]), triton.cdiv(Wo, m["BLOCK_W"]))

    launch(
        _argmax,
        grid,
        x,
        weight,
        bias if bias is not None else x,
        skip if skip is not None else x,
        out,
        Cin,
        Cout,
        Cin // groups,
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
        TH=triton.cdiv(Kh, sh),
        TW=triton.cdiv(Kw, sw),
        HAS_BIAS=bias is not None,
        HAS_SKIP=skip is not None,
        ACC=acc_dtype(x.dtype),
        BIG=needs_int64(x, skip),
    )
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
    return forward(x, weight, bias, skip, tuple(stride), groups, tuple(out_offset), tuple(out_size), tuple(skip_offset))


def upsample_argmax(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    """Entry point of fcn_kernels.upsample_argmax for backend "triton" (arguments already validated and
    normalised to tuples, out_size filled in)."""
    return torch.ops.fcn_kernels.upsample_argmax_triton(
        x, weight, bias, skip, list(stride), groups, list(out_offset), list(out_size), list(skip_offset)
    )
