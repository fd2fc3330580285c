// Host helpers of the CUDA glue files: torch dtype -> the launchers' DType, and the launchers' workspaces.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

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

}  // namespace cuda
}  // namespace fcn_kernels
