// Launchers of the upsample_skip CUDA kernels. Torch-free, so the .cu file compiles in seconds;
// csrc/cuda/upsample_skip_glue.cpp does the tensor checks, allocation and dtype dispatch.
#pragma once

#include <cuda_runtime.h>

#include "../index/upsample_skip.h"
#include "dtype.h"

namespace fcn_kernels {
namespace upsample_skip {
namespace cuda {

using fcn_kernels::cuda::DType;

// Contiguous NCHW tensors; every launch goes on `stream`; the result is the launch's error state.
cudaError_t launch_forward(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias,
                           const void* skip, void* out, cudaStream_t stream);
cudaError_t launch_backward_input(DType dtype, const Geometry& g, const void* grad_out, const void* w,
                                  void* grad_x, cudaStream_t stream);
// The weight gradient needs backward_weight_workspace(g) accumulators (float; double for double
// tensors) at `workspace` (may be null when that is 0).
int64_t backward_weight_workspace(const Geometry& g);
cudaError_t launch_backward_weight(DType dtype, const Geometry& g, const void* grad_out, const void* x,
                                   void* grad_w, void* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace upsample_skip
}  // namespace fcn_kernels
