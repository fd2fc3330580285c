// interpolate_argmax on CPU (docs/DESIGN.md §2.6): F.interpolate(x, size, mode="bilinear").argmax(1), one
// output row of every class at a time, never storing the (N, C, Ho, Wo) scores. The comparison is made on
// the scores rounded to x's dtype, in torch.argmax's order (index/upsample_argmax.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../host/interpolate_argmax.h"
#include "index/upsample_argmax.h"
#include "interpolate_rows.h"
#include "parallel_chunks.h"

namespace fcn_kernels {
namespace interpolate_argmax {
namespace {

template <typename scalar_t>
void argmax_kernel(const Forward& call) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g = call.g;
  const interpolate::PlaneTaps<acc_t> taps(g);
  const scalar_t* x = call.x.const_data_ptr<scalar_t>();
  int64_t* labels = call.labels.mutable_data_ptr<int64_t>();
  parallel_for(0, g.N * g.Ho, interpolate::grain_for_scores(g.C * g.Wo), [&](int64_t begin, int64_t end) {
    interpolate::ScoreRows<scalar_t> rows(g, x, taps.rows.view(), taps.cols.view());
    std::vector<acc_t> v(g.C * g.Wo), best(g.Wo);
    std::vector<int32_t> label(g.Wo);  // the maxima's width, so that the update vectorizes
    for (int64_t row = begin; row < end; ++row) {
      rows.scores(row / g.Ho, row % g.Ho, v.data());
      std::copy(v.begin(), v.begin() + g.Wo, best.begin());
      std::fill(label.begin(), label.end(), 0);
      for (int64_t c = 1; c < g.C; ++c) {
        const acc_t* vc = v.data() + c * g.Wo;
        for (int64_t j = 0; j < g.Wo; ++j) {
          const bool t = upsample_argmax::takes_over(vc[j], best[j]);
          best[j] = t ? vc[j] : best[j];
          label[j] = t ? int32_t(c) : label[j];
        }
      }
      std::copy(label.begin(), label.end(), labels + row * g.Wo);
    }
  });
}

// The CPU kernel behind the op's entry point (csrc/host/interpolate_argmax.h).
struct CpuKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;

  static void forward(const Forward& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "interpolate_argmax_cpu",
                                    [&] { argmax_kernel<scalar_t>(p); });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) { register_kernels<CpuKernels>(m); }

}  // namespace interpolate_argmax
}  // namespace fcn_kernels
