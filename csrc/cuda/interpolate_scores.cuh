// The bilinear scores of the CUDA kernels of interpolate_logsumexp and interpolate_argmax: class c at output
// (n, i, j) blended from x's 2 x 2 taps (csrc/index/interpolate.h's blend, in PyTorch's order) and rounded to
// x's dtype, as F.interpolate stores it. The taps are the host layer's (PyTorch's rule, csrc/host/
// interpolate.h), uploaded by the glue (interpolate_taps.h) as 2 (Ho + Wo) indices and as many weights.
#pragma once

#include "../index/interpolate.h"
#include "scores.cuh"

namespace fcn_kernels {
namespace interpolate {
namespace cuda {

using fcn_kernels::cuda::AccOf;

template <typename T>
struct BilinearScores {
  using A = typename AccOf<T>::type;
  Geometry g;
  const T* __restrict__ x;
  Taps<A> rows, cols;

  // index: i0 and i1 of the rows (Ho each), then of the columns (Wo each); lambda: l0, l1 likewise.
  static BilinearScores make(const Geometry& g, const void* x, const int64_t* index, const void* lambda) {
    const A* l = static_cast<const A*>(lambda);
    const int64_t c = 2 * g.Ho;
    return BilinearScores{g, static_cast<const T*>(x), Taps<A>{index, index + g.Ho, l, l + g.Ho},
                          Taps<A>{index + c, index + c + g.Wo, l + c, l + c + g.Wo}};
  }

  __device__ __forceinline__ A score(int64_t n, int64_t c, int64_t i, int64_t j) const {
    const fcn_kernels::cuda::Load<T> plane{x + (n * g.C + c) * g.H * g.W};
    const int64_t W = g.W;
    const auto at = [&](int64_t r, int64_t col) { return plane(r * W + col); };
    return fcn_kernels::cuda::rounded<T>(
        blend<A>(rows.l0[i], rows.l1[i], cols.l0[j], cols.l1[j], rows.i0[i], rows.i1[i], cols.i0[j], cols.i1[j], at));
  }
};

}  // namespace cuda
}  // namespace interpolate
}  // namespace fcn_kernels
