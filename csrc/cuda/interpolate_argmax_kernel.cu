// interpolate_argmax on CUDA: a thread per output pixel visits the classes' bilinear scores in order
// (interpolate_scores.cuh: rounded to x's dtype) and keeps torch.argmax's winner (upsample_argmax::
// takes_over: NaN first, the lowest class on ties). Grid-stride over the pixels; no score is stored.
#include "../index/upsample_argmax.h"
#include "interpolate_argmax_cuda.h"
#include "interpolate_scores.cuh"

namespace fcn_kernels {
namespace interpolate_argmax {
namespace cuda {
namespace {

using namespace fcn_kernels::cuda;  // AccOf, blocks_for, with_type, kThreads
using interpolate::cuda::BilinearScores;

template <typename T>
__global__ void __launch_bounds__(kThreads) argmax_kernel(BilinearScores<T> s, int64_t* __restrict__ labels) {
  using A = typename AccOf<T>::type;
  const Geometry& g = s.g;
  const int64_t per_image = g.Ho * g.Wo, pixels = g.N * per_image;
  for (int64_t p = int64_t(blockIdx.x) * kThreads + threadIdx.x; p < pixels; p += int64_t(gridDim.x) * kThreads) {
    const int64_t n = p / per_image, i = (p % per_image) / g.Wo, j = p % g.Wo;
    A best = s.score(n, 0, i, j);
    int64_t label = 0;
    for (int64_t c = 1; c < g.C; ++c) {
      const A v = s.score(n, c, i, j);
      if (upsample_argmax::takes_over(v, best)) {
        best = v;
        label = c;
      }
    }
    labels[p] = label;
  }
}

}  // namespace

cudaError_t launch(DType dtype, const Geometry& g, const void* x, const int64_t* tap_index, const void* tap_lambda,
                   int64_t* labels, cudaStream_t stream) {
  const int64_t pixels = g.N * g.Ho * g.Wo;
  if (pixels == 0) return cudaSuccess;
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    argmax_kernel<<<blocks_for(pixels), kThreads, 0, stream>>>(BilinearScores<T>::make(g, x, tap_index, tap_lambda), labels);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace interpolate_argmax
}  // namespace fcn_kernels
