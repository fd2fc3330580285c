// CUDA glue of interpolate_argmax: the torch-free launcher of interpolate_argmax_kernel.cu behind the op's
// entry point (csrc/host/interpolate_argmax.h: checks, contiguous x, the labels allocated), with the call's
// taps on the device (interpolate_taps.h), on the current stream.
#include <torch/library.h>

#include "../host/interpolate_argmax.h"
#include "glue_helpers.h"
#include "interpolate_argmax_cuda.h"
#include "interpolate_taps.h"

namespace fcn_kernels {
namespace interpolate_argmax {
namespace {

using fcn_kernels::cuda::DType;
using fcn_kernels::cuda::launch_like;

struct CudaKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;

  static void forward(const Forward& p) {
    const interpolate::DeviceTaps taps = interpolate::device_taps(p.g, p.x);
    launch_like(p.x, kOp, [&](DType dtype, cudaStream_t stream) {
      return cuda::launch(dtype, p.g, p.x.const_data_ptr(), taps.index.const_data_ptr<int64_t>(),
                          taps.lambda.const_data_ptr(), p.labels.mutable_data_ptr<int64_t>(), stream);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) { register_kernels<CudaKernels>(m); }

}  // namespace interpolate_argmax
}  // namespace fcn_kernels
