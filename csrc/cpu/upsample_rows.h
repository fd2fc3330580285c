// The row gather of upsample_skip's direct CPU kernels, shared by every op that computes its scores
// row by row (csrc/cpu/upsample_skip_kernel.cpp: upsample_skip, its input and weight gradients and
// upsample_argmax; csrc/cpu/upsample_logsumexp_kernel.cpp: the loss statistics and their gradient).
#pragma once

#include <ATen/OpMathType.h>

#include <algorithm>
#include <vector>

#include "index/upsample_skip.h"

namespace fcn_kernels {
namespace upsample_skip {

// Aim for chunks of roughly this many multiply-adds per parallel task.
constexpr int64_t kGrainWork = 1 << 15;

inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
}

// Column blocks. Along the width, full-output column q = m * sw + r (phase r) receives
// x[m - t] through tap kw = r + t * sw, t = 0 .. T-1 with T = ceil(Kw / sw). So a block of sw
// consecutive output columns is  sum_t x[m - t] * wt[t][0 .. sw)  with wt the weight row
// regrouped per tap (zero where r + t * sw >= Kw): a broadcast times a vector, unit stride,
// the same for every phase. Every pass of upsample_skip and of the loss works on such blocks.

// wt[((ci * cout_g + co_l) * Kh + kh) * T * sw + t * sw + r] = w[ci, co_l, kh, r + t * sw] or 0.
template <typename scalar_t, typename acc_t>
std::vector<acc_t> tap_blocks(const Geometry& g, const scalar_t* w, int64_t T) {
  const int64_t rows = g.Cin * g.cout_per_group() * g.Kh;
  std::vector<acc_t> wt(rows * T * g.sw, acc_t(0));
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t kw = 0; kw < g.Kw; ++kw)
      wt[row * T * g.sw + (kw / g.sw) * g.sw + kw % g.sw] = static_cast<acc_t>(w[row * g.Kw + kw]);
  return wt;
}

// SW > 0 fixes the stride at compile time so that the r loops unroll into vector code.
template <int SW>
struct Stride {
  int64_t dyn;
  constexpr int64_t operator()() const { return SW > 0 ? SW : dyn; }
};

// Runs fn(phases) with the phases r of tap block t that are taps (r + t * sw < Kw): all sw of them
// (fixed at compile time), but in the last block where the stride does not divide the kernel. The
// others are tap_blocks' zeros, no terms of the op, and 0 * Inf would be NaN: they are skipped.
template <int SW, typename Fn>
void with_phases(Stride<SW> sw, int64_t Kw, int64_t t, Fn&& fn) {
  const int64_t n = Kw - t * sw();
  if (n >= sw()) return fn(sw);
  fn(Stride<0>{n});
}

// acc[(m - m_lo) * sw + r] += sum_t x[m - t] * wt[t * sw + r] for blocks m in [m_lo, m_hi).
template <int SW, typename scalar_t, typename acc_t>
void forward_row(Stride<SW> sw, acc_t* __restrict__ acc, const scalar_t* __restrict__ xrow,
                 const acc_t* __restrict__ wt, int64_t m_lo,
                 int64_t m_hi, int64_t W, int64_t Kw, int64_t T) {
  for (int64_t t = 0; t < T; ++t) {
    const acc_t* wv = wt + t * sw();
    const int64_t m0 = std::max(m_lo, t), m1 = std::min(m_hi, W + t);
    with_phases(sw, Kw, t, [&](auto phases) {
      for (int64_t m = m0; m < m1; ++m) {
        const acc_t xv = static_cast<acc_t>(xrow[m - t]);
        acc_t* __restrict__ a = acc + (m - m_lo) * sw();
        for (int64_t r = 0; r < phases(); ++r) a[r] += xv * wv[r];
      }
    });
  }
}

// A cropped grad_out row put back in full-output coordinates, zero outside the crop window:
// goz[m * sw + r] = grad_out[m * sw + r - ox] for blocks m in [0, blocks).
template <typename scalar_t, typename acc_t>
inline void full_row(const Geometry& g, const scalar_t* grow, acc_t* goz, int64_t blocks) {
  const int64_t len = blocks * g.sw;
  const int64_t lo = std::min(g.ox, len), hi = std::min(g.ox + g.Wo, len);
  std::fill(goz, goz + lo, acc_t(0));
  for (int64_t q = lo; q < hi; ++q) goz[q] = static_cast<acc_t>(grow[q - g.ox]);
  std::fill(goz + std::max(hi, lo), goz + len, acc_t(0));
}

// The direct forward's plan: the regrouped weight and the column blocks covering the crop window.
template <int SW, typename scalar_t>
struct RowPlan {
  using acc_t = at::opmath_type<scalar_t>;
  Stride<SW> sw;
  const Geometry& g;
  int64_t T, m_lo, m_hi, first;  // output column j is block element first + j
  std::vector<acc_t> wt;

  RowPlan(Stride<SW> s, const Geometry& geo, const scalar_t* w)
      : sw(s), g(geo), T(ceil_div(geo.Kw, s())), m_lo(floor_div(geo.ox, s())), m_hi(ceil_div(geo.ox + geo.Wo, s())),
        first(geo.ox - m_lo * s()), wt(tap_blocks<scalar_t, acc_t>(geo, w, T)) {}

  int64_t acc_size() const { return (m_hi - m_lo) * sw(); }
  int64_t work() const { return g.Wo * g.cin_per_group() * ceil_div(g.Kh, g.sh) * T + g.Wo; }

  // acc (acc_size()) = output row (n, co, i) before bias and skip; returns its column 0.
  const acc_t* row(const scalar_t* x, int64_t n, int64_t co, int64_t i, acc_t* acc) const {
    const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
    const int64_t grp = co / cout_g, co_l = co % cout_g;
    std::fill(acc, acc + acc_size(), acc_t(0));
    const int64_t p = i + g.oy;
    const Range ih = inputs_for_output(p, g.sh, g.Kh, g.H);
    for (int64_t ci = grp * cin_g; ci < (grp + 1) * cin_g; ++ci) {
      for (int64_t in_row = ih.begin; in_row < ih.end; ++in_row) {
        const int64_t kh = p - in_row * g.sh;
        const acc_t* wrow = wt.data() + ((ci * cout_g + co_l) * g.Kh + kh) * T * sw();
        forward_row(sw, acc, x + g.x_index(n, ci, in_row, 0), wrow, m_lo, m_hi, g.W, g.Kw, T);
      }
    }
    return acc + first;
  }
};

// Runs fn(Stride<SW>{sw}) with SW fixed for the strides FCN uses (2, 8, 16, 32 and small ones).
template <typename Fn>
void with_stride(int64_t sw, Fn&& fn) {
  switch (sw) {
    case 1: return fn(Stride<1>{1});
    case 2: return fn(Stride<2>{2});
    case 4: return fn(Stride<4>{4});
    case 8: return fn(Stride<8>{8});
    case 16: return fn(Stride<16>{16});
    case 32: return fn(Stride<32>{32});
    default: return fn(Stride<0>{sw});
  }
}

template <typename scalar_t, typename acc_t>
inline acc_t rounded(acc_t v) {
  return static_cast<acc_t>(static_cast<scalar_t>(v));
}

}  // namespace upsample_skip
}  // namespace fcn_kernels
