// CUDA glue of upsample_logsumexp: the torch-free launchers of upsample_logsumexp_kernel.cu behind the ops'
// entry points (csrc/host/upsample_logsumexp.h: checks, the labels' range, contiguous inputs, the results
// allocated), on the current stream.
#include <torch/library.h>

#include "../host/upsample_logsumexp.h"
#include "glue_helpers.h"
#include "upsample_logsumexp_cuda.h"

namespace fcn_kernels {
namespace upsample_logsumexp {
namespace {

using fcn_kernels::cuda::accumulator_workspace;
using fcn_kernels::cuda::DType;
using fcn_kernels::cuda::launch_like;

cuda::Scores scores_of(const Scores& p) {
  return {p.x.const_data_ptr(), p.weight.const_data_ptr(), data_or_null(p.bias), data_or_null(p.skip),
          p.target.const_data_ptr<int64_t>(), p.ignore_index};
}

void* wanted(bool need, const at::Tensor& t) { return need ? t.mutable_data_ptr() : nullptr; }

struct CudaKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;

  static void forward(const Forward& p) {
    launch_like(p.x, kOp, [&](DType dtype, cudaStream_t stream) {
      return cuda::launch_forward(dtype, p.g, scores_of(p), p.lse.mutable_data_ptr(), p.picked.mutable_data_ptr(),
                                  stream);
    });
  }

  static void backward(const Backward& p) {
    const at::Tensor ws = accumulator_workspace(
        p.need_weight || p.need_bias ? cuda::backward_workspace(p.g) : 0, p.x);
    const cuda::Backward b{p.lse.const_data_ptr(),      p.grad_lse.const_data_ptr(),
                           p.grad_picked.const_data_ptr(), wanted(p.need_x, p.grad_x),
                           wanted(p.need_weight, p.grad_weight), wanted(p.need_bias, p.grad_bias),
                           wanted(p.need_skip, p.grad_skip), ws.defined() ? ws.mutable_data_ptr() : nullptr};
    launch_like(p.x, "upsample_logsumexp_backward", [&](DType dtype, cudaStream_t stream) {
      return cuda::launch_backward(dtype, p.g, scores_of(p), b, stream);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) { register_kernels<CudaKernels>(m); }

}  // namespace upsample_logsumexp
}  // namespace fcn_kernels
