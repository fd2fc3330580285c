// Launcher of the interpolate_argmax CUDA kernel (torch-free; glue in interpolate_argmax_glue.cpp).
#pragma once

#include <cuda_runtime.h>

#include "../index/interpolate.h"
#include "dtype.h"

namespace fcn_kernels {
namespace interpolate_argmax {
namespace cuda {

using fcn_kernels::cuda::DType;
using interpolate::Geometry;

// x contiguous NCHW, the taps as interpolate_scores.cuh reads them, int64 labels (N, Ho, Wo) out.
cudaError_t launch(DType dtype, const Geometry& g, const void* x, const int64_t* tap_index, const void* tap_lambda,
                   int64_t* labels, cudaStream_t stream);

}  // namespace cuda
}  // namespace interpolate_argmax
}  // namespace fcn_kernels
