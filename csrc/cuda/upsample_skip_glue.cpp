// CUDA glue of upsample_skip: the host layer (csrc/host/upsample_skip.h) checks, makes contiguous and
// allocates; then the torch-free launchers of upsample_skip_kernel.cu run on the current stream.
// (c10/cuda, not ATen/cuda/CUDAContext.h: that one needs the cuSPARSE/cuBLAS headers, which a minimal
// toolkit lacks.)
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../host/upsample_skip.h"
#include "glue_helpers.h"
#include "upsample_skip_cuda.h"

namespace fcn_kernels {
namespace upsample_skip {
namespace {

using fcn_kernels::cuda::accumulator_workspace;
using fcn_kernels::cuda::dtype_of;

at::Tensor forward_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                        at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset) {
  const Forward p = prepare_forward(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset,
                                    c10::DeviceType::CUDA);
  if (p.done()) return p.out;
  const c10::cuda::CUDAGuard guard(p.x.device());
  C10_CUDA_CHECK(cuda::launch_forward(dtype_of(p.x.scalar_type(), kOp), p.g, p.x.const_data_ptr(),
                                      p.weight.const_data_ptr(), data_or_null(p.bias), data_or_null(p.skip),
                                      p.out.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream()));
  return p.out;
}

at::Tensor backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& weight, at::IntArrayRef input_size,
                               at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset) {
  const BackwardInput p = prepare_backward_input(grad_out, weight, input_size, stride, groups, out_offset,
                                                 c10::DeviceType::CUDA);
  if (p.done()) return p.grad_x;
  const c10::cuda::CUDAGuard guard(p.grad_out.device());
  C10_CUDA_CHECK(cuda::launch_backward_input(dtype_of(p.grad_out.scalar_type(), kOp), p.g,
                                             p.grad_out.const_data_ptr(), p.weight.const_data_ptr(),
                                             p.grad_x.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream()));
  return p.grad_x;
}

at::Tensor backward_weight_cuda(const at::Tensor& grad_out, const at::Tensor& x, at::IntArrayRef weight_size,
                                at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset) {
  const BackwardWeight p = prepare_backward_weight(grad_out, x, weight_size, stride, groups, out_offset,
                                                   c10::DeviceType::CUDA);
  if (p.done()) return p.grad_w;
  const c10::cuda::CUDAGuard guard(p.grad_out.device());
  const at::Tensor ws = accumulator_workspace(cuda::backward_weight_workspace(p.g), p.grad_out);
  C10_CUDA_CHECK(cuda::launch_backward_weight(dtype_of(p.grad_out.scalar_type(), kOp), p.g,
                                              p.grad_out.const_data_ptr(), p.x.const_data_ptr(),
                                              p.grad_w.mutable_data_ptr(),
                                              ws.defined() ? ws.mutable_data_ptr() : nullptr,
                                              c10::cuda::getCurrentCUDAStream()));
  return p.grad_w;
}

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) {
  m.impl("upsample_skip", &forward_cuda);
  m.impl("upsample_skip_backward_input", &backward_input_cuda);
  m.impl("upsample_skip_backward_weight", &backward_weight_cuda);
}

}  // namespace upsample_skip
}  // namespace fcn_kernels
