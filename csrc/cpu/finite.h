// The CPU kernels' fast layouts multiply zeros that are no terms of the op (padding of a gathered
// operand, dropped columns) by the other operand: exact while that operand is finite, NaN (0 * Inf)
// otherwise. They check what such zeros meet, where that is small (a weight, a result's element),
// and take an exact path when it is not finite.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

namespace fcn_kernels {

// v - v is 0 exactly when v is finite (NaN for NaN and infinities): no branch, so loops vectorize.
template <typename T>
inline bool is_finite(T v) {
  return v - v == T(0);
}

// One pass without a branch per element, so that it vectorizes.
inline bool all_finite(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  bool bad = false;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "all_finite", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* p = c.const_data_ptr<scalar_t>();
    for (int64_t i = 0, n = c.numel(); i < n; ++i) {
      bad |= !is_finite(static_cast<acc_t>(p[i]));
    }
  });
  return !bad;
}

}  // namespace fcn_kernels
