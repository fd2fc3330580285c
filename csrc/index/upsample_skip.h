// Per-element index math of upsample_skip, shared by the CPU and CUDA kernels.
//
// Along one axis, the full transposed convolution writes input i through filter
// tap k to full-output coordinate p = i * stride + k (0 <= k < K). The cropped
// output keeps p in [off, off + out), stored at p - off. Every function here
// answers "which (i, k) pairs meet" for one of the three passes, so that no
// kernel iterates over taps that contribute nothing.
#pragma once

#include "host_device.h"

namespace fcn_kernels {
namespace upsample_skip {

// Forward (gather): inputs i feeding full-output p, each through tap k = p - i * stride.
// All p of one phase (p mod stride) see the same taps k = phase + t * stride.
FCN_HOST_DEVICE Range inputs_for_output(int64_t p, int64_t stride, int64_t K, int64_t in_size) {
  return Range{imax(0, ceil_div(p - K + 1, stride)), imin(in_size, floor_div(p, stride) + 1)};
}

// Indices m with off <= m * stride + k < off + out: the inputs that tap k carries
// into the crop window (weight gradient), and, with k the phase, the positions
// m of that phase inside the window (forward, column de-interleave).
FCN_HOST_DEVICE Range window_positions(int64_t k, int64_t stride, int64_t off, int64_t out) {
  return Range{ceil_div(off - k, stride), ceil_div(off + out - k, stride)};
}

FCN_HOST_DEVICE Range inputs_in_window(int64_t k, int64_t stride, int64_t off, int64_t out,
                                       int64_t in_size) {
  const Range r = window_positions(k, stride, off, out);
  return Range{imax(0, r.begin), imin(in_size, r.end)};
}

// Input gradient (scatter turned gather): taps k by which input i reaches the window.
FCN_HOST_DEVICE Range taps_in_window(int64_t i, int64_t stride, int64_t K, int64_t off,
                                     int64_t out) {
  return Range{imax(0, off - i * stride), imin(K, off + out - i * stride)};
}

// Extent of the uncropped transposed-conv output (no padding, no output_padding).
FCN_HOST_DEVICE int64_t full_size(int64_t in_size, int64_t stride, int64_t K) {
  return (in_size - 1) * stride + K;
}

// Sizes of one call, contiguous NCHW tensors; weight (Cin, Cout / groups, Kh, Kw).
struct Geometry {
  int64_t N, Cin, H, W;
  int64_t Cout, groups, Kh, Kw;
  int64_t sh, sw;      // stride
  int64_t oy, ox;      // out_offset into the full output
  int64_t Ho, Wo;      // out_size
  int64_t Hs, Ws;      // skip size (0 when there is no skip)
  int64_t sy, sx;      // skip_offset

  FCN_HOST_DEVICE int64_t cin_per_group() const { return Cin / groups; }
  FCN_HOST_DEVICE int64_t cout_per_group() const { return Cout / groups; }
  FCN_HOST_DEVICE int64_t x_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cin + c) * H + i) * W + j;
  }
  FCN_HOST_DEVICE int64_t w_index(int64_t ci, int64_t co_in_group, int64_t kh, int64_t kw) const {
    return ((ci * cout_per_group() + co_in_group) * Kh + kh) * Kw + kw;
  }
  FCN_HOST_DEVICE int64_t out_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cout + c) * Ho + i) * Wo + j;
  }
  FCN_HOST_DEVICE int64_t skip_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cout + c) * Hs + (i + sy)) * Ws + (j + sx);
  }
};

}  // namespace upsample_skip
}  // namespace fcn_kernels
