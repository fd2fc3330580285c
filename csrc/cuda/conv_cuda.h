// Launchers of the CUDA kernels of the conv-like ops (rarefied_conv2d, upsample_skip), whose passes are
// the plane kernel's ForwardPlane / InputGradPlane and weight_grad_kernel.cuh's WeightGradOp of the op's
// index header (csrc/index/<op>.h). Torch-free, so the .cu files compile in seconds; defined in
// conv_kernels.cuh, instantiated for each op in its <op>_kernel.cu; glue in <op>_glue.cpp.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"

namespace fcn_kernels {
namespace cuda {

template <template <typename> class ForwardPlane, template <typename> class InputGradPlane, typename WeightGradOp>
struct ConvLaunchers {
  using Geometry = decltype(WeightGradOp::g);

  // Contiguous NCHW tensors; bias and skip may be null (an op without a skip ignores it); every launch
  // goes on `stream`; the result is the launch's error state.
  static cudaError_t forward(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias,
                             const void* skip, void* out, cudaStream_t stream);
  static cudaError_t backward_input(DType dtype, const Geometry& g, const void* grad_out, const void* w,
                                    void* grad_x, cudaStream_t stream);
  // The weight gradient needs backward_weight_workspace(g) accumulators (float; double for double
  // tensors) at `workspace` (may be null when that is 0).
  static int64_t backward_weight_workspace(const Geometry& g);
  static cudaError_t backward_weight(DType dtype, const Geometry& g, const void* grad_out, const void* x,
                                     void* grad_w, void* workspace, cudaStream_t stream);
};

}  // namespace cuda
}  // namespace fcn_kernels
