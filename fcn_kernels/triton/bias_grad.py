"""The bias gradient of every op in Triton: grad_out summed per channel over (N, H, W), as per-tile
partial sums that a fixed-order sum reduces. No atomics: the same bits on every call within a process. The
tile shapes, and so the grouping, are the autotuned config's: FCN_KERNELS_TRITON_AUTOTUNE=0 pins it, for the
same bits in every process on one GPU model, never across GPU models (docs/DESIGN.md §4.2). The same pass can
also write the gradient of a tensor whose window was added to the output (upsample_skip's skip): grad_out
placed at the window's offset, zeros elsewhere.

The triton_op backward_bias_skip_triton is the bias (and skip) gradient of both Triton op families.
"""

from typing import List

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from .utils import acc_dtype, autotune, configs, launch, partial_dtype


@triton.jit
def _bias_grad_kernel(
    go_ptr,
    gs_ptr,
    part_ptr,
    Ho,
    Wo,
    Hs,
    Ws,
    sy,
    sx,
    ROWS,
    WRITE_SKIP: tl.constexpr,
    NEED_BIAS: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    # walks the skip plane (Hs, Ws) when WRITE_SKIP, else grad_out's own plane (then Hs, Ws = Ho, Wo and
    # sy = sx = 0)
    plane = tl.program_id(0)
    tile = tl.program_id(1)
    go_plane = go_ptr + plane.to(tl.int64) * Ho * Wo
    gs_plane = gs_ptr + plane.to(tl.int64) * Hs * Ws
    cols = tl.arange(0, BLOCK_W)
    acc = tl.zeros([BLOCK_W], dtype=ACC)
    for y in range(tile * ROWS, tl.minimum(tile * ROWS + ROWS, Hs)):
        i = y - sy
        row_in = (i >= 0) & (i < Ho)
        for x0 in range(0, Ws, BLOCK_W):
            xs = x0 + cols
            j = xs - sx
            inside = row_in & (j >= 0) & (j < Wo) & (xs < Ws)
            v = tl.load(go_plane + i * Wo + j, mask=inside, other=0.0)
            if WRITE_SKIP:
                tl.store(gs_plane + y * Ws + xs, v, mask=xs < Ws)
            if NEED_BIAS:
                acc += v.to(ACC)
    if NEED_BIAS:
        tl.store(part_ptr + plane.to(tl.int64) * tl.num_programs(1) + tile, tl.sum(acc, axis=0))


CONFIGS = configs(("BLOCK_W",), (4, 2, 128), (4, 2, 256), (8, 2, 512))
_bias_grad = autotune(CONFIGS, key=["Ws"])(_bias_grad_kernel)

# (name, autotuned kernel): the AOT check (fcn_kernels.triton.aot) compiles each with each of its configs.
AUTOTUNED = {"bias_grad": _bias_grad}

ROWS = 8  # rows of a plane per program


def backward_bias(grad_out, need_bias=True, skip_size=None, skip_offset=(0, 0)):
    """(grad bias [C] or None, grad skip or None) in one pass over grad_out [N, C, Ho, Wo]; skip_size None:
    no skip gradient."""
    N, C, Ho, Wo = grad_out.shape
    write_skip = skip_size is not None
    if write_skip:
        Hs, Ws = skip_size[2], skip_size[3]
        sy, sx = skip_offset
    else:
        Hs, Ws, sy, sx = Ho, Wo, 0, 0
    gs = grad_out.new_empty((N, C, Hs, Ws)) if write_skip else None
    if N * C == 0 or Hs * Ws == 0:
        gb = grad_out.new_zeros((C,)) if need_bias else None
        if write_skip:
            gs.zero_()
        return gb, gs
    grad_out = grad_out.contiguous()
    tiles = triton.cdiv(Hs, ROWS)
    part = (
        torch.empty((N, C, tiles), device=grad_out.device, dtype=partial_dtype(grad_out.dtype)) if need_bias else None
    )
    planes = (Ho, Wo, Hs, Ws, sy, sx)  # grad_out's plane, the walked plane and grad_out's offset in it
    outputs = (gs if write_skip else grad_out, part if need_bias else grad_out)
    flags = dict(WRITE_SKIP=write_skip, NEED_BIAS=need_bias, ACC=acc_dtype(grad_out.dtype))
    launch(_bias_grad, (N * C, tiles), grad_out, *outputs, *planes, ROWS, **flags)
    gb = part.sum((0, 2)).to(grad_out.dtype) if need_bias else None
    return gb, gs


@triton_op("fcn_kernels::backward_bias_skip_triton", mutates_args={})
def backward_bias_skip_triton(
    grad_out: torch.Tensor, skip_size: List[int], skip_offset: List[int], need_bias: bool
) -> List[torch.Tensor]:
    """[grad skip, grad bias] of both Triton op families; empty tensors for those not wanted (skip_size [],
    need_bias False)."""
    gb, gs = backward_bias(grad_out, need_bias, list(skip_size) or None, tuple(skip_offset))
    empty = grad_out.new_empty((0,))
    return [gs if gs is not None else empty, gb if gb is not None else empty.clone()]
