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
// An op type (csrc/index/upsample_skip.h, csrc/index/rarefied_conv2d.h) is a PlaneLayout (below:
// planes(), rows(), cols(), out_channels() for the bias, reduce(), taps(), in_offset(plane)) and provides
//   weight_base(plane), weight_stride()        weight of (local channel c, tap k): base + c * stride + k
//   kHasSkip, skip_offset(plane, i, j)         the skip element added at output (i, j), if it has one
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

// Where a pass's planes lie: `channels` planes per image, rows x cols each, each summing `reduce()`
// channels of its group of the input operand (in_channels planes of in_rows x in_cols per image).
template <typename I>
struct PlaneLayout {
  static constexpr bool kHasSkip = false;  // ops with a skip input hide these two
  int64_t images, channels, in_channels, group_channels;  // group_channels: planes per group
  I out_rows, out_cols, in_rows, in_cols, group_reduce, filter_taps;

  FCN_HOST_DEVICE int64_t skip_offset(int64_t, I, I) const { return 0; }

  FCN_HOST_DEVICE int64_t planes() const { return images * channels; }
  FCN_HOST_DEVICE I rows() const { return out_rows; }
  FCN_HOST_DEVICE I cols() const { return out_cols; }
  FCN_HOST_DEVICE int64_t out_channels() const { return channels; }
  FCN_HOST_DEVICE I reduce() const { return group_reduce; }
  FCN_HOST_DEVICE I taps() const { return filter_taps; }
  FCN_HOST_DEVICE int64_t in_offset(int64_t plane) const {
    const int64_t n = plane / channels, grp = (plane % channels) / group_channels;
    return (n * in_channels + grp * group_reduce) * in_rows * in_cols;
  }
};

// Both ops' passes, from their Geometry (same field names): a forward writes planes (n, co) of
// the output from the group's channels of x; an input gradient writes planes (n, ci) of grad_x from
// the group's channels of grad_out.
template <typename I, typename G>
FCN_HOST_DEVICE PlaneLayout<I> forward_layout(const G& g) {
  return PlaneLayout<I>{g.N, g.Cout, g.Cin, g.cout_per_group(), I(g.Ho), I(g.Wo), I(g.H), I(g.W),
                        I(g.cin_per_group()), I(g.Kh * g.Kw)};
}
template <typename I, typename G>
FCN_HOST_DEVICE PlaneLayout<I> input_grad_layout(const G& g) {
  return PlaneLayout<I>{g.N, g.Cin, g.Cout, g.cin_per_group(), I(g.H), I(g.W), I(g.Ho), I(g.Wo),
                        I(g.cout_per_group()), I(g.Kh * g.Kw)};
}

// Largest span() the int32_t fast path takes. The kernel's thread index (block * 256 + thread) runs
// past the plane's run count by less than a block: the headroom keeps it in range too.
constexpr int64_t kMaxSpan32 = (int64_t(1) << 31) - 1024;

}  // namespace fcn_kernels
