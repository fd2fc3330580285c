// interpolate_logsumexp on CUDA (docs/DESIGN.md §2.6), the bilinear scores of interpolate_scores.cuh
// recomputed where they are needed; nothing of the (N, C, Ho, Wo) scores' size is stored.
//   forward  a thread per output pixel (scores.cuh's stats_kernel): the classes' scores in order, their
//            log-sum-exp, the target's score.
//   grad_x   a thread per input element gathers the score gradients of the output pixels whose taps reach
//            it (rows_reaching, each axis), weighted by its share of their blend (tap_weight): the adjoint
//            of F.interpolate without atomics, in a fixed order.
#include "interpolate_logsumexp_cuda.h"
#include "interpolate_scores.cuh"

namespace fcn_kernels {
namespace interpolate_logsumexp {
namespace cuda {
namespace {

using namespace fcn_kernels::cuda;  // AccOf, PixelStats, launch_stats, blocks_for, with_type, kThreads
using interpolate::cuda::BilinearScores;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    input_grad_kernel(BilinearScores<T> s, PixelStats<typename AccOf<T>::type> st, T* __restrict__ gx) {
  using A = typename AccOf<T>::type;
  const Geometry& g = s.g;
  const int64_t elems = g.N * g.C * g.H * g.W;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < elems; e += int64_t(gridDim.x) * kThreads) {
    const int64_t w = e % g.W, h = (e / g.W) % g.H, c = (e / (g.W * g.H)) % g.C, n = e / (g.W * g.H * g.C);
    const Range is = interpolate::rows_reaching(s.rows, g.Ho, Range{h, h + 1});
    const Range js = interpolate::rows_reaching(s.cols, g.Wo, Range{w, w + 1});
    A acc = A(0);
    for (int64_t i = is.begin; i < is.end; ++i) {
      const A wr = interpolate::tap_weight(s.rows, i, h);
      A row = A(0);
      for (int64_t j = js.begin; j < js.end; ++j) {
        const int64_t p = (n * g.Ho + i) * g.Wo + j;
        row += interpolate::tap_weight(s.cols, j, w) * st.score_grad(p, c, s.score(n, c, i, j));
      }
      acc += wr * row;
    }
    assign(gx[e], acc);
  }
}

}  // namespace

cudaError_t launch_forward(DType dtype, const Geometry& g, const Scores& s, void* lse, void* picked,
                           cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_stats<typename AccOf<T>::type>(BilinearScores<T>::make(g, s.x, s.tap_index, s.tap_lambda), g.N,
                                                 g.C, g.Ho, g.Wo, s.target, s.ignore_index, lse, picked, stream);
  });
}

cudaError_t launch_backward(DType dtype, const Geometry& g, const Scores& s, const void* lse, const void* grad_lse,
                            const void* grad_picked, void* grad_x, cudaStream_t stream) {
  const int64_t elems = g.N * g.C * g.H * g.W;
  if (elems == 0) return cudaSuccess;
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    using A = typename AccOf<T>::type;
    const PixelStats<A> st{s.target, s.ignore_index, static_cast<const A*>(lse), static_cast<const A*>(grad_lse),
                           static_cast<const A*>(grad_picked)};
    input_grad_kernel<<<blocks_for(elems), kThreads, 0, stream>>>(
        BilinearScores<T>::make(g, s.x, s.tap_index, s.tap_lambda), st, static_cast<T*>(grad_x));
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace interpolate_logsumexp
}  // namespace fcn_kernels
