// Launchers of the rarefied_conv2d CUDA kernels (torch-free; glue in rarefied_conv2d_glue.cpp).
#pragma once

#include <cuda_runtime.h>

#include "../index/rarefied_conv2d.h"
#include "dtype.h"

namespace fcn_kernels {
namespace rarefied_conv2d {
namespace cuda {

using fcn_kernels::cuda::DType;

// Contiguous NCHW tensors, weight (Cout, Cin / groups, Kh, Kw); launched on `stream`.
cudaError_t launch_forward(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias, void* out,
                           cudaStream_t stream);
cudaError_t launch_backward_input(DType dtype, const Geometry& g, const void* grad_out, const void* w,
                                  void* grad_x, cudaStream_t stream);
// The weight gradient needs backward_weight_workspace(g) accumulators (float; double for double
// tensors) at `workspace` (may be null when that is 0).
int64_t backward_weight_workspace(const Geometry& g);
cudaError_t launch_backward_weight(DType dtype, const Geometry& g, const void* grad_out, const void* x,
                                   void* grad_w, void* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace rarefied_conv2d
}  // namespace fcn_kernels
