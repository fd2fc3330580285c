// One macro so that the index math below compiles unchanged as host code (C++
// CPU kernels, ctest) and as device code (nvcc).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FCN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FCN_HOST_DEVICE inline
#endif

#include <stdint.h>

namespace fcn_kernels {

// Half-open interval of indices; empty when end <= begin.
struct Range {
  int64_t begin;
  int64_t end;
  FCN_HOST_DEVICE int64_t size() const { return end > begin ? end - begin : 0; }
};

FCN_HOST_DEVICE int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
FCN_HOST_DEVICE int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Division rounding toward -inf / +inf for b > 0 (C++ '/' rounds toward zero,
// which is wrong for the negative numerators that crop offsets produce).
FCN_HOST_DEVICE int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
FCN_HOST_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// The two roundings the plane kernels need, in the kernel's index type I (int32_t on the fast
// path), with one truncating division each instead of floor_div's two: max(0, ceil(a / b)), the
// first tap or input of a range clipped at 0; and floor(a / b) + 1 for a >= 0, or 0 for a < 0, the
// end of a range that is empty when a < 0. b > 0 in both.
template <typename I>
FCN_HOST_DEVICE I ceil_div_at_least_0(I a, I b) {
  const I q = (a + b - 1) / b;  // ceil for a > 0; <= 0 (clipped) for a <= 0
  return q > 0 ? q : I(0);
}
template <typename I>
FCN_HOST_DEVICE I floor_div_end(I a, I b) { return a < 0 ? I(0) : a / b + 1; }
template <typename I>
FCN_HOST_DEVICE I min_of(I a, I b) { return a < b ? a : b; }
template <typename I>
FCN_HOST_DEVICE I max_of(I a, I b) { return a > b ? a : b; }

}  // namespace fcn_kernels
