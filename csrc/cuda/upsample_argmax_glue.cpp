// CUDA glue of upsample_argmax: checks, allocation and dtype dispatch on the host, then the torch-free
// launcher of upsample_argmax_kernel.cu on the current stream.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "glue_helpers.h"

#include "../upsample_skip_host.h"
#include "upsample_argmax_cuda.h"

namespace fcn_kernels {
namespace upsample_argmax {
namespace {

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

at::Tensor argmax_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                       at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset) {
  const c10::cuda::CUDAGuard guard(x.device());
  upsample_skip::Prepared p = upsample_skip::prepare_argmax(x, weight, bias, skip, stride, groups, out_offset,
                                                            out_size, skip_offset, c10::DeviceType::CUDA);
  if (p.out.numel() == 0) return p.out;
  C10_CUDA_CHECK(cuda::launch(fcn_kernels::cuda::dtype_of(x.scalar_type(), "upsample_argmax"), p.g,
                              p.a.const_data_ptr(), p.b.const_data_ptr(), ptr_or_null(p.bias), ptr_or_null(p.skip),
                              p.out.mutable_data_ptr<int64_t>(), c10::cuda::getCurrentCUDAStream()));
  return p.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) { m.impl("upsample_argmax", &argmax_cuda); }

}  // namespace upsample_argmax
}  // namespace fcn_kernels
