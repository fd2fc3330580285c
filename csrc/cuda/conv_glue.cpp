// CUDA glue of the conv-like ops, rarefied_conv2d and upsample_skip: their torch-free launchers
// (conv_cuda.h, instantiated in <op>_kernel.cu) behind the ops' entry points (csrc/host/<op>.h: checks,
// contiguous inputs, the result allocated), on the current stream (glue_helpers.h's ConvKernels).
#include <torch/library.h>

#include "../host/rarefied_conv2d.h"
#include "../host/upsample_skip.h"
#include "conv_cuda.h"
#include "glue_helpers.h"

namespace fcn_kernels {
namespace {

namespace r = rarefied_conv2d;
namespace u = upsample_skip;
using RarefiedKernels =
    cuda::ConvKernels<cuda::ConvLaunchers<r::ForwardPlane, r::InputGradPlane, r::WeightGradOp>, r::kOp>;
using UpsampleSkipKernels =
    cuda::ConvKernels<cuda::ConvLaunchers<u::ForwardPlane, u::InputGradPlane, u::WeightGradOp>, u::kOp>;

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) {
  r::register_kernels<RarefiedKernels>(m);
  u::register_kernels<UpsampleSkipKernels>(m);
}

}  // namespace fcn_kernels
