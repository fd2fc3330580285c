// CUDA glue of upsample_skip: checks, allocation and dtype dispatch on the host, then the
// torch-free launchers of upsample_skip_kernel.cu on the current stream. (c10/cuda, not
// ATen/cuda/CUDAContext.h: that one needs the cuSPARSE/cuBLAS headers, which a minimal toolkit lacks.)
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "glue_helpers.h"

#include "../upsample_skip_host.h"
#include "upsample_skip_cuda.h"

namespace fcn_kernels {
namespace upsample_skip {
namespace {

using fcn_kernels::cuda::accumulator_workspace;
using fcn_kernels::cuda::dtype_of;

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

at::Tensor forward_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                        at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset) {
  const c10::cuda::CUDAGuard guard(x.device());
  Prepared p = prepare_forward(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset,
                               c10::DeviceType::CUDA);
  if (p.out.numel() == 0) return p.out;
  C10_CUDA_CHECK(cuda::launch_forward(dtype_of(x.scalar_type(), kOp), p.g, p.a.const_data_ptr(), p.b.const_data_ptr(),
                                      ptr_or_null(p.bias), ptr_or_null(p.skip), p.out.mutable_data_ptr(),
                                      c10::cuda::getCurrentCUDAStream()));
  return p.out;
}

at::Tensor backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& weight, at::IntArrayRef input_size,
                               at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset) {
  const c10::cuda::CUDAGuard guard(grad_out.device());
  Prepared p = prepare_backward(grad_out, weight, true, input_size, stride, groups, out_offset,
                                c10::DeviceType::CUDA);
  if (p.out.numel() == 0) return p.out;
  C10_CUDA_CHECK(cuda::launch_backward_input(dtype_of(grad_out.scalar_type(), kOp), p.g, p.a.const_data_ptr(),
                                             p.b.const_data_ptr(), p.out.mutable_data_ptr(),
                                             c10::cuda::getCurrentCUDAStream()));
  return p.out;
}

at::Tensor backward_weight_cuda(const at::Tensor& grad_out, const at::Tensor& x, at::IntArrayRef weight_size,
                                at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset) {
  const c10::cuda::CUDAGuard guard(grad_out.device());
  Prepared p = prepare_backward(grad_out, x, false, weight_size, stride, groups, out_offset,
                                c10::DeviceType::CUDA);
  if (p.out.numel() == 0) return p.out;
  const at::Tensor ws = accumulator_workspace(cuda::backward_weight_workspace(p.g), grad_out);
  C10_CUDA_CHECK(cuda::launch_backward_weight(dtype_of(grad_out.scalar_type(), kOp), p.g, p.a.const_data_ptr(),
                                              p.b.const_data_ptr(), p.out.mutable_data_ptr(),
                                              ws.defined() ? ws.mutable_data_ptr() : nullptr,
                                              c10::cuda::getCurrentCUDAStream()));
  return p.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) {
  m.impl("upsample_skip", &forward_cuda);
  m.impl("upsample_skip_backward_input", &backward_input_cuda);
  m.impl("upsample_skip_backward_weight", &backward_weight_cuda);
}

}  // namespace upsample_skip
}  // namespace fcn_kernels
