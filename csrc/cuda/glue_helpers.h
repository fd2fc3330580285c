// Host helpers of the CUDA glue files: torch dtype -> the launchers' DType, the launchers' workspaces,
// the launch on the current stream, and the conv-like ops' kernels, written once here. (c10/cuda, not
// ATen/cuda/CUDAContext.h: that one needs the cuSPARSE/cuBLAS headers, which a minimal toolkit lacks.)
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include <cuda_runtime.h>

#include "../host/checks.h"
#include "dtype.h"

namespace fcn_kernels {
namespace cuda {

inline DType dtype_of(c10::ScalarType t, const char* op) {
  switch (t) {
    case c10::kFloat: return DType::kFloat;
    case c10::kDouble: return DType::kDouble;
    case c10::kHalf: return DType::kHalf;
    case c10::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK(false, op, " (cuda): unsupported dtype ", t);
  }
}

// The weight gradients' accumulator workspace: `elems` floats (doubles for double tensors) on
// `like`'s device, or an undefined tensor when no workspace is needed.
inline at::Tensor accumulator_workspace(int64_t elems, const at::Tensor& like) {
  if (elems == 0) return at::Tensor();
  return at::empty({elems}, like.options().dtype(like.scalar_type() == c10::kDouble ? c10::kDouble : c10::kFloat));
}

// launch(dtype of `like`, stream) on `like`'s device and its current stream; a launch error raises.
template <typename Launch>
void launch_like(const at::Tensor& like, const char* op, Launch&& launch) {
  const c10::cuda::CUDAGuard guard(like.device());
  C10_CUDA_CHECK(launch(dtype_of(like.scalar_type(), op), c10::cuda::getCurrentCUDAStream()));
}

// The CUDA kernels of a conv-like op (rarefied_conv2d, upsample_skip) behind its host layer's calls
// (csrc/host/<op>.h: Forward, and backward.h's BackwardInput / BackwardWeight), through its Launchers
// (ConvLaunchers, conv_cuda.h); kOp names the op in errors.
template <typename Launchers, const char* const& kOp>
struct ConvKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;
  static constexpr Layout kLayout = Layout::kContiguous;

  template <typename Forward>
  static void forward(const Forward& p) {
    const void* skip = nullptr;  // an op without a skip input has no p.skip
    if constexpr (requires { p.skip; }) skip = data_or_null(p.skip);
    launch_like(p.x, kOp, [&](DType dtype, cudaStream_t stream) {
      return Launchers::forward(dtype, p.g, p.x.const_data_ptr(), p.weight.const_data_ptr(), data_or_null(p.bias),
                                skip, p.out.mutable_data_ptr(), stream);
    });
  }

  template <typename BackwardInput>
  static void backward_input(const BackwardInput& p) {
    launch_like(p.grad_out, kOp, [&](DType dtype, cudaStream_t stream) {
      return Launchers::backward_input(dtype, p.g, p.grad_out.const_data_ptr(), p.weight.const_data_ptr(),
                                       p.grad_x.mutable_data_ptr(), stream);
    });
  }

  template <typename BackwardWeight>
  static void backward_weight(const BackwardWeight& p) {
    const at::Tensor ws = accumulator_workspace(Launchers::backward_weight_workspace(p.g), p.grad_out);
    launch_like(p.grad_out, kOp, [&](DType dtype, cudaStream_t stream) {
      return Launchers::backward_weight(dtype, p.g, p.grad_out.const_data_ptr(), p.x.const_data_ptr(),
                                        p.grad_w.mutable_data_ptr(), ws.defined() ? ws.mutable_data_ptr() : nullptr,
                                        stream);
    });
  }
};

}  // namespace cuda
}  // namespace fcn_kernels
