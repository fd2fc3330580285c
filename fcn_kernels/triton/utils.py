"""Helpers shared by the Triton kernels and launchers of every op (Liger-Kernel style): autotuning, the
launch on the tensors' device, the dot arithmetic, index widths and the weight gradients' split count.
The kernels' program -> work decompositions are the @triton.jit helpers of _tiles.py.

FCN_KERNELS_TRITON_AUTOTUNE=0 (read at import) pins every autotuned kernel to its first config: no
tuning time, and one summation order in every process (see `autotune`).
"""

import os
from contextlib import nullcontext

import torch
import triton
import triton.language as tl

from ._interpreter import wrap_triton

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
AUTOTUNE = os.environ.get("FCN_KERNELS_TRITON_AUTOTUNE", "1") != "0"
INT32_LIMIT = 2**31
# Tap loops with at most this many taps are unrolled at compile time (tl.static_range); longer ones stay
# runtime loops, since unrolling a 16x16 or 64x64 filter (stride 1) compiles for minutes per config.
MAX_UNROLLED_TAPS = tl.constexpr(16)


# ---------------------------------------------------------------------------------------------------------
# autotuning
# ---------------------------------------------------------------------------------------------------------
def config(num_warps, num_stages=2, **blocks):
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


HW = ("BLOCK_H", "BLOCK_W")  # the block names of the kernels that tile positions


def configs(names, *rows):
    """One config per row (num_warps, num_stages, *block sizes), the block sizes named by `names`."""
    return [config(warps, stages, **dict(zip(names, blocks))) for warps, stages, *blocks in rows]


def autotune(configs, key):
    """triton.autotune over `configs` (keyed by the arguments `key`), pinned to configs[0], with no timing
    runs, under the interpreter (tuning there would time the interpreter) and when
    FCN_KERNELS_TRITON_AUTOTUNE=0: the tile shapes, and so the order in which the weight and bias gradients
    add their terms, are then the same in every process. The full list stays on the tuner as
    `all_configs`, which the AOT check (fcn_kernels.triton.aot) compiles."""

    def decorate(kernel):
        tuner = triton.autotune(configs if AUTOTUNE and not INTERPRET else configs[:1], key=key)(kernel)
        tuner.all_configs = list(configs)
        return tuner

    return decorate


# The dense weight gradients' FMA loop over positions, the same in upsample_skip.py and rarefied_conv2d.py.
BWD_WEIGHT_DENSE_FMA_CONFIGS = configs(HW, (4, 2, 2, 16), (4, 2, 4, 16), (8, 2, 4, 32))

# The bilinear forwards' output tiles (interpolate_cross_entropy.py, interpolate_argmax.py).
BILINEAR_CONFIGS = configs(HW, (4, 2, 8, 32), (4, 2, 4, 64), (8, 2, 8, 64))


# ---------------------------------------------------------------------------------------------------------
# launching
# ---------------------------------------------------------------------------------------------------------
def device_guard(device):
    """Makes `device` current for a launch: Triton launches on its current device and stream, not on the
    tensors' (triton-lang/triton#2441), as the CUDA glue's CUDAGuard does."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def launch(kernel, grid, *args, **constexprs):
    """Launches `kernel` (torch.compile sees it through wrap_triton) on the device of its first argument,
    a tensor."""
    with device_guard(args[0].device):
        wrap_triton(kernel)[grid](*args, **constexprs)


def tile_grid(programs, H, W):
    """The grid of the kernels that tile one H x W plane (_tiles.plane_tile, bilinear_tile): `programs` on
    axis 0, the BLOCK_H x BLOCK_W tiles on axes 1 and 2."""
    return lambda m: (programs, triton.cdiv(H, m["BLOCK_H"]), triton.cdiv(W, m["BLOCK_W"]))


def group_tile_grid(images, H, W, channel_tiles):
    """The grid of the kernels that tile H x W positions per (image, group) (_tiles.group_tile) on axis 0,
    `images` (N * groups) of them, and `channel_tiles` channel blocks on axis 1."""
    return lambda m: (images * triton.cdiv(H, m["BLOCK_H"]) * triton.cdiv(W, m["BLOCK_W"]), channel_tiles)


def upsample_geometry(x_shape, weight_shape, groups, stride, out_offset, out_size):
    """The argument groups of upsample_skip's and upsample_argmax's kernels: (Cin, Cout, groups, cin_g, cout_g) and
    (H, W, Kh, Kw, sh, sw, oy, ox, Ho, Wo)."""
    N, Cin, H, W = x_shape
    _, cout_g, Kh, Kw = weight_shape
    return (Cin, cout_g * groups, groups, Cin // groups, cout_g), (H, W, Kh, Kw, *stride, *out_offset, *out_size)


def upsample_operands(op, out, x, weight, bias, skip, skip_offset):
    """upsample_skip's and upsample_argmax's operands made contiguous (None stays None), after refusing planes
    past int32 offsets, and the skip's (Hs, Ws, sy, sx) ((0, 0, sy, sx) without a skip)."""
    check_plane_int32(op, x.shape, out.shape, *([skip.shape] if skip is not None else []))
    x, weight, bias, skip = (t.contiguous() if t is not None else None for t in (x, weight, bias, skip))
    return x, weight, bias, skip, ((*skip.shape[2:], *skip_offset) if skip is not None else (0, 0, *skip_offset))


def dense_constexprs(dtype, dot, blocks, *tensors):
    """The dense conv kernels' shared constexprs: tl.dot or the FMA loop (use_dot), its precision and operand
    type, the accumulator, int64 channel offsets for `tensors` (needs_int64) and the (input, output) channel
    blocks."""
    return dict(
        USE_DOT=dot,
        DOT_PREC=dot_precision(dtype),
        DOT_F32=dot_upcast(dtype),
        ACC=acc_dtype(dtype),
        BIG=needs_int64(*tensors),
        BLOCK_CI=blocks[0],
        BLOCK_CO=blocks[1],
    )


# ---------------------------------------------------------------------------------------------------------
# dot arithmetic and accumulation
# ---------------------------------------------------------------------------------------------------------
def acc_dtype(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def partial_dtype(dtype):
    """The dtype of the split partial sums that the launchers reduce in a fixed order."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def use_dot(cin_g, cout_g, dtype):
    """tl.dot over channels when both per-group channel counts are >= 8 (the [16, 16] minimum tile then
    wastes at most half) and the dtype has tensor-core support; otherwise the FMA loop."""
    return cin_g >= 8 and cout_g >= 8 and dtype != torch.float64


def dot_precision(dtype):
    """float32 dots are exact (IEEE) unless torch allows TF32 for float32 matmuls
    (torch.set_float32_matmul_precision("high" or "medium"))."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "ieee"


def dot_upcast(dtype):
    """Whether dot operands are widened to float32: only bfloat16 under the interpreter, which has no
    bfloat16 arithmetic."""
    return INTERPRET and dtype == torch.bfloat16


@triton.jit
def dot_operand(t, DOT_F32: tl.constexpr):
    # DOT_F32 (dot_upcast): operands go to tl.dot as float32; else native operands (bf16/fp16 tensor
    # cores; fp32 as DOT_PREC "ieee" or "tf32"), float32 accumulation.
    if DOT_F32:
        return t.to(tl.float32)
    else:
        return t


def pow2_clamp(n, lo, hi):
    """The power of two >= n, clamped to [lo, hi]: channel blocks."""
    return max(lo, min(hi, triton.next_power_of_2(max(1, n))))


# ---------------------------------------------------------------------------------------------------------
# index widths
# ---------------------------------------------------------------------------------------------------------
def needs_int64(*tensors):
    """Whether one image (batch element) of any tensor holds 2**31 elements or more: the kernels' BIG,
    channel offsets inside an image in int64."""
    return any(t is not None and t.dim() and t.numel() // max(1, t.shape[0]) >= INT32_LIMIT for t in tensors)


def check_plane_int32(op, *shapes):
    """In-plane offsets are int32 in every kernel: refuse a plane of 2**31 elements or more."""
    for s in shapes:
        if s[-1] * s[-2] >= INT32_LIMIT:
            raise ValueError(f"{op} (triton): a single plane of {tuple(s)} exceeds 2**31 elements")


def check_labels(op, target, classes, ignore_index):
    """Every label ignore_index or in [0, classes): else a ValueError naming the first that is not, as the C++
    ops' host layer words it (one device sync on CUDA). The fused losses' Triton ops call it first; while
    torch.compile traces (fake or functional tensors, no data) it checks nothing: their kernels compare labels
    and never index by them, so a bad label there gives a wrong statistic, never a bad read."""
    if target.dtype != torch.int64:
        raise TypeError(f"{op} (triton): target must be int64, got {target.dtype}")
    traced = (torch._subclasses.FakeTensor, torch._subclasses.functional_tensor.FunctionalTensor)
    if isinstance(target, traced) or target.numel() == 0:
        return
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if not bool(bad.any()):
        return
    k = int(bad.flatten().nonzero()[0])
    hw = target.shape[1] * target.shape[2]
    raise ValueError(
        f"{op}: target label {int(target.flatten()[k])} at (n, i, j) = ({k // hw}, {k % hw // target.shape[2]}, "
        f"{k % target.shape[2]}) is outside [0, {classes}) and is not ignore_index ({ignore_index})"
    )


# ---------------------------------------------------------------------------------------------------------
# split reductions (weight gradients)
# ---------------------------------------------------------------------------------------------------------
def sm_count(device):
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def splits(tasks, rows, device):
    """Programs per reduction task of a weight gradient: enough for ~4 waves of programs. It follows the
    GPU's SM count, so the terms' grouping (and the bits) differ between GPU models."""
    target = 4 * sm_count(device) * 4 if device.type == "cuda" else 2
    return max(1, min(triton.cdiv(target, max(1, tasks)), max(1, rows), 4096))
