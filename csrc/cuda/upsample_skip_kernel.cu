// upsample_skip on CUDA: output-stationary gathers, one thread per output element, using the
// per-element functions of csrc/index/upsample_skip.h that the host tests check. No atomics: the
// weight gradient is one block per weight element with a fixed-order tree reduction, so every
// run gives the same bits.
#include "common.cuh"
#include "upsample_skip_cuda.h"

namespace fcn_kernels {
namespace upsample_skip {
namespace cuda {
namespace {

using namespace fcn_kernels::cuda;  // AccOf, Load, store, to_acc, kThreads, blocks_for, with_type

template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
forward_kernel(Geometry g, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
               const T* __restrict__ skip, T* __restrict__ out, int64_t total) {
  using A = typename AccOf<T>::type;
  const Load<T> lx{x}, lw{w};
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = idx % g.Wo, i = (idx / g.Wo) % g.Ho;
    const int64_t co = (idx / (g.Wo * g.Ho)) % g.Cout, n = idx / (g.Wo * g.Ho * g.Cout);
    A v = forward_element<A>(g, lx, lw, n, co, i, j);
    if (bias) v += to_acc(bias[co]);
    if (skip) v += to_acc(skip[g.skip_index(n, co, i, j)]);
    store(out + idx, v);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
backward_input_kernel(Geometry g, const T* __restrict__ go, const T* __restrict__ w, T* __restrict__ gx,
                      int64_t total) {
  using A = typename AccOf<T>::type;
  const Load<T> lg{go}, lw{w};
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = idx % g.W, ih = (idx / g.W) % g.H;
    const int64_t ci = (idx / (g.W * g.H)) % g.Cin, n = idx / (g.W * g.H * g.Cin);
    store(gx + idx, backward_input_element<A>(g, lg, lw, n, ci, ih, iw));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
backward_weight_kernel(Geometry g, const T* __restrict__ x, const T* __restrict__ go, T* __restrict__ gw,
                       int64_t elems) {
  using A = typename AccOf<T>::type;
  __shared__ A partial[kThreads];
  const Load<T> lx{x}, lg{go};
  const int64_t cout_g = g.cout_per_group();
  for (int64_t e = blockIdx.x; e < elems; e += gridDim.x) {
    const int64_t kw = e % g.Kw, kh = (e / g.Kw) % g.Kh;
    const int64_t co_l = (e / (g.Kw * g.Kh)) % cout_g, ci = e / (g.Kw * g.Kh * cout_g);
    const int64_t terms = weight_grad_terms(g, kh, kw);
    A acc = A(0);
    for (int64_t k = threadIdx.x; k < terms; k += kThreads)
      acc += weight_grad_term<A>(g, lx, lg, ci, co_l, kh, kw, k);
    acc = block_sum(acc, partial);
    if (threadIdx.x == 0) store(gw + e, acc);
  }
}

}  // namespace

cudaError_t launch_forward(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias,
                           const void* skip, void* out, cudaStream_t stream) {
  const int64_t total = g.N * g.Cout * g.Ho * g.Wo;
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    forward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        g, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
        static_cast<const T*>(skip), static_cast<T*>(out), total);
    return cudaGetLastError();
  });
}

cudaError_t launch_backward_input(DType dtype, const Geometry& g, const void* grad_out, const void* w,
                                  void* grad_x, cudaStream_t stream) {
  const int64_t total = g.N * g.Cin * g.H * g.W;
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    backward_input_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        g, static_cast<const T*>(grad_out), static_cast<const T*>(w), static_cast<T*>(grad_x), total);
    return cudaGetLastError();
  });
}

cudaError_t launch_backward_weight(DType dtype, const Geometry& g, const void* grad_out, const void* x,
                                   void* grad_w, cudaStream_t stream) {
  const int64_t elems = g.Cin * g.cout_per_group() * g.Kh * g.Kw;
  const int blocks = static_cast<int>(elems < kMaxBlocks ? elems : kMaxBlocks);
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    backward_weight_kernel<T><<<blocks, kThreads, 0, stream>>>(
        g, static_cast<const T*>(x), static_cast<const T*>(grad_out), static_cast<T*>(grad_w), elems);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace upsample_skip
}  // namespace fcn_kernels
