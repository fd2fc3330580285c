// Torch dtype -> the launchers' DType, for the CUDA glue files (host only).
#pragma once

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

}  // namespace cuda
}  // namespace fcn_kernels
