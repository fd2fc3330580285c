// The CUDA weight gradient of both ops: the split reduction of csrc/index/weight_grad.h. A block per
// (weight pair, chunk of term rows) sums every tap of the pair over its chunk, threads taking a tap
// each and lanes of threads sharing a tap (fixed-order sums in shared memory); with more than one
// chunk the per-chunk sums go to a workspace that a second kernel adds up in chunk order. No atomics.
#pragma once

#include "../index/weight_grad.h"
#include "common.cuh"

namespace fcn_kernels {
namespace cuda {

// x and go: loaders of flat offsets (Load<T> over the tensors, or a functor that computes grad_out's elements).
template <typename T, typename Op, typename LoadX, typename LoadG>
__global__ void __launch_bounds__(kThreads, 1)
weight_grad_kernel(Op op, int64_t splits, LoadX x, LoadG go, T* __restrict__ gw,
                   typename AccOf<T>::type* __restrict__ ws) {
  using A = typename AccOf<T>::type;
  __shared__ A partial[kThreads];
  const int64_t taps = op.taps(), pairs = op.pairs();
  const int64_t tt = tap_threads(taps, kThreads), lanes = tap_lanes(taps, kThreads);
  const int64_t tl = threadIdx.x % tt, lane = threadIdx.x / tt;
  for (int64_t blk = blockIdx.x; blk < pairs * splits; blk += gridDim.x) {
    const int64_t pair = blk / splits, s = blk % splits;
    const Range rows = split_rows(op.images() * op.term_rows(), splits, s);
    for (int64_t t0 = 0; t0 < taps; t0 += tt) {
      const int64_t tap = t0 + tl;
      partial[threadIdx.x] = (lane < lanes && tap < taps)
          ? weight_grad_partial<A>(op, x, go, pair, tap, lane, lanes, rows) : A(0);
      __syncthreads();
      if (threadIdx.x < tt && tap < taps) {
        A sum = A(0);
        for (int64_t l = 0; l < lanes; ++l) sum += partial[l * tt + threadIdx.x];
        if (ws) ws[(s * pairs + pair) * taps + tap] = sum;
        else assign(gw[pair * taps + tap], sum);
      }
      __syncthreads();  // partial[] is refilled by the next tap group
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
weight_grad_finish_kernel(int64_t elems, int64_t splits, const typename AccOf<T>::type* __restrict__ ws,
                          T* __restrict__ gw) {
  using A = typename AccOf<T>::type;
  for (int64_t e = blockIdx.x * int64_t(kThreads) + threadIdx.x; e < elems; e += int64_t(gridDim.x) * kThreads) {
    A sum = A(0);
    for (int64_t s = 0; s < splits; ++s) sum += ws[s * elems + e];
    assign(gw[e], sum);
  }
}

// Chunks per pair: enough blocks to fill the GPU (4 per SM), at least 8 term rows a chunk.
inline int64_t weight_grad_splits(int64_t pairs, int64_t rows) {
  int device = 0, sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t want = (4 * int64_t(sms) + pairs - 1) / pairs;
  return imax(1, imin(imin(want, rows / 8), 1024));
}

template <typename Op>
int64_t weight_grad_workspace(const Op& op) {
  const int64_t splits = weight_grad_splits(op.pairs(), op.images() * op.term_rows());
  return splits > 1 ? splits * op.pairs() * op.taps() : 0;
}

// `ws` holds weight_grad_workspace(op) accumulators (float, or double for double).
template <typename T, typename Op, typename LoadX, typename LoadG>
cudaError_t launch_weight_grad_loaded(const Op& op, LoadX x, LoadG go, T* gw, typename AccOf<T>::type* ws,
                                      cudaStream_t stream) {
  const int64_t splits = weight_grad_splits(op.pairs(), op.images() * op.term_rows());
  const int64_t blocks = imin(op.pairs() * splits, kMaxBlocks);
  if (blocks == 0) return cudaSuccess;
  if (splits > 1 && ws == nullptr) return cudaErrorInvalidValue;
  weight_grad_kernel<T><<<unsigned(blocks), kThreads, 0, stream>>>(op, splits, x, go, gw, splits > 1 ? ws : nullptr);
  if (splits > 1) {
    const int64_t elems = op.pairs() * op.taps();
    weight_grad_finish_kernel<T><<<unsigned(imin((elems + kThreads - 1) / kThreads, kMaxBlocks)), kThreads, 0,
                                   stream>>>(elems, splits, ws, gw);
  }
  return cudaGetLastError();
}

template <typename T, typename Op>
cudaError_t launch_weight_grad_as(const Op& op, const T* x, const T* go, T* gw, typename AccOf<T>::type* ws,
                                  cudaStream_t stream) {
  return launch_weight_grad_loaded(op, Load<T>{x}, Load<T>{go}, gw, ws, stream);
}

// The same for untyped tensors of `dtype`.
template <typename Op>
cudaError_t launch_weight_grad(DType dtype, const Op& op, const void* x, const void* go, void* gw, void* ws,
                               cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_weight_grad_as(op, static_cast<const T*>(x), static_cast<const T*>(go), static_cast<T*>(gw),
                                 static_cast<typename AccOf<T>::type*>(ws), stream);
  });
}

}  // namespace cuda
}  // namespace fcn_kernels
