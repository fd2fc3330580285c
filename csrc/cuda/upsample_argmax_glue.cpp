// CUDA glue of upsample_argmax: the host layer (csrc/host/upsample_argmax.h) checks, makes contiguous and
// allocates; then the torch-free launcher of upsample_argmax_kernel.cu runs on the current stream.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../host/upsample_argmax.h"
#include "glue_helpers.h"
#include "upsample_argmax_cuda.h"

namespace fcn_kernels {
namespace upsample_argmax {
namespace {

using fcn_kernels::cuda::dtype_of;

at::Tensor forward_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                        at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset) {
  const Forward p = prepare_forward(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset,
                                    c10::DeviceType::CUDA);
  if (p.done()) return p.labels;
  const c10::cuda::CUDAGuard guard(p.x.device());
  C10_CUDA_CHECK(cuda::launch(dtype_of(p.x.scalar_type(), kOp), p.g, p.x.const_data_ptr(), p.weight.const_data_ptr(),
                              data_or_null(p.bias), data_or_null(p.skip), p.labels.mutable_data_ptr<int64_t>(),
                              c10::cuda::getCurrentCUDAStream()));
  return p.labels;
}

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) { m.impl("upsample_argmax", &forward_cuda); }

}  // namespace upsample_argmax
}  // namespace fcn_kernels
