// Launchers of the upsample_logsumexp CUDA kernels (torch-free; glue in upsample_logsumexp_glue.cpp).
#pragma once

#include <cuda_runtime.h>

#include "../index/upsample_skip.h"
#include "dtype.h"

namespace fcn_kernels {
namespace upsample_logsumexp {
namespace cuda {

using fcn_kernels::cuda::DType;
using upsample_skip::Geometry;

// upsample_skip's operands (contiguous NCHW; bias and skip may be null) and the labels (N, Ho, Wo).
struct Scores {
  const void *x, *weight, *bias, *skip;
  const int64_t* target;
  int64_t ignore_index;
};

// lse and picked (N, Ho, Wo): float, double for double scores. On `stream`; the launch's error state.
cudaError_t launch_forward(DType dtype, const Geometry& g, const Scores& s, void* lse, void* picked,
                           cudaStream_t stream);

// The statistics' (lse, from the forward) and their gradients, all (N, Ho, Wo) in the statistics' dtype;
// the gradients wanted (the others null); grad_skip already zero outside the window. The weight and bias
// gradients need backward_workspace(g) accumulators (the statistics' dtype) at `workspace`.
struct Backward {
  const void *lse, *grad_lse, *grad_picked;
  void *grad_x, *grad_weight, *grad_bias, *grad_skip, *workspace;
};

int64_t backward_workspace(const Geometry& g);
cudaError_t launch_backward(DType dtype, const Geometry& g, const Scores& s, const Backward& b, cudaStream_t stream);

}  // namespace cuda
}  // namespace upsample_logsumexp
}  // namespace fcn_kernels
