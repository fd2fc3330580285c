// Per-element index math of rarefied_conv2d, shared by the CPU and CUDA kernels.
//
// rarefied_conv2d is F.conv2d(x, w, b, stride=1, padding=pad, dilation=r): along
// one axis, output o reads input i = o - pad + k * r through filter tap k
// (0 <= k < K); positions outside [0, in) are the zero padding. The rarefied
// filter of the paper (zeros between the taps) is never formed: only the K real
// taps are visited, each at its offset k * r.
//
// The paper's phase decomposition (3.2) falls out of this: output o = a + r * u
// reads inputs a - pad + r * (u + k), so output phase a (o mod r) is an ordinary
// (dilation-1) convolution of input phase (a - pad) mod r. The CPU GEMM path
// goes one step further (see "wide layout" below): in the flattened, padded input
// every tap is one constant shift, for all phases at once.
#pragma once

#include "conv_geometry.h"
#include "host_device.h"
#include "plane.h"
#include "weight_grad.h"

namespace fcn_kernels {
namespace rarefied_conv2d {

// Output extent along one axis (>= 1 for a valid call).
FCN_HOST_DEVICE int64_t out_size(int64_t in, int64_t pad, int64_t K, int64_t r) {
  return in + 2 * pad - (K - 1) * r;
}

// Input coordinate read by output o through tap k, and its inverse.
FCN_HOST_DEVICE int64_t input_of(int64_t o, int64_t k, int64_t r, int64_t pad) { return o - pad + k * r; }
FCN_HOST_DEVICE int64_t output_of(int64_t i, int64_t k, int64_t r, int64_t pad) { return i + pad - k * r; }

// Outputs o in [0, out) whose tap k reads a real input (forward gather, weight gradient).
FCN_HOST_DEVICE Range outputs_for_tap(int64_t k, int64_t r, int64_t pad, int64_t in, int64_t out) {
  return Range{imax(0, pad - k * r), imin(out, in + pad - k * r)};
}

// Inputs i in [0, in) that tap k carries to an output in [0, out) (input gradient).
FCN_HOST_DEVICE Range inputs_for_tap(int64_t k, int64_t r, int64_t pad, int64_t in, int64_t out) {
  return Range{imax(0, k * r - pad), imin(in, out + k * r - pad)};
}

// Taps k by which output o reads a real input: 0 <= o - pad + k * r < in.
FCN_HOST_DEVICE Range taps_for_output(int64_t o, int64_t r, int64_t pad, int64_t in, int64_t K) {
  return Range{imax(0, ceil_div(pad - o, r)), imin(K, floor_div(in - 1 + pad - o, r) + 1)};
}

// Taps k by which input i reaches an output in [0, out): 0 <= i + pad - k * r < out.
FCN_HOST_DEVICE Range taps_for_input(int64_t i, int64_t r, int64_t pad, int64_t out, int64_t K) {
  return Range{imax(0, ceil_div(i + pad - out + 1, r)), imin(K, floor_div(i + pad, r) + 1)};
}

// Phase decomposition: output phase a (0 <= a < r) holds outputs a, a + r, ...;
// their count, and the input phase that tap 0 of output a + r * u reads (row u of
// that phase, shifted by u0 = floor((a - pad) / r), then tap k reads row u0 + u + k).
FCN_HOST_DEVICE int64_t phase_count(int64_t a, int64_t r, int64_t out) { return ceil_div(out - a, r); }
FCN_HOST_DEVICE int64_t phase_of_input(int64_t a, int64_t r, int64_t pad) {
  return (a - pad) - r * floor_div(a - pad, r);
}

// Sizes of one call, contiguous NCHW tensors; weight (Cout, Cin / groups, Kh, Kw).
struct Geometry : ConvGeometry {
  int64_t rh, rw;  // rarefaction (dilation)
  int64_t ph, pw;  // zero padding

  FCN_HOST_DEVICE int64_t w_index(int64_t co, int64_t ci_in_group, int64_t kh, int64_t kw) const {
    return ((co * cin_per_group() + ci_in_group) * Kh + kh) * Kw + kw;
  }

  // Wide layout (GEMM path). Each channel is one row holding its N zero-padded
  // images back to back, Hp x Wp each, then `slack()` zeros. Output (n, i, j) sits at
  // wide column n * Hp * Wp + i * Wp + j, and tap (kh, kw) reads the padded input
  // at that column plus tap_shift(kh, kw): a whole convolution is, per tap, one
  // matrix product with a shifted view of the rows. Columns with j >= Wo (or rows
  // i >= Ho between images) are computed and dropped (forward) or are zeros in
  // the wide grad_out (backward), so they never contribute.
  FCN_HOST_DEVICE int64_t Hp() const { return H + 2 * ph; }
  FCN_HOST_DEVICE int64_t Wp() const { return W + 2 * pw; }
  FCN_HOST_DEVICE int64_t image_cols() const { return Hp() * Wp(); }
  FCN_HOST_DEVICE int64_t wide_cols() const { return (N - 1) * image_cols() + Ho * Wp(); }
  FCN_HOST_DEVICE int64_t slack() const { return (Kw - 1) * rw; }
  FCN_HOST_DEVICE int64_t wide_row() const { return N * image_cols() + slack(); }
  FCN_HOST_DEVICE int64_t tap_shift(int64_t kh, int64_t kw) const { return kh * rh * Wp() + kw * rw; }
};

// The CUDA kernels' passes in the plane formulation of csrc/index/plane.h, checked on the host
// against naive loops by csrc/tests/test_element_math.cpp. In-plane offsets are I.

// Headroom for the small intermediate sums of the tap ranges (padding, taps times rarefaction).
FCN_HOST_DEVICE int64_t tap_reach(const Geometry& g, int64_t V) {
  return (g.Kh + g.Kw) * (g.rh + g.rw) + 2 * (g.ph + g.pw) + V;
}

// Forward: plane (n, co) of the output, before bias; reduces over the group's input channels,
// through the taps that read real (unpadded) inputs.
template <typename I>
struct ForwardPlane : PlaneLayout<I> {
  int64_t Cout;
  I H, W, Kh, Kw, rh, rw, ph, pw, Ho, Wo, cin_g;

  static FCN_HOST_DEVICE ForwardPlane make(const Geometry& g) {
    return ForwardPlane{{forward_layout<I>(g)}, g.Cout, I(g.H), I(g.W), I(g.Kh), I(g.Kw), I(g.rh), I(g.rw),
                        I(g.ph), I(g.pw), I(g.Ho), I(g.Wo), I(g.cin_per_group())};
  }
  static FCN_HOST_DEVICE int64_t span(const Geometry& g, int64_t V) {
    return imax(imax(g.cin_per_group() * g.H * g.W, g.cin_per_group() * g.Kh * g.Kw),
                (g.Ho + 1) * (g.Wo + V)) + tap_reach(g, V);
  }
  FCN_HOST_DEVICE int64_t weight_base(int64_t plane) const { return (plane % Cout) * cin_g * Kh * Kw; }
  FCN_HOST_DEVICE int64_t weight_stride() const { return int64_t(Kh) * Kw; }

  template <int V, typename A, typename LoadX, typename Tile>
  FCN_HOST_DEVICE void accumulate(const LoadX& x, const Tile& tile, I tile_stride, I c0, I cn, I i, I j0,
                                  A (&acc)[V]) const {
    const I a_lo = ceil_div_at_least_0<I>(ph - i, rh), a_hi = min_of<I>(Kh, floor_div_end<I>(H - 1 + ph - i, rh));
    I lo[V], hi[V];
    for (int v = 0; v < V; ++v) {
      lo[v] = ceil_div_at_least_0<I>(pw - (j0 + v), rw);
      hi[v] = min_of<I>(Kw, floor_div_end<I>(W - 1 + pw - (j0 + v), rw));
    }
    for (I c = 0; c < cn; ++c)
      for (I a = a_lo; a < a_hi; ++a) {
        const I xrow = ((c0 + c) * H + i - ph + a * rh) * W, trow = c * tile_stride + a * Kw;
        for (int v = 0; v < V; ++v) {
          const I col = j0 + v - pw;
          for (I b = lo[v]; b < hi[v]; ++b) acc[v] += x(xrow + col + b * rw) * tile(trow + b);
        }
      }
  }
};

// Input gradient: plane (n, ci) of grad_x; reduces over the group's output channels, at every
// output this input reaches through the rarefied taps.
template <typename I>
struct InputGradPlane : PlaneLayout<I> {
  int64_t Cin;
  I H, W, Kh, Kw, rh, rw, ph, pw, Ho, Wo, cin_g, cout_g;

  static FCN_HOST_DEVICE InputGradPlane make(const Geometry& g) {
    return InputGradPlane{{input_grad_layout<I>(g)}, g.Cin, I(g.H), I(g.W), I(g.Kh), I(g.Kw), I(g.rh), I(g.rw),
                          I(g.ph), I(g.pw), I(g.Ho), I(g.Wo), I(g.cin_per_group()), I(g.cout_per_group())};
  }
  static FCN_HOST_DEVICE int64_t span(const Geometry& g, int64_t V) {
    const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
    return imax(imax(cout_g * (g.Ho + 1) * (g.Wo + 1), cout_g * cin_g * g.Kh * g.Kw),
                (g.H + 1) * (g.W + V)) + tap_reach(g, V);
  }
  FCN_HOST_DEVICE int64_t weight_base(int64_t plane) const {
    const int64_t ci = plane % Cin, grp = ci / cin_g, ci_l = ci % cin_g;
    return ((grp * cout_g) * cin_g + ci_l) * Kh * Kw;
  }
  FCN_HOST_DEVICE int64_t weight_stride() const { return int64_t(cin_g) * Kh * Kw; }

  template <int V, typename A, typename LoadG, typename Tile>
  FCN_HOST_DEVICE void accumulate(const LoadG& go, const Tile& tile, I tile_stride, I c0, I cn, I ih, I iw0,
                                  A (&acc)[V]) const {
    const I a_lo = ceil_div_at_least_0<I>(ih + ph - Ho + 1, rh), a_hi = min_of<I>(Kh, (ih + ph) / rh + 1);
    I lo[V], hi[V];
    for (int v = 0; v < V; ++v) {
      lo[v] = ceil_div_at_least_0<I>(iw0 + v + pw - Wo + 1, rw);
      hi[v] = min_of<I>(Kw, (iw0 + v + pw) / rw + 1);
    }
    for (I c = 0; c < cn; ++c)
      for (I a = a_lo; a < a_hi; ++a) {
        const I grow = ((c0 + c) * Ho + ih + ph - a * rh) * Wo, trow = c * tile_stride + a * Kw;
        for (int v = 0; v < V; ++v) {
          const I col = iw0 + v + pw;
          for (I b = lo[v]; b < hi[v]; ++b) acc[v] += go(grow + col - b * rw) * tile(trow + b);
        }
      }
  }
};

// Weight gradient in the split reduction of csrc/index/weight_grad.h: pair (co, ci_l), term rows
// the output rows i; tap (kh, kw) joins output (i, j) with input (i - ph + kh * rh, j - pw + kw * rw)
// where that input is real (not padding).
struct WeightGradOp {
  Geometry g;
  FCN_HOST_DEVICE int64_t pairs() const { return g.Cout * g.cin_per_group(); }
  FCN_HOST_DEVICE int64_t taps() const { return g.Kh * g.Kw; }
  FCN_HOST_DEVICE int64_t kw() const { return g.Kw; }
  FCN_HOST_DEVICE int64_t images() const { return g.N; }
  FCN_HOST_DEVICE int64_t term_rows() const { return g.Ho; }
  FCN_HOST_DEVICE Range row_range(int64_t kh) const { return outputs_for_tap(kh, g.rh, g.ph, g.H, g.Ho); }
  FCN_HOST_DEVICE ColMap col_map(int64_t kw) const {
    return ColMap{outputs_for_tap(kw, g.rw, g.pw, g.W, g.Wo), kw * g.rw - g.pw, 1, 0};
  }
  FCN_HOST_DEVICE int64_t x_row(int64_t n, int64_t pair, int64_t kh, int64_t r) const {
    const int64_t co = pair / g.cin_per_group(), ci_l = pair % g.cin_per_group();
    return g.x_index(n, (co / g.cout_per_group()) * g.cin_per_group() + ci_l, input_of(r, kh, g.rh, g.ph), 0);
  }
  FCN_HOST_DEVICE int64_t go_row(int64_t n, int64_t pair, int64_t, int64_t r) const {
    return g.out_index(n, pair / g.cin_per_group(), r, 0);
  }
};

}  // namespace rarefied_conv2d
}  // namespace fcn_kernels
