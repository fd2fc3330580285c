// CUDA glue of rarefied_conv2d: the host layer (csrc/host/rarefied_conv2d.h) checks, makes contiguous and
// allocates; then the torch-free launchers of rarefied_conv2d_kernel.cu run on the current stream.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../host/rarefied_conv2d.h"
#include "glue_helpers.h"
#include "rarefied_conv2d_cuda.h"

namespace fcn_kernels {
namespace rarefied_conv2d {
namespace {

using fcn_kernels::cuda::accumulator_workspace;
using fcn_kernels::cuda::dtype_of;

at::Tensor forward_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  const Forward p = prepare_forward(x, weight, bias, rarefaction, padding, groups, c10::DeviceType::CUDA,
                                    Layout::kContiguous);
  if (p.done()) return p.out;
  const c10::cuda::CUDAGuard guard(p.x.device());
  C10_CUDA_CHECK(cuda::launch_forward(dtype_of(p.x.scalar_type(), kOp), p.g, p.x.const_data_ptr(),
                                      p.weight.const_data_ptr(), data_or_null(p.bias), p.out.mutable_data_ptr(),
                                      c10::cuda::getCurrentCUDAStream()));
  return p.out;
}

at::Tensor backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& weight, at::IntArrayRef input_size,
                               at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  const BackwardInput p = prepare_backward_input(grad_out, weight, input_size, rarefaction, padding, groups,
                                                 c10::DeviceType::CUDA, Layout::kContiguous);
  if (p.done()) return p.grad_x;
  const c10::cuda::CUDAGuard guard(p.grad_out.device());
  C10_CUDA_CHECK(cuda::launch_backward_input(dtype_of(p.grad_out.scalar_type(), kOp), p.g,
                                             p.grad_out.const_data_ptr(), p.weight.const_data_ptr(),
                                             p.grad_x.mutable_data_ptr(), c10::cuda::getCurrentCUDAStream()));
  return p.grad_x;
}

at::Tensor backward_weight_cuda(const at::Tensor& grad_out, const at::Tensor& x, at::IntArrayRef weight_size,
                                at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  const BackwardWeight p = prepare_backward_weight(grad_out, x, weight_size, rarefaction, padding, groups,
                                                   c10::DeviceType::CUDA, Layout::kContiguous);
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
  m.impl("rarefied_conv2d", &forward_cuda);
  m.impl("rarefied_conv2d_backward_input", &backward_input_cuda);
  m.impl("rarefied_conv2d_backward_weight", &backward_weight_cuda);
}

}  // namespace rarefied_conv2d
}  // namespace fcn_kernels
