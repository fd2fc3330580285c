// upsample_logsumexp on CUDA (docs/DESIGN.md §2.5). Every score is upsample_skip's as its CUDA forward
// stores it (upsample_argmax::score_at: ForwardPlane's gather, bias, skip, one rounding), recomputed where
// it is needed; nothing of the (N, Cout, Ho, Wo) scores' size is stored, forward or backward.
//   forward      a thread per output pixel (scores.cuh's stats_kernel): the classes' scores in order, their
//                log-sum-exp and the target's score.
//   grad_x       a thread per input element gathers the score gradients of the outputs its taps reach
//                (upsample_skip's input-gradient taps), each recomputed from x: no atomics.
//   grad_weight  upsample_skip's split weight-gradient reduction (weight_grad_kernel.cuh) with the score
//                gradient computed where it reads grad_out; grad_bias the same reduction over ones.
//   grad_skip    a thread per output pixel writes its classes' score gradients.
// Fixed-order sums throughout: a call gives the same bits every time on a given GPU. One block an SM at
// least (__launch_bounds__(kThreads, 1)): the score recomputation needs about 110 registers, which a
// tighter bound would spill.
#include "plane_kernel.cuh"  // force_index64
#include "weight_grad_kernel.cuh"
#include "../index/upsample_argmax.h"
#include "../index/upsample_logsumexp.h"
#include "scores.cuh"
#include "upsample_logsumexp_cuda.h"

namespace fcn_kernels {
namespace upsample_logsumexp {
namespace cuda {
namespace {

using namespace fcn_kernels::cuda;  // ScoreInputs, PixelStats, launch_stats, launch_weight_grad_loaded, ...
using upsample_argmax::score_at;
using upsample_skip::ForwardPlane;

// A call's operands on the device: the scores' inputs and plane op (in-plane offsets of type I).
template <typename T, typename I>
struct Call {
  using A = typename AccOf<T>::type;
  Geometry g;
  ForwardPlane<I> op;
  ScoreInputs<T> in;

  __device__ __forceinline__ A score(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return score_at(op, in, n, c, I(i), I(j));
  }
};

// grad_out of upsample_skip's reductions, computed: the score gradient at a flat (N, Cout, Ho, Wo) offset.
template <typename T, typename I>
struct ScoreGrad {
  Call<T, I> call;
  PixelStats<typename AccOf<T>::type> st;
  __device__ __forceinline__ typename AccOf<T>::type at(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return st.score_grad((n * call.g.Ho + i) * call.g.Wo + j, c, call.score(n, c, i, j));
  }
  __device__ __forceinline__ typename AccOf<T>::type operator()(int64_t k) const {
    const OutCoords o = out_coords(call.g, k);
    return at(o.n, o.c, o.i, o.j);
  }
};

// grad_x[n, ci, ih, iw]: the score gradients of the outputs (ih * sh + kh - oy, iw * sw + kw - ox) of its
// group's classes, through the taps by which the input reaches the crop window, times the weight.
template <typename T, typename I>
__global__ void __launch_bounds__(kThreads, 1)
    input_grad_kernel(ScoreGrad<T, I> sg, const T* __restrict__ w, T* __restrict__ gx) {
  using A = typename AccOf<T>::type;
  const Geometry& g = sg.call.g;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group(), elems = g.N * g.Cin * g.H * g.W;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < elems; e += int64_t(gridDim.x) * kThreads) {
    const int64_t iw = e % g.W, ih = (e / g.W) % g.H, ci = (e / (g.W * g.H)) % g.Cin, n = e / (g.W * g.H * g.Cin);
    const Range khs = upsample_skip::taps_in_window(ih, g.sh, g.Kh, g.oy, g.Ho);
    const Range kws = upsample_skip::taps_in_window(iw, g.sw, g.Kw, g.ox, g.Wo);
    A acc = A(0);
    for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
      const int64_t co = (ci / cin_g) * cout_g + co_l;
      for (int64_t kh = khs.begin; kh < khs.end; ++kh)
        for (int64_t kw = kws.begin; kw < kws.end; ++kw)
          acc += sg.at(n, co, ih * g.sh + kh - g.oy, iw * g.sw + kw - g.ox) *
                 to_acc(ldg(w + g.w_index(ci, co_l, kh, kw)));
    }
    assign(gx[e], acc);
  }
}

// grad_skip's window: every class's score gradient at each output pixel.
template <typename T, typename I>
__global__ void __launch_bounds__(kThreads, 1) skip_grad_kernel(ScoreGrad<T, I> sg, T* __restrict__ gs) {
  const Geometry& g = sg.call.g;
  const int64_t per_image = g.Ho * g.Wo, pixels = g.N * per_image;
  for (int64_t p = int64_t(blockIdx.x) * kThreads + threadIdx.x; p < pixels; p += int64_t(gridDim.x) * kThreads) {
    const int64_t n = p / per_image, i = (p % per_image) / g.Wo, j = p % g.Wo;
    for (int64_t c = 0; c < g.Cout; ++c) assign(gs[g.skip_index(n, c, i, j)], sg.at(n, c, i, j));
  }
}

// fn(Call<T, I>) with I = int32_t where upsample_skip's forward takes its 32-bit path (and
// FCN_KERNELS_CUDA_INDEX64 does not force the 64-bit one), int64_t otherwise.
template <typename T, typename Fn>
cudaError_t with_call(const Geometry& g, const Scores& s, Fn&& fn) {
  const ScoreInputs<T> in = score_inputs(static_cast<const T*>(s.x), static_cast<const T*>(s.weight),
                                         static_cast<const T*>(s.bias), static_cast<const T*>(s.skip));
  if (ForwardPlane<int64_t>::span(g, 1) <= kMaxSpan32 && !force_index64())
    return fn(Call<T, int32_t>{g, ForwardPlane<int32_t>::make(g), in});
  return fn(Call<T, int64_t>{g, ForwardPlane<int64_t>::make(g), in});
}

}  // namespace

cudaError_t launch_forward(DType dtype, const Geometry& g, const Scores& s, void* lse, void* picked,
                           cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return with_call<T>(g, s, [&](auto call) {
      return launch_stats<typename AccOf<T>::type>(call, g.N, g.Cout, g.Ho, g.Wo, s.target, s.ignore_index, lse,
                                                   picked, stream);
    });
  });
}

int64_t backward_workspace(const Geometry& g) {
  return imax(weight_grad_workspace(upsample_skip::WeightGradOp{g}), weight_grad_workspace(BiasGradOp{g}));
}

cudaError_t launch_backward(DType dtype, const Geometry& g, const Scores& s, const Backward& b, cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    using A = typename AccOf<T>::type;
    const PixelStats<A> st{s.target, s.ignore_index, static_cast<const A*>(b.lse),
                           static_cast<const A*>(b.grad_lse), static_cast<const A*>(b.grad_picked)};
    A* ws = static_cast<A*>(b.workspace);
    return with_call<T>(g, s, [&](auto call) {
      const ScoreGrad<T, decltype(call.op.H)> sg{call, st};
      if (b.grad_x)
        input_grad_kernel<<<blocks_for(g.N * g.Cin * g.H * g.W), kThreads, 0, stream>>>(
            sg, static_cast<const T*>(s.weight), static_cast<T*>(b.grad_x));
      if (b.grad_skip)
        skip_grad_kernel<<<blocks_for(g.N * g.Ho * g.Wo), kThreads, 0, stream>>>(sg, static_cast<T*>(b.grad_skip));
      cudaError_t err = cudaGetLastError();
      if (err == cudaSuccess && b.grad_weight)
        err = launch_weight_grad_loaded(upsample_skip::WeightGradOp{g}, Load<T>{static_cast<const T*>(s.x)}, sg,
                                        static_cast<T*>(b.grad_weight), ws, stream);
      if (err == cudaSuccess && b.grad_bias)
        err = launch_weight_grad_loaded(BiasGradOp{g}, Ones<A>{}, sg, static_cast<T*>(b.grad_bias), ws, stream);
      return err;
    });
  });
}

}  // namespace cuda
}  // namespace upsample_logsumexp
}  // namespace fcn_kernels
