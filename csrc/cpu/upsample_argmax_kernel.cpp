// upsample_argmax on CPU: upsample_skip's forward (the row machinery and GEMM gathers of
// upsample_rows.h) reduced to labels over the classes without storing the scores. Each score is
// computed as the forward computes it (same summation order, bias then skip added, rounded to
// scalar_t), so the labels are exactly the argmax of the CPU upsample_skip's output. Deterministic:
// every label is written by one thread.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../host/upsample_argmax.h"
#include "../index/upsample_argmax.h"
#include "upsample_rows.h"

namespace fcn_kernels {
namespace upsample_argmax {
namespace {

// upsample_skip's forward machinery (upsample_rows.h).
using upsample_skip::gather_block_row;
using upsample_skip::grain_for;
using upsample_skip::Result;
using upsample_skip::load_block;
using upsample_skip::rounded;
using upsample_skip::rounded_block;
using upsample_skip::RowPlan;
using upsample_skip::run_forward;
using upsample_skip::Stride;
using upsample_skip::scores_stay_finite;
using upsample_skip::Taps;
using upsample_skip::weight_blocks;

// Classes are visited in increasing order; a row of running maxima (and int32 labels, the maxima's
// width, so that the update vectorizes) is kept per output row.
template <typename acc_t>
struct RunningArgmax {
  std::vector<acc_t> best;
  std::vector<int32_t> label;
  explicit RunningArgmax(int64_t n) : best(n), label(n) {}

  // Class co's rounded score v at position j.
  void take(int64_t j, int32_t co, acc_t v) {
    const bool t = co == 0 || takes_over(v, best[j]);
    best[j] = t ? v : best[j];
    label[j] = t ? co : label[j];
  }
  void store(int64_t lo, int64_t n, int64_t* out) const { std::copy(label.begin() + lo, label.begin() + lo + n, out); }
};

// Labels of blocks [m, m + B) of output row (n, i), the blocks' running maxima and labels kept in
// registers while the classes are visited in increasing order (class co's row terms: taps[co]); each
// score is computed, biased, skipped and rounded as upsample_skip's forward stores it. kCore: core blocks
// (RowPlan::core_blocks), else edge blocks. kBias, kSkip: whether bias and skip are given (tested once per
// row, not per block). kFinite: no score can be NaN (scores_stay_finite), so that takes_over is v > best,
// one comparison (core blocks only: the edge blocks are few).
template <int NT, bool kCore, int B, bool kBias, bool kSkip, bool kFinite, int SW, typename scalar_t, typename TapsT>
FCN_BLOCK_INLINE void label_tile(const RowPlan<SW, scalar_t>& plan, const TapsT* taps, const scalar_t* bias,
                                 const scalar_t* skip, int64_t n, int64_t i, int64_t m, int64_t* orow) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = typename TapsT::Vec;
  using Label = decltype(Vec{} > Vec{});  // integer lanes as wide as the scores'
  const Geometry& g = plan.g;
  int64_t r0[B], r1[B];
  for (int b = 0; b < B; ++b) {
    r0[b] = 0, r1[b] = SW;
    if (!kCore) plan.window(m + b, r0[b], r1[b]);
  }
  // Class co's scores of the B blocks into v.
  const auto scores = [&](int64_t co, Vec* v) FCN_BLOCK_INLINE_LAMBDA {
    if constexpr (kCore) {
      taps[co].template inner_blocks<NT, B>(m, v);
    } else {
      for (int b = 0; b < B; ++b) v[b] = taps[co].template at<NT, true>(m + b);
    }
    for (int b = 0; b < B; ++b) {
      // Without a bias, the forward adds 0, which changes no comparison (-0 == +0): left out here.
      if constexpr (kBias) v[b] += static_cast<acc_t>(bias[co]);
      if constexpr (kSkip) v[b] += load_block<Vec>(skip + g.skip_index(n, co, i, plan.column(m + b)), r0[b], r1[b]);
      v[b] = rounded_block<scalar_t>(v[b]);
    }
  };
  Vec best[B], v[B];
  Label label[B] = {};
  scores(0, best);
  Label c = {};  // co in every lane, counted in a vector register (a broadcast from a general one per block costs more)
  for (int64_t co = 1; co < g.Cout; ++co) {
    scores(co, v);
    c += 1;
    for (int b = 0; b < B; ++b) {
      Label t;
      if constexpr (kFinite && kCore) {
        t = v[b] > best[b];
      } else {  // takes_over, lane by lane: (v > best or v NaN), best not NaN
        t = ~(v[b] <= best[b]) & (best[b] == best[b]);
      }
      best[b] = t ? v[b] : best[b];
      label[b] = t ? c : label[b];
    }
  }
  for (int b = 0; b < B; ++b) {
    if constexpr (kCore) {  // the whole block: widened to int64 in registers, one store
      const auto wide = __builtin_convertvector(label[b], upsample_skip::Block<int64_t, upsample_skip::kLanes<Label>>);
      std::memcpy(orow + plan.column(m + b), &wide, sizeof wide);
    } else {
      for (int64_t r = r0[b]; r < r1[b]; ++r) orow[plan.column(m + b) + r] = label[b][r];
    }
  }
}

// Output row (n, i)'s labels from register blocks: the core blocks in tiles, the edge blocks one by one.
template <int SW, typename scalar_t, typename TapsT>
void label_row(const RowPlan<SW, scalar_t>& plan, const TapsT* taps, const scalar_t* bias,
               const scalar_t* skip, int64_t n, int64_t i, bool finite, int64_t* orow) {
  if constexpr (upsample_skip::kRegisterBlocks<SW, at::opmath_type<scalar_t>>) {
    constexpr int kTile = std::max(1, 64 / SW);  // blocks per tile: 8 at stride 8 (4 measured 5% slower)
    const auto row = [&](auto nt, auto has_bias, auto has_skip, auto is_finite) {
      constexpr int NT = decltype(nt)::value;
      constexpr bool kB = decltype(has_bias)::value, kS = decltype(has_skip)::value, kF = decltype(is_finite)::value;
      const Range core = plan.core;
      int64_t m = plan.m_lo;
      for (; m < core.begin; ++m) label_tile<NT, false, 1, kB, kS, false>(plan, taps, bias, skip, n, i, m, orow);
      for (; m + kTile <= core.end; m += kTile)
        label_tile<NT, true, kTile, kB, kS, kF>(plan, taps, bias, skip, n, i, m, orow);
      for (; m < core.end; ++m) label_tile<NT, true, 1, kB, kS, kF>(plan, taps, bias, skip, n, i, m, orow);
      for (; m < plan.m_hi; ++m) label_tile<NT, false, 1, kB, kS, false>(plan, taps, bias, skip, n, i, m, orow);
    };
    upsample_skip::with_tap_count(taps[0].n, [&](auto nt) {
      upsample_skip::with_flag(bias != nullptr, [&](auto has_bias) FCN_BLOCK_INLINE_LAMBDA {
        upsample_skip::with_flag(skip != nullptr, [&](auto has_skip) FCN_BLOCK_INLINE_LAMBDA {
          upsample_skip::with_flag(finite, [&](auto is_finite) FCN_BLOCK_INLINE_LAMBDA {
            row(nt, has_bias, has_skip, is_finite);
          });
        });
      });
    });
  }
}

// Direct path: one output row (n, i) per step, from register blocks (label_row) where they apply, else
// the classes' rows accumulated in turn. scores_finite(): whether no score can be NaN (scores_stay_finite),
// asked only where the register blocks, which use it, apply (it is a pass over the inputs).
template <int SW, typename scalar_t, typename Finite>
void argmax_kernel(Stride<SW> sw, const Geometry& g, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                   const scalar_t* skip, int64_t* out, Finite&& scores_finite) {
  using acc_t = at::opmath_type<scalar_t>;
  RowPlan<SW, scalar_t> plan_(sw, g, w);
  const bool finite = plan_.register_blocks && scores_finite();
  plan_.use_separable(w, [&] { return finite; });  // as upsample_skip's forward does
  const RowPlan<SW, scalar_t>& plan = plan_;
  at::parallel_for(0, g.N * g.Ho, grain_for(g.Cout * plan.work()), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(plan.acc_size()), ybuf(plan.separable() ? g.Cout * g.W : 0);
    std::vector<Taps<SW, scalar_t>> taps(g.Cout);
    std::vector<Taps<SW, scalar_t, acc_t>> sep(plan.separable() ? g.Cout : 0);
    RunningArgmax<acc_t> run(g.Wo);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % g.Ho, n = row / g.Ho;
      if (plan.separable()) {
        for (int64_t co = 0; co < g.Cout; ++co) plan.sep_taps(x, n, co, i, ybuf.data() + co * g.W, sep[co]);
        label_row(plan, sep.data(), bias, skip, n, i, finite, out + row * g.Wo);
        continue;
      }
      if (plan.taps(x, n, 0, i, taps[0])) {
        for (int64_t co = 1; co < g.Cout; ++co) plan.taps(x, n, co, i, taps[co]);
        label_row(plan, taps.data(), bias, skip, n, i, finite, out + row * g.Wo);
        continue;
      }
      for (int64_t co = 0; co < g.Cout; ++co) {
        const acc_t* a = plan.row(x, n, co, i, acc.data());
        const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
        if (skip) {
          const scalar_t* srow = skip + g.skip_index(n, co, i, 0);
          for (int64_t j = 0; j < g.Wo; ++j)
            run.take(j, int32_t(co), rounded<scalar_t>(a[j] + b + static_cast<acc_t>(srow[j])));
        } else {
          for (int64_t j = 0; j < g.Wo; ++j) run.take(j, int32_t(co), rounded<scalar_t>(a[j] + b));
        }
      }
      run.store(0, g.Wo, out + row * g.Wo);
    }
  });
}

// GEMM path: one block row bi of one image per task, its groups' GEMMs in turn (as upsample_skip's
// forward_gemm_kernel runs them).
template <typename scalar_t>
void argmax_gemm_kernel(const Geometry& g, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                        const scalar_t* skip, int64_t* out, const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t kdim = cin_g * ceil_div(g.Kh, g.sh) * ceil_div(g.Kw, g.sw), cols = cout_g * g.sh * g.sw;
  const auto B = weight_blocks(g, w, acc_options);
  const int64_t bi_lo = floor_div(g.oy, g.sh), bi_hi = ceil_div(g.oy + g.Ho, g.sh);
  const int64_t bj_lo = floor_div(g.ox, g.sw), bj_hi = ceil_div(g.ox + g.Wo, g.sw), nb = bj_hi - bj_lo;
  at::parallel_for(0, g.N * (bi_hi - bi_lo), 1, [&](int64_t begin, int64_t end) {
    auto A = at::empty({nb, kdim}, acc_options), C = at::empty({nb, cols}, acc_options);
    acc_t* a = A.mutable_data_ptr<acc_t>();
    const acc_t* c = C.const_data_ptr<acc_t>();
    RunningArgmax<acc_t> run(g.sh * g.Wo);  // rows rh of the block row
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = bi_lo + task % (bi_hi - bi_lo), n = task / (bi_hi - bi_lo);
      const int64_t rh_lo = std::max<int64_t>(0, g.oy - bi * g.sh), rh_hi = std::min(g.sh, g.oy + g.Ho - bi * g.sh);
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        gather_block_row(g, x, n, grp, bi, bj_lo, bj_hi, a);
        at::mm_out(C, A, B[grp]);
        for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
          const int64_t co = grp * cout_g + co_l;
          const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
          for (int64_t rh = rh_lo; rh < rh_hi; ++rh) {
            const int64_t i = bi * g.sh + rh - g.oy;
            const scalar_t* srow = skip ? skip + g.skip_index(n, co, i, 0) : nullptr;
            for (int64_t bj = bj_lo; bj < bj_hi; ++bj) {
              const acc_t* cb = c + (bj - bj_lo) * cols + (co_l * g.sh + rh) * g.sw;
              const int64_t j0 = bj * g.sw - g.ox;
              const int64_t r0 = std::max<int64_t>(0, -j0), r1 = std::min<int64_t>(g.sw, g.Wo - j0);
              for (int64_t r = r0; r < r1; ++r) {
                acc_t v = cb[r] + b;
                if (srow) v += static_cast<acc_t>(srow[j0 + r]);
                run.take(rh * g.Wo + j0 + r, int32_t(co), rounded<scalar_t>(v));
              }
            }
          }
        }
      }
      for (int64_t rh = rh_lo; rh < rh_hi; ++rh)
        run.store(rh * g.Wo, g.Wo, out + (n * g.Ho + bi * g.sh + rh - g.oy) * g.Wo);
    }
  });
}

// The CPU kernel behind the op's entry point (csrc/host/upsample_argmax.h).
struct CpuKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;

  static void forward(const Forward& p) {
    run_forward<Result::kLabels>(p, p.labels, [](const auto&... a) { argmax_gemm_kernel(a...); },
                                 [&](const auto&... a) { argmax_kernel(a..., [&] { return scores_stay_finite(p); }); });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) { register_kernels<CpuKernels>(m); }

}  // namespace upsample_argmax
}  // namespace fcn_kernels
