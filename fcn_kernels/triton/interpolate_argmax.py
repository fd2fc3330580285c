"""interpolate_argmax in Triton (docs/DESIGN.md §2.6): F.interpolate(x, size, mode="bilinear").argmax(1)
without the (N, C, Ho, Wo) scores.

One program per BLOCK_H x BLOCK_W tile of one image's output; a loop over the classes computes each class's
score on the tile as F.interpolate computes and stores it (_tiles.bilinear_taps and bilinear_score: PyTorch's
source coordinates and blend order in float32, float64 for float64 x, rounded to x's dtype), as the C++
kernel does, and keeps the first maximum in torch.argmax's order: NaN above every number, the lowest class
on ties.
"""

from typing import List

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from ._tiles import bilinear_score, bilinear_tile, channel, take_class
from .utils import BILINEAR_CONFIGS, acc_dtype, autotune, check_plane_int32, launch, needs_int64, tile_grid


@triton.jit
def _argmax_kernel(
    x_ptr,
    out_ptr,
    C,
    H,
    W,
    Ho,
    Wo,
    ALIGN: tl.constexpr,
    ACC: tl.constexpr,
    BIG: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    n, i, j, omask, ri0, ri1, rl0, rl1, ci0, ci1, cl0, cl1 = bilinear_tile(H, W, Ho, Wo, ALIGN, ACC, BLOCK_H, BLOCK_W)
    x_img = x_ptr + n * C * H * W
    best = tl.full([BLOCK_H, BLOCK_W], float("-inf"), ACC)  # class 0 always takes over from -inf or ties it
    label = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.int32)
    for c in range(0, C):
        plane = x_img + channel(0, 0, c, BIG) * H * W
        v = bilinear_score(plane, ri0, ri1, rl0, rl1, ci0, ci1, cl0, cl1, omask, W, ACC)
        best, label = take_class(v, c, best, label)
    tl.store(out_ptr + n * Ho * Wo + i * Wo + j, label.to(tl.int64), mask=omask)


_argmax = autotune(BILINEAR_CONFIGS, key=["C", "Ho", "Wo"])(_argmax_kernel)

AUTOTUNED = {"ia_argmax": _argmax}  # for the AOT check (fcn_kernels.triton.aot)


@triton_op("fcn_kernels::interpolate_argmax_triton", mutates_args={})
def interpolate_argmax_triton(x: torch.Tensor, size: List[int], align_corners: bool) -> torch.Tensor:
    op = "interpolate_argmax (triton)"
    if x.dim() != 4 or not x.is_floating_point() or min(x.shape[1:]) < 1:
        raise RuntimeError(f"{op}: x must be a non-empty 4-D floating tensor (N, C, H, W), got {tuple(x.shape)}")
    if len(size) != 2 or min(size) < 1:
        raise RuntimeError(f"{op}: size must be 2 sizes >= 1, got {list(size)}")
    N, C, H, W = x.shape
    Ho, Wo = size
    out = torch.empty((N, Ho, Wo), device=x.device, dtype=torch.int64)
    if out.numel() == 0:
        return out
    check_plane_int32(op, x.shape, out.shape)
    x = x.contiguous()
    flags = dict(ALIGN=align_corners, ACC=acc_dtype(x.dtype), BIG=needs_int64(x))
    launch(_argmax, tile_grid(N, Ho, Wo), x, out, C, H, W, Ho, Wo, **flags)
    return out


def interpolate_argmax(x, size, align_corners):
    """Entry point of fcn_kernels.interpolate_argmax for backend "triton" (arguments validated, size a pair)."""
    return torch.ops.fcn_kernels.interpolate_argmax_triton(x, list(size), align_corners)
