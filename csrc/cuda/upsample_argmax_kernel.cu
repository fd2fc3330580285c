// upsample_argmax on CUDA: a thread per output pixel loops over the classes, each score gathered as
// upsample_skip's forward gathers it (ForwardPlane of csrc/index/upsample_skip.h, same summation
// order, bias then skip, one rounding to the dtype) and reduced by label_at (csrc/index/
// upsample_argmax.h, replayed on the host by the ctest). The weights are read in place: FCN's last
// stage has a few thousand (21 x 16 x 16), which stay in L1 for every thread of a block. Writes only
// the int64 labels; grid-stride over the pixels.
#include "plane_kernel.cuh"  // force_index64
#include "../index/upsample_argmax.h"
#include "scores.cuh"
#include "upsample_argmax_cuda.h"

namespace fcn_kernels {
namespace upsample_argmax {
namespace cuda {
namespace {

using namespace fcn_kernels::cuda;  // ScoreInputs, with_type, kThreads, kMaxBlocks

template <typename T, typename I>
__global__ void __launch_bounds__(kThreads, 2) argmax_kernel(upsample_skip::ForwardPlane<I> op, ScoreInputs<T> in,
                                                          int64_t* __restrict__ labels) {
  const int64_t per_image = int64_t(op.rows()) * op.cols(), pixels = op.images * per_image;
  for (int64_t p = int64_t(blockIdx.x) * kThreads + threadIdx.x; p < pixels; p += int64_t(gridDim.x) * kThreads) {
    const int64_t n = p / per_image;
    const I r = I(p - n * per_image), i = r / op.cols(), j = r - i * op.cols();
    labels[p] = label_at(op, in, n, i, j);
  }
}

template <typename T>
cudaError_t launch_as(const Geometry& g, const T* x, const T* w, const T* bias, const T* skip, int64_t* labels,
                      cudaStream_t stream) {
  const int64_t pixels = g.N * g.Ho * g.Wo;
  if (pixels == 0) return cudaSuccess;
  const ScoreInputs<T> in = score_inputs(x, w, bias, skip);
  const unsigned blocks = unsigned(imin((pixels + kThreads - 1) / kThreads, kMaxBlocks));
  if (upsample_skip::ForwardPlane<int64_t>::span(g, 1) <= kMaxSpan32 && !force_index64())
    argmax_kernel<T, int32_t><<<blocks, kThreads, 0, stream>>>(upsample_skip::ForwardPlane<int32_t>::make(g), in,
                                                               labels);
  else
    argmax_kernel<T, int64_t><<<blocks, kThreads, 0, stream>>>(upsample_skip::ForwardPlane<int64_t>::make(g), in,
                                                               labels);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias, const void* skip,
                   int64_t* labels, cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_as(g, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
                     static_cast<const T*>(skip), labels, stream);
  });
}

}  // namespace cuda
}  // namespace upsample_argmax
}  // namespace fcn_kernels
