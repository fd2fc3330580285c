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

#include "host_device.h"

namespace fcn_kernels {
namespace rarefied_conv {

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
struct Geometry {
  int64_t N, Cin, H, W;
  int64_t Cout, groups, Kh, Kw;
  int64_t rh, rw;  // rarefaction (dilation)
  int64_t ph, pw;  // zero padding
  int64_t Ho, Wo;  // output size

  FCN_HOST_DEVICE int64_t cin_per_group() const { return Cin / groups; }
  FCN_HOST_DEVICE int64_t cout_per_group() const { return Cout / groups; }
  FCN_HOST_DEVICE int64_t x_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cin + c) * H + i) * W + j;
  }
  FCN_HOST_DEVICE int64_t w_index(int64_t co, int64_t ci_in_group, int64_t kh, int64_t kw) const {
    return ((co * cin_per_group() + ci_in_group) * Kh + kh) * Kw + kw;
  }
  FCN_HOST_DEVICE int64_t out_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cout + c) * Ho + i) * Wo + j;
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

// Per-element formulations, used as-is by the CUDA kernels (one thread per element) and checked
// on the host by csrc/tests/test_element_math.cpp. Loaders map a flat index to the accumulation type.

// Output (n, co, i, j) before bias: only the taps that read real (unpadded) inputs.
template <typename A, typename LoadX, typename LoadW>
FCN_HOST_DEVICE A forward_element(const Geometry& g, const LoadX& x, const LoadW& w, int64_t n, int64_t co,
                                  int64_t i, int64_t j) {
  const int64_t cin_g = g.cin_per_group(), grp = co / g.cout_per_group();
  const Range kh = taps_for_output(i, g.rh, g.ph, g.H, g.Kh), kw = taps_for_output(j, g.rw, g.pw, g.W, g.Kw);
  A acc = A(0);
  for (int64_t ci_l = 0; ci_l < cin_g; ++ci_l)
    for (int64_t a = kh.begin; a < kh.end; ++a)
      for (int64_t b = kw.begin; b < kw.end; ++b)
        acc += x(g.x_index(n, grp * cin_g + ci_l, input_of(i, a, g.rh, g.ph), input_of(j, b, g.rw, g.pw))) *
               w(g.w_index(co, ci_l, a, b));
  return acc;
}

// grad_x (n, ci, ih, iw): grad_out at every output this input reaches, through the rarefied taps.
template <typename A, typename LoadG, typename LoadW>
FCN_HOST_DEVICE A backward_input_element(const Geometry& g, const LoadG& go, const LoadW& w, int64_t n,
                                         int64_t ci, int64_t ih, int64_t iw) {
  const int64_t cout_g = g.cout_per_group(), grp = ci / g.cin_per_group(), ci_l = ci % g.cin_per_group();
  const Range kh = taps_for_input(ih, g.rh, g.ph, g.Ho, g.Kh), kw = taps_for_input(iw, g.rw, g.pw, g.Wo, g.Kw);
  A acc = A(0);
  for (int64_t co = grp * cout_g; co < (grp + 1) * cout_g; ++co)
    for (int64_t a = kh.begin; a < kh.end; ++a)
      for (int64_t b = kw.begin; b < kw.end; ++b)
        acc += go(g.out_index(n, co, output_of(ih, a, g.rh, g.ph), output_of(iw, b, g.rw, g.pw))) *
               w(g.w_index(co, ci_l, a, b));
  return acc;
}

// grad_w (co, ci_l, kh, kw) is a sum of weight_grad_terms(...) products over (n, output row, output col)
// where tap (kh, kw) reads a real input; weight_grad_term gives the k-th, for fixed-order reductions.
FCN_HOST_DEVICE int64_t weight_grad_terms(const Geometry& g, int64_t kh, int64_t kw) {
  return g.N * outputs_for_tap(kh, g.rh, g.ph, g.H, g.Ho).size() * outputs_for_tap(kw, g.rw, g.pw, g.W, g.Wo).size();
}

template <typename A, typename LoadX, typename LoadG>
FCN_HOST_DEVICE A weight_grad_term(const Geometry& g, const LoadX& x, const LoadG& go, int64_t co, int64_t ci_l,
                                   int64_t kh, int64_t kw, int64_t k) {
  const Range rows = outputs_for_tap(kh, g.rh, g.ph, g.H, g.Ho), cols = outputs_for_tap(kw, g.rw, g.pw, g.W, g.Wo);
  const int64_t j = cols.begin + k % cols.size(), i = rows.begin + (k / cols.size()) % rows.size();
  const int64_t n = k / (cols.size() * rows.size());
  const int64_t ci = (co / g.cout_per_group()) * g.cin_per_group() + ci_l;
  return x(g.x_index(n, ci, input_of(i, kh, g.rh, g.ph), input_of(j, kw, g.rw, g.pw))) * go(g.out_index(n, co, i, j));
}

}  // namespace rarefied_conv
}  // namespace fcn_kernels
