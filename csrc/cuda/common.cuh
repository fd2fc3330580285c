// Device-side pieces shared by the kernel files: accumulation types, conversions, a loader for the
// index math of csrc/index/, dtype dispatch. Torch-free.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>

#include "dtype.h"

namespace fcn_kernels {
namespace cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride loops cover the rest

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void assign(float& dst, float v) { dst = v; }
__device__ __forceinline__ void assign(double& dst, double v) { dst = v; }
__device__ __forceinline__ void assign(__half& dst, float v) { dst = __float2half_rn(v); }
__device__ __forceinline__ void assign(__nv_bfloat16& dst, float v) { dst = __float2bfloat16_rn(v); }

// Read-only (non-coherent) global load of one element: every kernel reads its inputs through ldg,
// never __ldg directly. cuda_fp16.hpp and cuda_bf16.hpp (CUDA 13.0) write __ldg of __half and
// __nv_bfloat16 as a non-volatile asm, which the compiler takes for a pure computation and may run
// where the source does not: it hoisted upsample_argmax's bias(0) above its has_bias test, a load
// through the null bias pointer in every 16-bit instantiation (an illegal address on the H200). A
// volatile asm stays under its guard; the float and double __ldg are volatile already.
__device__ __forceinline__ float ldg(const float* p) { return __ldg(p); }
__device__ __forceinline__ double ldg(const double* p) { return __ldg(p); }
__device__ __forceinline__ unsigned short ldg_bits16(const void* p) {
  unsigned short v;
  asm volatile("ld.global.nc.u16 %0, [%1];" : "=h"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ __half ldg(const __half* p) { return __ushort_as_half(ldg_bits16(p)); }
__device__ __forceinline__ __nv_bfloat16 ldg(const __nv_bfloat16* p) { return __ushort_as_bfloat16(ldg_bits16(p)); }

// Loader functors of the shared index math: a flat offset (int32_t or int64_t) to the accumulation type.
template <typename T>
struct Load {
  const T* __restrict__ p;
  template <typename Idx>
  __device__ __forceinline__ typename AccOf<T>::type operator()(Idx k) const { return to_acc(ldg(p + k)); }
};

template <typename Fn>
cudaError_t with_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat: return fn(float{});
    case DType::kDouble: return fn(double{});
    case DType::kHalf: return fn(__half{});
    case DType::kBFloat16: return fn(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace fcn_kernels
