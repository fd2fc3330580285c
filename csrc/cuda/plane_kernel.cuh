// The one CUDA kernel of every gather pass (the forwards and input gradients of both ops), in the
// plane formulation of csrc/index/plane.h: a block computes kThreads runs of one output plane, a
// run being V = 16 / sizeof(T) consecutive columns of a row, so each thread's results leave in one
// 16-byte store where the address allows (odd widths fall back to scalar stores). The plane's
// weights are staged in shared memory a slab of channels at a time; a filter too big for the tile
// budget is read in place instead. In-plane offsets are 32-bit when the op's span allows, 64-bit
// otherwise. No atomics: every output is written once by one thread.
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../index/plane.h"
#include "common.cuh"

namespace fcn_kernels {
namespace cuda {

constexpr int64_t kTileBytes = 32 * 1024;  // under the 48 KB that needs no opt-in; leaves room for 6 blocks/SM

// V elements of T in one access, aligned to its size (16 bytes for every V chosen below).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename A>
struct SharedTile {
  const A* p;
  template <typename Idx>
  __device__ __forceinline__ A operator()(Idx k) const { return p[k]; }
};

template <typename T, int V>
__device__ __forceinline__ bool aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % sizeof(Pack<T, V>) == 0;
}

// acc[v] += p[v] for the n (<= V) valid columns.
template <int V, typename T, typename A, typename I>
__device__ __forceinline__ void add_run(const T* __restrict__ p, A (&acc)[V], I n) {
  if (n == V && aligned<T, V>(p)) {
    const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] += to_acc(pk.v[v]);
  } else {
    for (I v = 0; v < n; ++v) acc[v] += to_acc(ldg(p + v));
  }
}

template <int V, typename T, typename A, typename I>
__device__ __forceinline__ void store_run(T* __restrict__ p, const A (&acc)[V], I n) {
  if (n == V && aligned<T, V>(p)) {
    Pack<T, V> pk;
#pragma unroll
    for (int v = 0; v < V; ++v) assign(pk.v[v], acc[v]);
    *reinterpret_cast<Pack<T, V>*>(p) = pk;
  } else {
    for (I v = 0; v < n; ++v) assign(p[v], acc[v]);
  }
}

template <typename T, typename I, int V, bool kShared, typename Op>
__global__ void __launch_bounds__(kThreads, 2)
plane_kernel(Op op, I slab, const T* __restrict__ in, const T* __restrict__ w, const T* __restrict__ bias,
             const T* __restrict__ skip, T* __restrict__ out) {
  using A = typename AccOf<T>::type;
  extern __shared__ __align__(16) unsigned char smem[];
  A* tile = reinterpret_cast<A*>(smem);
  const I taps = op.taps(), reduce = op.reduce(), cols = op.cols();
  const I r = I(blockIdx.x) * kThreads + I(threadIdx.x);
  const bool active = r < run_count<V>(op.rows(), cols);
  I i = 0, j0 = 0;
  if (active) run_start<V>(cols, r, i, j0);
  for (int64_t plane = blockIdx.y; plane < op.planes(); plane += gridDim.y) {
    A acc[V];
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] = A(0);
    const Load<T> lin{in + op.in_offset(plane)};
    const int64_t wbase = op.weight_base(plane);
    if constexpr (kShared) {
      for (I c0 = 0; c0 < reduce; c0 += slab) {
        const I cn = min_of<I>(slab, reduce - c0);
        __syncthreads();  // the previous slab's (or plane's) readers are done with the tile
        for (I k = threadIdx.x; k < cn * taps; k += kThreads)
          tile[k] = to_acc(w[wbase + (c0 + k / taps) * op.weight_stride() + k % taps]);
        __syncthreads();
        if (active) op.template accumulate<V>(lin, SharedTile<A>{tile}, taps, c0, cn, i, j0, acc);
      }
    } else if (active) {
      op.template accumulate<V>(lin, Load<T>{w + wbase}, I(op.weight_stride()), I(0), reduce, i, j0, acc);
    }
    if (!active) continue;
    const I n = min_of<I>(V, cols - j0);
    if (bias) {
      const A b = to_acc(bias[plane % op.out_channels()]);
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] += b;
    }
    if constexpr (Op::kHasSkip) {
      if (skip) add_run<V>(skip + op.skip_offset(plane, i, j0), acc, n);
    }
    store_run<V>(out + plane * op.rows() * cols + i * cols + j0, acc, n);
  }
}

// FCN_KERNELS_CUDA_INDEX64=1 sends every launch down the 64-bit path, so that tests can check it
// without allocating the 8 GB a call needs to outgrow 32-bit offsets.
inline bool force_index64() {
  const char* v = getenv("FCN_KERNELS_CUDA_INDEX64");
  return v && strcmp(v, "1") == 0;
}

// Launches the pass Op (a class template over the index type, built from the call's Geometry).
template <template <typename> class Op, typename T, typename Geometry>
cudaError_t launch_plane_as(const Geometry& g, const T* in, const T* w, const T* bias, const T* skip, T* out,
                            cudaStream_t stream) {
  using A = typename AccOf<T>::type;
  constexpr int V = 16 / sizeof(T);
  const auto wide = Op<int64_t>::make(g);
  const int64_t planes = wide.planes(), runs = run_count<V>(wide.rows(), wide.cols());
  if (planes == 0 || runs == 0) return cudaSuccess;
  const int64_t taps = wide.taps(), tile_cap = kTileBytes / int64_t(sizeof(A));
  const bool shared = taps <= tile_cap;
  const int64_t slab = shared ? imin(wide.reduce(), tile_cap / taps) : wide.reduce();
  const size_t smem = shared ? size_t(slab * taps) * sizeof(A) : 0;
  const int64_t blocks = (runs + kThreads - 1) / kThreads;
  if (blocks > INT32_MAX) return cudaErrorInvalidConfiguration;
  const dim3 grid(unsigned(blocks), unsigned(imin(planes, 65535)));
  if (shared && Op<int64_t>::span(g, V) <= kMaxSpan32 && !force_index64())
    plane_kernel<T, int32_t, V, true><<<grid, kThreads, smem, stream>>>(Op<int32_t>::make(g), int32_t(slab), in, w,
                                                                        bias, skip, out);
  else if (shared)
    plane_kernel<T, int64_t, V, true><<<grid, kThreads, smem, stream>>>(wide, slab, in, w, bias, skip, out);
  else
    plane_kernel<T, int64_t, V, false><<<grid, kThreads, 0, stream>>>(wide, slab, in, w, bias, skip, out);
  return cudaGetLastError();
}

// The same for untyped tensors of `dtype`; bias and skip may be null.
template <template <typename> class Op, typename Geometry>
cudaError_t launch_plane(DType dtype, const Geometry& g, const void* in, const void* w, const void* bias,
                         const void* skip, void* out, cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_plane_as<Op>(g, static_cast<const T*>(in), static_cast<const T*>(w), static_cast<const T*>(bias),
                               static_cast<const T*>(skip), static_cast<T*>(out), stream);
  });
}

}  // namespace cuda
}  // namespace fcn_kernels
