// Host helpers of the CUDA glue files: torch dtype -> the launchers' DType, the launchers' workspaces,
// and the launch on the current stream. The backward launchers of every op take the same arguments
// (csrc/cuda/<op>_cuda.h), so their glue is written once, here. (c10/cuda, not ATen/cuda/CUDAContext.h:
// that one needs the cuSPARSE/cuBLAS headers, which a minimal toolkit lacks.)
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include <cuda_runtime.h>

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

// An op's backward passes (P: its BackwardInput / BackwardWeight, csrc/host/backward.h) through its
// launchers (`launch`, and `workspace` for the weight gradient's accumulators).
template <typename P, typename Launch>
void backward_input_via(const P& p, const char* op, Launch&& launch) {
  launch_like(p.grad_out, op, [&](DType dtype, cudaStream_t stream) {
    return launch(dtype, p.g, p.grad_out.const_data_ptr(), p.weight.const_data_ptr(), p.grad_x.mutable_data_ptr(),
                  stream);
  });
}

template <typename P, typename Workspace, typename Launch>
void backward_weight_via(const P& p, const char* op, Workspace&& workspace, Launch&& launch) {
  const at::Tensor ws = accumulator_workspace(workspace(p.g), p.grad_out);
  launch_like(p.grad_out, op, [&](DType dtype, cudaStream_t stream) {
    return launch(dtype, p.g, p.grad_out.const_data_ptr(), p.x.const_data_ptr(), p.grad_w.mutable_data_ptr(),
                  ws.defined() ? ws.mutable_data_ptr() : nullptr, stream);
  });
}

}  // namespace cuda
}  // namespace fcn_kernels
