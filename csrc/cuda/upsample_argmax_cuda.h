// Launcher of the upsample_argmax CUDA kernel. Torch-free; csrc/cuda/upsample_argmax_glue.cpp does the
// tensor checks, allocation and dtype dispatch.
#pragma once

#include <cuda_runtime.h>

#include "../index/upsample_skip.h"
#include "dtype.h"

namespace fcn_kernels {
namespace upsample_argmax {
namespace cuda {

using fcn_kernels::cuda::DType;
using upsample_skip::Geometry;

// Contiguous NCHW inputs (bias and skip may be null), int64 labels (N, Ho, Wo) out, on `stream`; the
// result is the launch's error state.
cudaError_t launch(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias, const void* skip,
                   int64_t* labels, cudaStream_t stream);

}  // namespace cuda
}  // namespace upsample_argmax
}  // namespace fcn_kernels
