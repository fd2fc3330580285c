// CUDA glue of upsample_argmax: the torch-free launcher of upsample_argmax_kernel.cu behind the op's entry
// point (csrc/host/upsample_argmax.h: checks, contiguous inputs, the labels allocated), on the current
// stream.
#include <torch/library.h>

#include "../host/upsample_argmax.h"
#include "glue_helpers.h"
#include "upsample_argmax_cuda.h"

namespace fcn_kernels {
namespace upsample_argmax {
namespace {

using fcn_kernels::cuda::DType;
using fcn_kernels::cuda::launch_like;

struct CudaKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;

  static void forward(const Forward& p) {
    launch_like(p.x, kOp, [&](DType dtype, cudaStream_t stream) {
      return cuda::launch(dtype, p.g, p.x.const_data_ptr(), p.weight.const_data_ptr(), data_or_null(p.bias),
                          data_or_null(p.skip), p.labels.mutable_data_ptr<int64_t>(), stream);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) { register_kernels<CudaKernels>(m); }

}  // namespace upsample_argmax
}  // namespace fcn_kernels
