// Launchers of the interpolate_logsumexp CUDA kernels (torch-free; glue in interpolate_logsumexp_glue.cpp).
#pragma once

#include <cuda_runtime.h>

#include "../index/interpolate.h"
#include "dtype.h"

namespace fcn_kernels {
namespace interpolate_logsumexp {
namespace cuda {

using fcn_kernels::cuda::DType;
using interpolate::Geometry;

// x contiguous NCHW; the taps as interpolate_scores.cuh reads them (interpolate_taps.h uploads them); the
// labels (N, Ho, Wo).
struct Scores {
  const void* x;
  const int64_t* tap_index;
  const void* tap_lambda;
  const int64_t* target;
  int64_t ignore_index;
};

// lse and picked (N, Ho, Wo): float, double for double x. On `stream`; the launch's error state.
cudaError_t launch_forward(DType dtype, const Geometry& g, const Scores& s, void* lse, void* picked,
                           cudaStream_t stream);
// grad_x (x's size) from lse and the gradients of lse and picked, (N, Ho, Wo) in the statistics' dtype.
cudaError_t launch_backward(DType dtype, const Geometry& g, const Scores& s, const void* lse, const void* grad_lse,
                            const void* grad_picked, void* grad_x, cudaStream_t stream);

}  // namespace cuda
}  // namespace interpolate_logsumexp
}  // namespace fcn_kernels
