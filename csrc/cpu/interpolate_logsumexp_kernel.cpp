// interpolate_logsumexp on CPU (docs/DESIGN.md §2.6): the per-pixel log-sum-exp and target score of
// F.interpolate(x, size=target's, mode="bilinear")'s scores, and their gradient in x, without storing the
// (N, C, Ho, Wo) scores or their gradient. Deterministic: each grad_x row has one writer (bands of input
// rows, index/interpolate.h), every sum runs in a fixed order, whatever the thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../host/interpolate_logsumexp.h"
#include "interpolate_rows.h"
#include "parallel_chunks.h"
#include "softmax_rows.h"

namespace fcn_kernels {
namespace interpolate_logsumexp {
namespace {

using interpolate::PlaneTaps;
using interpolate::ScoreRows;

template <typename scalar_t>
void forward_kernel(const Forward& f) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g = f.g;
  const PlaneTaps<acc_t> taps(g);
  const scalar_t* x = f.x.const_data_ptr<scalar_t>();
  const int64_t* target = f.target.const_data_ptr<int64_t>();
  acc_t *lse = f.lse.mutable_data_ptr<acc_t>(), *picked = f.picked.mutable_data_ptr<acc_t>();
  parallel_for(0, g.N * g.Ho, interpolate::grain_for_scores(g.C * g.Wo), [&](int64_t begin, int64_t end) {
    ScoreRows<scalar_t> rows(g, x, taps.rows.view(), taps.cols.view());
    std::vector<acc_t> v(g.C * g.Wo), m(g.Wo), s(g.Wo);
    for (int64_t row = begin; row < end; ++row) {
      rows.scores(row / g.Ho, row % g.Ho, v.data());
      logsumexp_row(v.data(), g.C, g.Wo, m.data(), s.data(), lse + row * g.Wo);
      picked_row(v.data(), g.Wo, target + row * g.Wo, f.ignore_index, picked + row * g.Wo);
    }
  });
}

// One task per band of input rows of one image: the output rows that reach it, each turned into the
// score gradient d (classes x Wo), blended back along the rows into the band's rows (G, in output
// columns), then along the columns into grad_x: the adjoint of F.interpolate, each grad_x row written once.
template <typename scalar_t>
void backward_kernel(const Backward& b) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g = b.g;
  const PlaneTaps<acc_t> taps(g);
  const interpolate::Taps<acc_t> rt = taps.rows.view(), ct = taps.cols.view();
  const scalar_t* x = b.x.const_data_ptr<scalar_t>();
  const int64_t* target = b.target.const_data_ptr<int64_t>();
  const acc_t *lse = b.lse.const_data_ptr<acc_t>(), *ga = b.grad_lse.const_data_ptr<acc_t>(),
              *gb = b.grad_picked.const_data_ptr<acc_t>();
  scalar_t* gx = b.grad_x.mutable_data_ptr<scalar_t>();
  const int64_t nb = interpolate::bands_per_image(g.H), B = interpolate::kBandRows;
  const int64_t band_scores = g.C * g.Wo * (B * ceil_div(g.Ho, g.H) + 2);  // about, and twice for the adjoint
  parallel_for(0, g.N * nb, interpolate::grain_for_scores(2 * band_scores), [&](int64_t begin, int64_t end) {
    ScoreRows<scalar_t> rows(g, x, rt, ct);
    std::vector<acc_t> v(g.C * g.Wo), d(g.C * g.Wo), G(g.C * B * g.Wo), row(g.W);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / nb;
      const Range in = interpolate::band_inputs(g.H, task % nb);
      const Range out = interpolate::rows_reaching(rt, g.Ho, in);
      std::fill(G.begin(), G.end(), acc_t(0));
      for (int64_t i = out.begin; i < out.end; ++i) {
        const int64_t pix = (n * g.Ho + i) * g.Wo;
        rows.scores(n, i, v.data());
        score_grads(v.data(), g.C, g.Wo, lse + pix, ga + pix, gb + pix, target + pix, b.ignore_index, d.data(),
                    g.Wo);
        for (const auto& [h, l] : {std::pair{rt.i0[i], rt.l0[i]}, std::pair{rt.i1[i], rt.l1[i]}}) {
          if (h < in.begin || h >= in.end) continue;
          for (int64_t c = 0; c < g.C; ++c) {
            acc_t* __restrict__ dst = G.data() + (c * B + h - in.begin) * g.Wo;
            const acc_t* __restrict__ src = d.data() + c * g.Wo;
            for (int64_t j = 0; j < g.Wo; ++j) dst[j] += l * src[j];
          }
        }
      }
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t h = in.begin; h < in.end; ++h) {
          const acc_t* src = G.data() + (c * B + h - in.begin) * g.Wo;
          std::fill(row.begin(), row.end(), acc_t(0));
          for (int64_t j = 0; j < g.Wo; ++j) {
            row[ct.i0[j]] += ct.l0[j] * src[j];
            row[ct.i1[j]] += ct.l1[j] * src[j];
          }
          scalar_t* dst = gx + ((n * g.C + c) * g.H + h) * g.W;
          for (int64_t w = 0; w < g.W; ++w) dst[w] = static_cast<scalar_t>(row[w]);
        }
    }
  });
}

// The CPU kernels behind the ops' entry points (csrc/host/interpolate_logsumexp.h).
struct CpuKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;

  static void forward(const Forward& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "interpolate_logsumexp_cpu",
                                    [&] { forward_kernel<scalar_t>(p); });
  }

  static void backward(const Backward& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "interpolate_logsumexp_backward_cpu",
                                    [&] { backward_kernel<scalar_t>(p); });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) { register_kernels<CpuKernels>(m); }

}  // namespace interpolate_logsumexp
}  // namespace fcn_kernels
