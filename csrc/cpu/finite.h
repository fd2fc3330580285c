// The CPU kernels' fast layouts multiply zeros that are no terms of the op (padding of a gathered
// operand, dropped columns) by the other operand: exact while that operand is finite, NaN (0 * Inf)
// otherwise. Their glue checks the small operand (a weight) and takes an exact path when it is not.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/all.h>
#include <ATen/ops/isfinite.h>

namespace fcn_kernels {

inline bool all_finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

}  // namespace fcn_kernels
