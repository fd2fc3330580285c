// The CPU kernels' fast layouts multiply zeros that are no terms of the op (padding of a gathered
// operand, dropped columns) by the other operand: exact while that operand is finite, NaN (0 * Inf)
// otherwise. They check what such zeros meet, where that is small (a weight, a result's element),
// and take an exact path when it is not finite.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

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

// The largest |element| of t, +Inf where an element is not finite. Compared as the bits of |v|, which
// order as the magnitudes do and put infinities and NaNs above every finite value: an integer maximum,
// which vectorizes (a float one would not, for its NaN rules).
inline double max_abs(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  double result = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "max_abs", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using bits_t = std::conditional_t<sizeof(acc_t) == 8, uint64_t, uint32_t>;
    constexpr bits_t kAbs = ~bits_t(0) >> 1, kInf = std::bit_cast<bits_t>(std::numeric_limits<acc_t>::infinity());
    const scalar_t* p = c.const_data_ptr<scalar_t>();
    bits_t m = 0;
    int64_t i = 0;
    const int64_t n = c.numel();
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      // float and double: four 64-byte vectors a step, four running maxima (as one loop vectorized it, each
      // maximum waited on the one before: 5 us for upscore8's 21 x 70 x 70 scores, a tenth of a call's fixed cost)
      using V [[gnu::vector_size(64)]] = bits_t;
      constexpr int64_t L = 64 / sizeof(bits_t);
      V most[4] = {};
      for (; i + 4 * L <= n; i += 4 * L)
        for (int k = 0; k < 4; ++k) {
          V v;
          std::memcpy(&v, p + i + k * L, sizeof v);
          v &= kAbs;
          most[k] = most[k] > v ? most[k] : v;
        }
      for (int k = 0; k < 4; ++k)
        for (int64_t l = 0; l < L; ++l) m = std::max(m, most[k][l]);
    }
    for (; i < n; ++i) m = std::max(m, bits_t(std::bit_cast<bits_t>(static_cast<acc_t>(p[i])) & kAbs));
    result = m >= kInf ? INFINITY : double(std::bit_cast<acc_t>(m));
  });
  return result;
}

// The sum of |element| of t, +Inf where an element is not finite (for small tensors: one double sum).
inline double sum_abs(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  double sum = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "sum_abs", [&] {
    const scalar_t* p = c.const_data_ptr<scalar_t>();
    const int64_t n = c.numel();
    // in any order (a bound, for a test against half the largest value): vectorized
    _Pragma("omp simd reduction(+ : sum)")  // (#pragma cannot stand inside the dispatch macro's argument)
    for (int64_t i = 0; i < n; ++i) sum += std::abs(double(p[i]));
  });
  return sum == sum ? sum : INFINITY;
}

}  // namespace fcn_kernels
