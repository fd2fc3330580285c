// Per-element index math of upsample_skip, shared by the CPU and CUDA kernels.
//
// Along one axis, the full transposed convolution writes input i through filter
// tap k to full-output coordinate p = i * stride + k (0 <= k < K). The cropped
// output keeps p in [off, off + out), stored at p - off. Every function here
// answers "which (i, k) pairs meet" for one of the three passes, so that no
// kernel iterates over taps that contribute nothing.
#pragma once

#include "conv_geometry.h"
#include "host_device.h"
#include "plane.h"
#include "weight_grad.h"

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

// Sizes of one call, contiguous NCHW tensors; weight (Cin, Cout / groups, Kh, Kw); Ho, Wo: out_size.
struct Geometry : ConvGeometry {
  int64_t sh, sw;      // stride
  int64_t oy, ox;      // out_offset into the full output
  int64_t Hs, Ws;      // skip size (0 when there is no skip)
  int64_t sy, sx;      // skip_offset

  FCN_HOST_DEVICE int64_t w_index(int64_t ci, int64_t co_in_group, int64_t kh, int64_t kw) const {
    return ((ci * cout_per_group() + co_in_group) * Kh + kh) * Kw + kw;
  }
  FCN_HOST_DEVICE int64_t skip_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cout + c) * Hs + (i + sy)) * Ws + (j + sx);
  }
};

// The CUDA kernels' passes in the plane formulation of csrc/index/plane.h, checked on the host
// against naive loops by csrc/tests/test_element_math.cpp. In-plane offsets are I.

// Forward: plane (n, co) of the cropped output, before bias and skip; reduces over the group's
// input channels. Output (i, j) gathers input (ih, iw) through tap (p - ih * sh, q - iw * sw), for
// the inputs that reach full-output (p, q) = (i + oy, j + ox).
template <typename I>
struct ForwardPlane : PlaneLayout<I> {
  static constexpr bool kHasSkip = true;
  int64_t Cout;
  I H, W, Kh, Kw, sh, sw, oy, ox, Ho, Wo, Hs, Ws, sy, sx, cin_g, cout_g;

  static FCN_HOST_DEVICE ForwardPlane make(const Geometry& g) {
    return ForwardPlane{{forward_layout<I>(g)}, g.Cout, I(g.H), I(g.W), I(g.Kh), I(g.Kw), I(g.sh), I(g.sw),
                        I(g.oy), I(g.ox), I(g.Ho), I(g.Wo), I(g.Hs), I(g.Ws), I(g.sy), I(g.sx),
                        I(g.cin_per_group()), I(g.cout_per_group())};
  }
  static FCN_HOST_DEVICE int64_t span(const Geometry& g, int64_t V) {
    const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
    return imax(imax(cin_g * g.H * g.W, cin_g * cout_g * g.Kh * g.Kw),
                imax(imax((g.Ho + 1) * (g.Wo + V), (g.Hs + 1) * (g.Ws + V)),
                     imax(g.ox + g.Wo + V + g.Kw, g.oy + g.Ho + g.Kh) * imax(g.sh, g.sw)));
  }
  FCN_HOST_DEVICE int64_t weight_base(int64_t plane) const {
    const int64_t co = plane % Cout, grp = co / cout_g, co_l = co % cout_g;
    return ((grp * cin_g) * cout_g + co_l) * Kh * Kw;
  }
  FCN_HOST_DEVICE int64_t weight_stride() const { return int64_t(cout_g) * Kh * Kw; }
  FCN_HOST_DEVICE int64_t skip_offset(int64_t plane, I i, I j) const {
    return plane * Hs * Ws + (i + sy) * Ws + (j + sx);
  }

  template <int V, typename A, typename LoadX, typename Tile>
  FCN_HOST_DEVICE void accumulate(const LoadX& x, const Tile& tile, I tile_stride, I c0, I cn, I i, I j0,
                                  A (&acc)[V]) const {
    const I p = i + oy;
    const I ih_lo = ceil_div_at_least_0<I>(p - Kh + 1, sh), ih_hi = min_of<I>(H, p / sh + 1);
    I lo[V], hi[V];
    for (int v = 0; v < V; ++v) {
      const I q = j0 + v + ox;
      lo[v] = ceil_div_at_least_0<I>(q - Kw + 1, sw);
      hi[v] = min_of<I>(W, q / sw + 1);
    }
    for (I c = 0; c < cn; ++c)
      for (I ih = ih_lo; ih < ih_hi; ++ih) {
        const I xrow = ((c0 + c) * H + ih) * W, trow = c * tile_stride + (p - ih * sh) * Kw;
        for (int v = 0; v < V; ++v) {
          const I q = j0 + v + ox;
          for (I iw = lo[v]; iw < hi[v]; ++iw) acc[v] += x(xrow + iw) * tile(trow + (q - iw * sw));
        }
      }
  }
};

// Input gradient: plane (n, ci) of grad_x; reduces over the group's output channels. Input
// (ih, iw) collects grad_out through the taps by which it reaches the crop window.
template <typename I>
struct InputGradPlane : PlaneLayout<I> {
  int64_t Cin;
  I H, W, Kh, Kw, sh, sw, oy, ox, Ho, Wo, cout_g;

  static FCN_HOST_DEVICE InputGradPlane make(const Geometry& g) {
    return InputGradPlane{{input_grad_layout<I>(g)}, g.Cin, I(g.H), I(g.W), I(g.Kh), I(g.Kw), I(g.sh), I(g.sw),
                          I(g.oy), I(g.ox), I(g.Ho), I(g.Wo), I(g.cout_per_group())};
  }
  static FCN_HOST_DEVICE int64_t span(const Geometry& g, int64_t V) {
    const int64_t cout_g = g.cout_per_group();
    return imax(imax(cout_g * (g.Ho + 1) * (g.Wo + 1), cout_g * g.Kh * g.Kw),
                imax((g.H + 1) * (g.W + V), (imax(g.H, g.W) + V) * imax(g.sh, g.sw) + imax(g.Kh, g.Kw) +
                                                imax(g.oy + g.Ho, g.ox + g.Wo)));
  }
  FCN_HOST_DEVICE int64_t weight_base(int64_t plane) const { return (plane % Cin) * cout_g * Kh * Kw; }
  FCN_HOST_DEVICE int64_t weight_stride() const { return int64_t(Kh) * Kw; }

  template <int V, typename A, typename LoadG, typename Tile>
  FCN_HOST_DEVICE void accumulate(const LoadG& go, const Tile& tile, I tile_stride, I c0, I cn, I ih, I iw0,
                                  A (&acc)[V]) const {
    const I kh_lo = max_of<I>(0, oy - ih * sh), kh_hi = min_of<I>(Kh, oy + Ho - ih * sh);
    I lo[V], hi[V];
    for (int v = 0; v < V; ++v) {
      lo[v] = max_of<I>(0, ox - (iw0 + v) * sw);
      hi[v] = min_of<I>(Kw, ox + Wo - (iw0 + v) * sw);
    }
    for (I c = 0; c < cn; ++c)
      for (I kh = kh_lo; kh < kh_hi; ++kh) {
        const I grow = ((c0 + c) * Ho + ih * sh + kh - oy) * Wo, trow = c * tile_stride + kh * Kw;
        for (int v = 0; v < V; ++v) {
          const I col = (iw0 + v) * sw - ox;
          for (I kw = lo[v]; kw < hi[v]; ++kw) acc[v] += go(grow + col + kw) * tile(trow + kw);
        }
      }
  }
};

// Weight gradient in the split reduction of csrc/index/weight_grad.h: pair (ci, co_l), term rows
// the input rows ih; tap (kh, kw) joins input (ih, iw) with output (ih * sh + kh - oy, iw * sw + kw - ox)
// for the inputs that it carries into the crop window.
struct WeightGradOp {
  Geometry g;
  FCN_HOST_DEVICE int64_t pairs() const { return g.Cin * g.cout_per_group(); }
  FCN_HOST_DEVICE int64_t taps() const { return g.Kh * g.Kw; }
  FCN_HOST_DEVICE int64_t kw() const { return g.Kw; }
  FCN_HOST_DEVICE int64_t images() const { return g.N; }
  FCN_HOST_DEVICE int64_t term_rows() const { return g.H; }
  FCN_HOST_DEVICE Range row_range(int64_t kh) const { return inputs_in_window(kh, g.sh, g.oy, g.Ho, g.H); }
  FCN_HOST_DEVICE ColMap col_map(int64_t kw) const {
    return ColMap{inputs_in_window(kw, g.sw, g.ox, g.Wo, g.W), 0, g.sw, kw - g.ox};
  }
  FCN_HOST_DEVICE int64_t x_row(int64_t n, int64_t pair, int64_t, int64_t r) const {
    return g.x_index(n, pair / g.cout_per_group(), r, 0);
  }
  FCN_HOST_DEVICE int64_t go_row(int64_t n, int64_t pair, int64_t kh, int64_t r) const {
    const int64_t ci = pair / g.cout_per_group(), co_l = pair % g.cout_per_group();
    return g.out_index(n, (ci / g.cin_per_group()) * g.cout_per_group() + co_l, r * g.sh + kh - g.oy, 0);
  }
};

}  // namespace upsample_skip
}  // namespace fcn_kernels
