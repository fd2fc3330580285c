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

// Per-element formulations, used as-is by the CUDA kernels (one thread per element) and checked
// on the host by csrc/tests/test_index_math.cpp. Loaders are functors mapping a flat index to the
// accumulation type A, so the same code reads float, double, half or bfloat16 on either side.

// Cropped output (n, co, i, j) of the transposed conv, before bias and skip: a gather over the
// inputs and taps that reach it.
template <typename A, typename LoadX, typename LoadW>
FCN_HOST_DEVICE A forward_element(const Geometry& g, const LoadX& x, const LoadW& w, int64_t n, int64_t co,
                                  int64_t i, int64_t j) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t grp = co / cout_g, co_l = co % cout_g;
  const int64_t p = i + g.oy, q = j + g.ox;
  const Range rh = inputs_for_output(p, g.sh, g.Kh, g.H), rw = inputs_for_output(q, g.sw, g.Kw, g.W);
  A acc = A(0);
  for (int64_t ci = grp * cin_g; ci < (grp + 1) * cin_g; ++ci)
    for (int64_t ih = rh.begin; ih < rh.end; ++ih)
      for (int64_t iw = rw.begin; iw < rw.end; ++iw)
        acc += x(g.x_index(n, ci, ih, iw)) * w(g.w_index(ci, co_l, p - ih * g.sh, q - iw * g.sw));
  return acc;
}

// grad_x (n, ci, ih, iw): grad_out over the taps by which this input reaches the crop window.
template <typename A, typename LoadG, typename LoadW>
FCN_HOST_DEVICE A backward_input_element(const Geometry& g, const LoadG& go, const LoadW& w, int64_t n,
                                         int64_t ci, int64_t ih, int64_t iw) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t grp = ci / cin_g;
  const Range rh = taps_in_window(ih, g.sh, g.Kh, g.oy, g.Ho), rw = taps_in_window(iw, g.sw, g.Kw, g.ox, g.Wo);
  A acc = A(0);
  for (int64_t co_l = 0; co_l < cout_g; ++co_l)
    for (int64_t kh = rh.begin; kh < rh.end; ++kh)
      for (int64_t kw = rw.begin; kw < rw.end; ++kw)
        acc += go(g.out_index(n, grp * cout_g + co_l, ih * g.sh + kh - g.oy, iw * g.sw + kw - g.ox)) *
               w(g.w_index(ci, co_l, kh, kw));
  return acc;
}

// grad_w (ci, co_l, kh, kw) is a sum of weight_grad_terms(...) products, the k-th given by
// weight_grad_term: a flat index over (n, ih, iw) so that a reduction can split it in a fixed order.
FCN_HOST_DEVICE int64_t weight_grad_terms(const Geometry& g, int64_t kh, int64_t kw) {
  return g.N * inputs_in_window(kh, g.sh, g.oy, g.Ho, g.H).size() *
         inputs_in_window(kw, g.sw, g.ox, g.Wo, g.W).size();
}

template <typename A, typename LoadX, typename LoadG>
FCN_HOST_DEVICE A weight_grad_term(const Geometry& g, const LoadX& x, const LoadG& go, int64_t ci, int64_t co_l,
                                   int64_t kh, int64_t kw, int64_t k) {
  const Range rh = inputs_in_window(kh, g.sh, g.oy, g.Ho, g.H), rw = inputs_in_window(kw, g.sw, g.ox, g.Wo, g.W);
  const int64_t iw = rw.begin + k % rw.size(), ih = rh.begin + (k / rw.size()) % rh.size();
  const int64_t n = k / (rw.size() * rh.size());
  const int64_t co = (ci / g.cin_per_group()) * g.cout_per_group() + co_l;
  return x(g.x_index(n, ci, ih, iw)) * go(g.out_index(n, co, ih * g.sh + kh - g.oy, iw * g.sw + kw - g.ox));
}

}  // namespace upsample_skip
}  // namespace fcn_kernels
