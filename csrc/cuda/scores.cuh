// Device-side pieces of the ops that reduce every class's scores at an output pixel (upsample_argmax,
// upsample_logsumexp, the bilinear ops): the scores rounded to the dtype as the unfused ops store them,
// upsample_skip's operands for upsample_argmax::score_at (csrc/index/upsample_argmax.h), and the fused
// losses' per-pixel statistics (csrc/index/online_lse.h) and score gradient (the CPU kernels'
// csrc/cpu/softmax_rows.h, one pixel at a time).
#pragma once

#include "../index/online_lse.h"
#include "common.cuh"

namespace fcn_kernels {
namespace cuda {

// v rounded to T and back: the score as a tensor of dtype T stores it.
template <typename T>
__device__ __forceinline__ typename AccOf<T>::type rounded(typename AccOf<T>::type v) {
  T t;
  assign(t, v);
  return to_acc(t);
}

// upsample_skip's operands (contiguous NCHW; bias and skip may be null), as score_at reads them.
template <typename T>
struct ScoreInputs {
  using Acc = typename AccOf<T>::type;
  const T* __restrict__ xp;
  const T* __restrict__ wp;
  const T* __restrict__ bp;
  const T* __restrict__ sp;
  bool has_bias, has_skip;
  __device__ __forceinline__ Load<T> x(int64_t base) const { return Load<T>{xp + base}; }
  __device__ __forceinline__ Load<T> w(int64_t base) const { return Load<T>{wp + base}; }
  __device__ __forceinline__ Acc bias(int64_t co) const { return to_acc(ldg(bp + co)); }
  __device__ __forceinline__ Acc skip(int64_t k) const { return to_acc(ldg(sp + k)); }
  __device__ __forceinline__ Acc round(Acc v) const { return rounded<T>(v); }
};

template <typename T>
ScoreInputs<T> score_inputs(const T* x, const T* w, const T* bias, const T* skip) {
  return ScoreInputs<T>{x, w, bias, skip, bias != nullptr, skip != nullptr};
}

// The fused losses' per-pixel statistics (N, Ho, Wo) and their gradients, as the backward reads them.
template <typename A>
struct PixelStats {
  const int64_t* __restrict__ target;
  int64_t ignore_index;
  const A* __restrict__ lse;
  const A* __restrict__ grad_lse;
  const A* __restrict__ grad_picked;

  // The gradient of class c's score v at pixel p: grad_lse * softmax_c + grad_picked * [c == target] (no
  // second term at an ignored pixel: its picked score is the constant 0).
  __device__ __forceinline__ A score_grad(int64_t p, int64_t c, A v) const {
    const int64_t y = target[p];
    A d = ldg(grad_lse + p) * exp_of(v - ldg(lse + p));
    if (c == y && y != ignore_index) d += ldg(grad_picked + p);
    return d;
  }
};

// Blocks of a grid-stride launch over `items`.
inline unsigned blocks_for(int64_t items) { return unsigned(imin((items + kThreads - 1) / kThreads, kMaxBlocks)); }

// The fused losses' forward: a thread per output pixel (n, i, j) of N images of Ho x Wo visits its classes'
// scores in order (s.score(n, c, i, j)): lse, and picked, the target's score (0 where it is ignore_index).
template <typename A, typename Scores>
__global__ void __launch_bounds__(kThreads, 1)
    stats_kernel(Scores s, int64_t N, int64_t classes, int64_t Ho, int64_t Wo, const int64_t* __restrict__ target,
                 int64_t ignore_index, A* __restrict__ lse, A* __restrict__ picked) {
  const int64_t per_image = Ho * Wo, pixels = N * per_image;
  for (int64_t p = int64_t(blockIdx.x) * kThreads + threadIdx.x; p < pixels; p += int64_t(gridDim.x) * kThreads) {
    const int64_t n = p / per_image, i = (p % per_image) / Wo, j = p % Wo, y = target[p];
    OnlineLse<A> acc;
    A pick = A(0);
    for (int64_t c = 0; c < classes; ++c) {
      const A v = s.score(n, c, i, j);
      acc.add(v);
      if (c == y) pick = v;
    }
    lse[p] = acc.value();
    picked[p] = y == ignore_index ? A(0) : pick;
  }
}

template <typename A, typename Scores>
cudaError_t launch_stats(const Scores& s, int64_t N, int64_t classes, int64_t Ho, int64_t Wo, const int64_t* target,
                         int64_t ignore_index, void* lse, void* picked, cudaStream_t stream) {
  const int64_t pixels = N * Ho * Wo;
  if (pixels == 0) return cudaSuccess;
  stats_kernel<A><<<blocks_for(pixels), kThreads, 0, stream>>>(s, N, classes, Ho, Wo, target, ignore_index,
                                                               static_cast<A*>(lse), static_cast<A*>(picked));
  return cudaGetLastError();
}

// A loader of ones: the bias gradient as a weight gradient whose input is 1 everywhere.
template <typename A>
struct Ones {
  template <typename Idx>
  __device__ __forceinline__ A operator()(Idx) const { return A(1); }
};

}  // namespace cuda
}  // namespace fcn_kernels
