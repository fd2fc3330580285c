// The plane formulation of the CUDA gathers (csrc/cuda/plane_kernel.cuh), shared with the host
// tests that replay it (csrc/tests/test_element_math.cpp).
//
// A pass (a forward, or an input gradient) writes planes of rows x cols elements, one per
// (n, channel) of its result. Each plane sums over `reduce()` channels of the pass's input operand,
// through `taps()` filter taps per channel. A thread computes a run of V consecutive columns of one
// row, so that its output leaves in one 16-byte store; a block holds the weights of its plane (a
// slab of the reduced channels at a time) in a tile, tile[c * stride + k] for local channel c and
// tap k = kh * Kw + kw. Offsets inside a plane are of type I, int32_t whenever `span()` fits: the
// 64-bit plane bases are computed once per plane, not per element.
//
// An op type (csrc/index/upsample_skip.h, csrc/index/rarefied_conv.h) provides
//   planes(), rows(), cols(), out_channels()   int64_t / I / I / int64_t (bias index: plane % out_channels())
//   reduce(), taps()                           I
//   in_offset(plane)                           first element of the plane's input operand channels
//   weight_base(plane), weight_stride()        weight of (local channel c, tap k): base + c * stride + k
//   kHasSkip, skip_offset(plane, i, j)         the skip element added at output (i, j), if any
//   accumulate<V>(in, tile, tile_stride, c0, cn, i, j0, acc)
//                                              acc[v] += the terms of channels c0 .. c0 + cn - 1 of output
//                                              (i, j0 + v); tile(c * tile_stride + k) holds channel c0 + c.
//                                              Columns past cols() are computed in bounds and dropped.
//   span()                                     one past the largest in-plane offset, V columns of slack
#pragma once

#include "host_device.h"

namespace fcn_kernels {

// Row and first column of run r of a plane with `cols` columns, V columns a run.
template <int V, typename I>
FCN_HOST_DEVICE void run_start(I cols, I r, I& i, I& j0) {
  const I per_row = (cols + V - 1) / V;
  i = r / per_row;
  j0 = (r - i * per_row) * V;
}

template <int V, typename I>
FCN_HOST_DEVICE I run_count(I rows, I cols) { return rows * ((cols + V - 1) / V); }

// Largest in-plane offset the int32_t fast path may take (headroom for the columns of a last run).
constexpr int64_t kMaxSpan32 = (int64_t(1) << 31) - 64;

}  // namespace fcn_kernels
