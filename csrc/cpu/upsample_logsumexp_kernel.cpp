// upsample_logsumexp on CPU (docs/DESIGN.md §2.5): the per-pixel log-sum-exp and target score of
// upsample_skip's scores, and their gradient, without ever storing the (N, C, Ho, Wo) scores or their
// gradient. The scores come from upsample_skip's direct row gather (upsample_rows.h), one output row
// of every class at a time. Deterministic: every output element has one writer, and the weight and
// bias gradients' partial sums are added in a fixed order over runs of bands that depend on the
// geometry only (csrc/index/upsample_logsumexp.h), whatever the thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../host/upsample_logsumexp.h"
#include "parallel_chunks.h"
#include "softmax_rows.h"
#include "upsample_rows.h"

namespace fcn_kernels {
namespace upsample_logsumexp {
namespace {

using upsample_skip::grain_for;
using upsample_skip::inputs_for_output;
using upsample_skip::Block;
using upsample_skip::kLanes;
using upsample_skip::load_block;
using upsample_skip::rounded;
using upsample_skip::rounded_block;
using upsample_skip::RowPlan;
using upsample_skip::Stride;
using upsample_skip::with_phases;
using upsample_skip::with_stride;

// plan.row(x, n, co, i, acc) to the bit where one input channel's two input rows reach the output row
// through two tap blocks (FCN's upscore8: depthwise, kernel 16, stride 8): each column block's 8 sums
// stay in a vector register over its four terms, added in plan.row's order (input row, then tap), each a
// fused multiply-add as there, where plan.row passes over the whole row once per term. The blocks whose
// taps fall outside x (at most one each end) keep only the terms inside it; every other geometry goes to
// plan.row.
template <int SW, typename scalar_t>
const at::opmath_type<scalar_t>* gathered_row(const RowPlan<SW, scalar_t>& plan, const scalar_t* x, int64_t n,
                                             int64_t co, int64_t i, at::opmath_type<scalar_t>* acc) {
  const Geometry& g = plan.g;
  if constexpr (SW == 8 && std::is_same_v<scalar_t, float>) {
    typedef float v8 __attribute__((vector_size(32)));
    const int64_t p = i + g.oy;
    const Range ih = inputs_for_output(p, g.sh, g.Kh, g.H);
    const int64_t lo = std::max<int64_t>(plan.m_lo, 1), hi = std::min<int64_t>(plan.m_hi, g.W);
    if (g.cin_per_group() == 1 && g.Kw == 16 && ih.size() == 2 && lo < hi) {
      const int64_t cout_g = g.cout_per_group(), ci = co / cout_g;
      const float *x0 = x + g.x_index(n, ci, ih.begin, 0), *x1 = x0 + g.W;
      const float* w0 = plan.wt.data() + ((ci * cout_g + co % cout_g) * g.Kh + p - ih.begin * g.sh) * 16;
      const float* w1 = w0 - g.sh * 16;  // the next input row's kernel row: kh - sh
      v8 w00, w01, w10, w11;
      std::memcpy(&w00, w0, sizeof(v8));
      std::memcpy(&w01, w0 + 8, sizeof(v8));
      std::memcpy(&w10, w1, sizeof(v8));
      std::memcpy(&w11, w1 + 8, sizeof(v8));
      const auto edge = [&](int64_t m) {  // only the terms inside x, as plan.row
        v8 blk = {};
        const bool t0 = m >= 0 && m < g.W, t1 = m >= 1 && m - 1 < g.W;
        if (t0) blk += x0[m] * w00;
        if (t1) blk += x0[m - 1] * w01;
        if (t0) blk += x1[m] * w10;
        if (t1) blk += x1[m - 1] * w11;
        std::memcpy(acc + (m - plan.m_lo) * 8, &blk, sizeof(v8));
      };
      for (int64_t m = plan.m_lo; m < lo; ++m) edge(m);
      for (int64_t m = lo; m < hi; ++m) {
        v8 blk = {};
        blk += x0[m] * w00;
        blk += x0[m - 1] * w01;
        blk += x1[m] * w10;
        blk += x1[m - 1] * w11;
        std::memcpy(acc + (m - plan.m_lo) * 8, &blk, sizeof(v8));
      }
      for (int64_t m = hi; m < plan.m_hi; ++m) edge(m);
      return acc + plan.first;
    }
  }
  return plan.row(x, n, co, i, acc);
}

// float16 scores a register at a time (F16C): out[j] = rounded(a[j] + b (+ skip[j])), as score_rows' loops.
// Rounded one by one they went through the stack lane by lane, and the loss took 1.7x float's time. (The
// other types' loops vectorize as they are; blocks measured slower for float and bfloat16.)
template <typename scalar_t, typename acc_t>
void rounded_half_row(const acc_t* a, acc_t b, const scalar_t* skip, int64_t n, acc_t* __restrict__ out) {
  using V = Block<acc_t, 64 / sizeof(acc_t)>;
  int64_t j = 0;
  for (; j + kLanes<V> <= n; j += kLanes<V>) {
    V s;
    std::memcpy(&s, a + j, sizeof s);
    s += b;
    if (skip) s += load_block<V>(skip + j, 0, kLanes<V>);
    s = rounded_block<scalar_t>(s);
    std::memcpy(out + j, &s, sizeof s);
  }
  for (; j < n; ++j) out[j] = rounded<scalar_t>(skip ? a[j] + b + static_cast<acc_t>(skip[j]) : a[j] + b);
}

// The scores of output row (n, i) for every class exactly as upsample_skip stores them (the row
// gather, then bias, then skip added, one rounding to scalar_t): v[c * Wo + j].
template <int SW, typename scalar_t>
void score_rows(const RowPlan<SW, scalar_t>& plan, const scalar_t* x, const scalar_t* bias, const scalar_t* skip,
                int64_t n, int64_t i, at::opmath_type<scalar_t>* scratch, at::opmath_type<scalar_t>* v) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g = plan.g;
  for (int64_t co = 0; co < g.Cout; ++co) {
    const acc_t* a = gathered_row(plan, x, n, co, i, scratch);
    const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
    acc_t* __restrict__ out = v + co * g.Wo;
    if constexpr (upsample_skip::kHalfBlock<scalar_t, Block<acc_t, 16>>) {
      rounded_half_row(a, b, skip ? skip + g.skip_index(n, co, i, 0) : nullptr, g.Wo, out);
    } else if (skip) {
      const scalar_t* srow = skip + g.skip_index(n, co, i, 0);
      for (int64_t j = 0; j < g.Wo; ++j) out[j] = rounded<scalar_t>(a[j] + b + static_cast<acc_t>(srow[j]));
    } else {
      for (int64_t j = 0; j < g.Wo; ++j) out[j] = rounded<scalar_t>(a[j] + b);
    }
  }
}

// One output row (n, i) per step: every class's scores, then the row's statistics.
template <typename scalar_t, int SW>
void forward_kernel(Stride<SW> sw, const Forward& f) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g = f.g;
  const RowPlan<SW, scalar_t> plan(sw, g, f.weight.const_data_ptr<scalar_t>());
  const scalar_t *x = f.x.const_data_ptr<scalar_t>(), *bias = data_or_null<scalar_t>(f.bias),
                 *skip = data_or_null<scalar_t>(f.skip);
  const int64_t* target = f.target.const_data_ptr<int64_t>();
  acc_t *lse = f.lse.mutable_data_ptr<acc_t>(), *picked = f.picked.mutable_data_ptr<acc_t>();
  parallel_for(0, g.N * g.Ho, grain_for(g.Cout * plan.work()), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scratch(plan.acc_size()), v(g.Cout * g.Wo), m(g.Wo), s(g.Wo);
    for (int64_t row = begin; row < end; ++row) {
      score_rows(plan, x, bias, skip, row / g.Ho, row % g.Ho, scratch.data(), v.data());
      logsumexp_row(v.data(), g.Cout, g.Wo, m.data(), s.data(), lse + row * g.Wo);
      picked_row(v.data(), g.Wo, target + row * g.Wo, f.ignore_index, picked + row * g.Wo);
    }
  });
}

// The backward. One task per run of bands (index/upsample_logsumexp.h); per band, per output row it
// recomputes: the scores, the score gradient d (classes x full-output columns, zero outside the crop
// window: upsample_skip's full_row layout), then
//   grad_x[ci, ih, iw]           += sum over co_l, t, r of d[co][(iw + t) * sw + r] * wt[t * sw + r]
//   grad_w[ci, co_l, kh, t*sw+r] += sum over iw of x[ci, ih, iw] * d[co][(iw + t) * sw + r]
// for the band's input rows ih the row receives from (tap row kh), as upsample_skip's input and
// weight gradients; on the rows the band owns, grad_skip's row and the bias partial sums.
template <typename scalar_t, int SW>
void backward_kernel(Stride<SW> sw, const Backward& bw) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g = bw.g;
  const RowPlan<SW, scalar_t> plan(sw, g, bw.weight.const_data_ptr<scalar_t>());
  const scalar_t *x = bw.x.const_data_ptr<scalar_t>(), *bias = data_or_null<scalar_t>(bw.bias),
                 *skip = data_or_null<scalar_t>(bw.skip);
  const int64_t* target = bw.target.const_data_ptr<int64_t>();
  const acc_t *lse = bw.lse.const_data_ptr<acc_t>(), *ga = bw.grad_lse.const_data_ptr<acc_t>(),
              *gb = bw.grad_picked.const_data_ptr<acc_t>();
  scalar_t* gx_out = bw.need_x ? bw.grad_x.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* gs_out = bw.need_skip ? bw.grad_skip.mutable_data_ptr<scalar_t>() : nullptr;
  const int64_t C = g.Cout, cin_g = g.cin_per_group(), cout_g = g.cout_per_group(), T = plan.T;
  const int64_t len = (g.W + T - 1) * sw(), wrow = T * sw(), wsize = g.Cin * cout_g * g.Kh * wrow;
  const int64_t B = band_rows(g), nb = bands_per_image(g), chunks = chunk_count(g);
  std::vector<acc_t> wpart(bw.need_weight ? chunks * wsize : 0), bpart(bw.need_bias ? chunks * C : 0);
  // A run's work: its rows' scores, recomputed, and their adjoint (about as much again). The grain groups
  // runs on a thread; the runs, and so the sums, stay the geometry's.
  const int64_t run_work = 2 * g.N * g.Ho * g.Cout * plan.work() / std::max<int64_t>(1, chunks);
  parallel_for(0, chunks, grain_for(run_work), [&](int64_t c_begin, int64_t c_end) {
    std::vector<acc_t> scratch(plan.acc_size()), v(C * g.Wo), d(C * len, acc_t(0));
    std::vector<acc_t> gx(bw.need_x ? g.Cin * B * g.W * sw() : 0);
    for (int64_t chunk = c_begin; chunk < c_end; ++chunk) {
      acc_t* wacc = bw.need_weight ? wpart.data() + chunk * wsize : nullptr;
      acc_t* bacc = bw.need_bias ? bpart.data() + chunk * C : nullptr;
      const Range tasks = split_rows(g.N * nb, chunks, chunk);
      for (int64_t task = tasks.begin; task < tasks.end; ++task) {
        const int64_t n = task / nb, band = task % nb;
        const Range in = band_inputs(g, band), own = band_owned(g, band), rows = band_rows_computed(g, band);
        std::fill(gx.begin(), gx.end(), acc_t(0));
        for (int64_t i = rows.begin; i < rows.end; ++i) {
          const int64_t pix = (n * g.Ho + i) * g.Wo;
          score_rows(plan, x, bias, skip, n, i, scratch.data(), v.data());
          // d's columns outside [ox, ox + Wo) stay the zeros they were made with
          score_grads(v.data(), C, g.Wo, lse + pix, ga + pix, gb + pix, target + pix, bw.ignore_index,
                      d.data() + g.ox, len);
          if (i >= own.begin && i < own.end) {
            for (int64_t c = 0; c < C; ++c) {
              const acc_t* dc = d.data() + c * len + g.ox;
              if (bacc) {
                acc_t sum = 0;
                for (int64_t j = 0; j < g.Wo; ++j) sum += dc[j];
                bacc[c] += sum;
              }
              if (gs_out) {
                scalar_t* srow = gs_out + g.skip_index(n, c, i, 0);
                for (int64_t j = 0; j < g.Wo; ++j) srow[j] = static_cast<scalar_t>(dc[j]);
              }
            }
          }
          const Range ihs = band_inputs_of_row(g, band, i);
          for (int64_t ih = ihs.begin; ih < ihs.end; ++ih) {
            const int64_t kh = i + g.oy - ih * g.sh;
            for (int64_t ci = 0; ci < g.Cin; ++ci) {
              const int64_t grp = ci / cin_g;
              for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
                const acc_t* dz = d.data() + (grp * cout_g + co_l) * len;
                const int64_t tap_row = ((ci * cout_g + co_l) * g.Kh + kh) * wrow;
                if (gx_out) {
                  acc_t* gxrow = gx.data() + (ci * in.size() + ih - in.begin) * g.W * sw();
                  const acc_t* wt = plan.wt.data() + tap_row;
                  for (int64_t t = 0; t < T; ++t) {
                    const acc_t* wv = wt + t * sw();
                    with_phases(sw, g.Kw, t, [&](auto phases) {
                      for (int64_t iw = 0; iw < g.W; ++iw) {
                        acc_t* __restrict__ a = gxrow + iw * sw();
                        const acc_t* __restrict__ dd = dz + (iw + t) * sw();
                        for (int64_t r = 0; r < phases(); ++r) a[r] += dd[r] * wv[r];
                      }
                    });
                  }
                }
                if (wacc) {
                  const scalar_t* xrow = x + g.x_index(n, ci, ih, 0);
                  for (int64_t t = 0; t < T; ++t) {
                    acc_t* __restrict__ a = wacc + tap_row + t * sw();
                    for (int64_t iw = 0; iw < g.W; ++iw) {
                      const acc_t xv = static_cast<acc_t>(xrow[iw]);
                      const acc_t* __restrict__ dd = dz + (iw + t) * sw();
                      for (int64_t r = 0; r < sw(); ++r) a[r] += xv * dd[r];
                    }
                  }
                }
              }
            }
          }
        }
        if (gx_out) {
          for (int64_t ci = 0; ci < g.Cin; ++ci)
            for (int64_t ih = in.begin; ih < in.end; ++ih) {
              const acc_t* a = gx.data() + (ci * in.size() + ih - in.begin) * g.W * sw();
              scalar_t* out = gx_out + g.x_index(n, ci, ih, 0);
              for (int64_t iw = 0; iw < g.W; ++iw) {
                acc_t s = 0;
                for (int64_t r = 0; r < sw(); ++r) s += a[iw * sw() + r];
                out[iw] = static_cast<scalar_t>(s);
              }
            }
        }
      }
    }
  });
  if (bw.need_weight) {
    scalar_t* gw = bw.grad_weight.mutable_data_ptr<scalar_t>();
    const int64_t rows = g.Cin * cout_g * g.Kh;
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t kw = 0; kw < g.Kw; ++kw) {
        acc_t s = 0;
        for (int64_t chunk = 0; chunk < chunks; ++chunk) s += wpart[chunk * wsize + row * wrow + kw];
        gw[row * g.Kw + kw] = static_cast<scalar_t>(s);
      }
  }
  if (bw.need_bias) {
    scalar_t* gbias = bw.grad_bias.mutable_data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      acc_t s = 0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk) s += bpart[chunk * C + c];
      gbias[c] = static_cast<scalar_t>(s);
    }
  }
}

// The CPU kernels behind the ops' entry points (csrc/host/upsample_logsumexp.h).
struct CpuKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;

  static void forward(const Forward& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "upsample_logsumexp_cpu", [&] {
      with_stride(p.g.sw, [&](auto sw) { forward_kernel<scalar_t>(sw, p); });
    });
  }

  static void backward(const Backward& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "upsample_logsumexp_backward_cpu",
                                    [&] { with_stride(p.g.sw, [&](auto sw) { backward_kernel<scalar_t>(sw, p); }); });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) { register_kernels<CpuKernels>(m); }

}  // namespace upsample_logsumexp
}  // namespace fcn_kernels
