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

}  // namespace fcn_kernels
