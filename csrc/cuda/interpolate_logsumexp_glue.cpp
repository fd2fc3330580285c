// CUDA glue of interpolate_logsumexp: the torch-free launchers of interpolate_logsumexp_kernel.cu behind the
// ops' entry points (csrc/host/interpolate_logsumexp.h: checks, the labels' range, contiguous inputs, the
// results allocated), with the call's taps on the device (interpolate_taps.h), on the current stream.
#include <torch/library.h>

#include "../host/interpolate_logsumexp.h"
#include "glue_helpers.h"
#include "interpolate_logsumexp_cuda.h"
#include "interpolate_taps.h"

namespace fcn_kernels {
namespace interpolate_logsumexp {
namespace {

using fcn_kernels::cuda::DType;
using fcn_kernels::cuda::launch_like;

cuda::Scores scores_of(const Scores& p, const interpolate::DeviceTaps& taps) {
  return {p.x.const_data_ptr(), taps.index.const_data_ptr<int64_t>(), taps.lambda.const_data_ptr(),
          p.target.const_data_ptr<int64_t>(), p.ignore_index};
}

struct CudaKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;

  static void forward(const Forward& p) {
    const interpolate::DeviceTaps taps = interpolate::device_taps(p.g, p.x);
    launch_like(p.x, kOp, [&](DType dtype, cudaStream_t stream) {
      return cuda::launch_forward(dtype, p.g, scores_of(p, taps), p.lse.mutable_data_ptr(),
                                  p.picked.mutable_data_ptr(), stream);
    });
  }

  static void backward(const Backward& p) {
    const interpolate::DeviceTaps taps = interpolate::device_taps(p.g, p.x);
    launch_like(p.x, "interpolate_logsumexp_backward", [&](DType dtype, cudaStream_t stream) {
      return cuda::launch_backward(dtype, p.g, scores_of(p, taps), p.lse.const_data_ptr(),
                                   p.grad_lse.const_data_ptr(), p.grad_picked.const_data_ptr(),
                                   p.grad_x.mutable_data_ptr(), stream);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) { register_kernels<CudaKernels>(m); }

}  // namespace interpolate_logsumexp
}  // namespace fcn_kernels
