// CUDA glue of rarefied_conv2d: checks (csrc/rarefied_conv_host.h), allocation and dtype dispatch,
// then the torch-free launchers of rarefied_conv2d_kernel.cu on the current stream.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "glue_helpers.h"

#include "../rarefied_conv_host.h"
#include "rarefied_conv2d_cuda.h"

namespace fcn_kernels {
namespace rarefied_conv {
namespace {

using fcn_kernels::cuda::accumulator_workspace;
using fcn_kernels::cuda::dtype_of;

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "rarefied_conv2d (cuda kernel): ", name, " must be a CUDA tensor, got ", t.device());
}

at::Tensor forward_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_cuda(x, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  const Geometry g = forward_geometry(x, weight, bias, rarefaction, padding, groups);
  auto out = at::empty({g.N, g.Cout, g.Ho, g.Wo}, x.options());
  if (out.numel() == 0) return out;
  const auto xc = x.contiguous(), wc = weight.contiguous();
  const auto bc = bias.has_value() ? bias->contiguous() : at::Tensor();
  C10_CUDA_CHECK(cuda::launch_forward(dtype_of(x.scalar_type(), kOp), g, xc.const_data_ptr(), wc.const_data_ptr(),
                                      bc.defined() ? bc.const_data_ptr() : nullptr, out.mutable_data_ptr(),
                                      c10::cuda::getCurrentCUDAStream()));
  return out;
}

at::Tensor backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& weight, at::IntArrayRef input_size,
                               at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_cuda(grad_out, "grad_out");
  check_same(kOp, weight, grad_out, "weight");
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const Geometry g = backward_geometry(grad_out, input_size, weight.sizes(), rarefaction, padding, groups);
  auto gx = at::empty(input_size, grad_out.options());
  if (gx.numel() == 0) return gx;
  const auto goc = grad_out.contiguous(), wc = weight.contiguous();
  C10_CUDA_CHECK(cuda::launch_backward_input(dtype_of(grad_out.scalar_type(), kOp), g, goc.const_data_ptr(),
                                             wc.const_data_ptr(), gx.mutable_data_ptr(),
                                             c10::cuda::getCurrentCUDAStream()));
  return gx;
}

at::Tensor backward_weight_cuda(const at::Tensor& grad_out, const at::Tensor& x, at::IntArrayRef weight_size,
                                at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_cuda(grad_out, "grad_out");
  check_same(kOp, x, grad_out, "x");
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const Geometry g = backward_geometry(grad_out, x.sizes(), weight_size, rarefaction, padding, groups);
  if (g.N == 0) return at::zeros(weight_size, grad_out.options());
  auto gw = at::empty(weight_size, grad_out.options());
  const auto goc = grad_out.contiguous(), xc = x.contiguous();
  const at::Tensor ws = accumulator_workspace(cuda::backward_weight_workspace(g), grad_out);
  C10_CUDA_CHECK(cuda::launch_backward_weight(dtype_of(grad_out.scalar_type(), kOp), g, goc.const_data_ptr(),
                                              xc.const_data_ptr(), gw.mutable_data_ptr(),
                                              ws.defined() ? ws.mutable_data_ptr() : nullptr,
                                              c10::cuda::getCurrentCUDAStream()));
  return gw;
}

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) {
  m.impl("rarefied_conv2d", &forward_cuda);
  m.impl("rarefied_conv2d_backward_input", &backward_input_cuda);
  m.impl("rarefied_conv2d_backward_weight", &backward_weight_cuda);
}

}  // namespace rarefied_conv
}  // namespace fcn_kernels
