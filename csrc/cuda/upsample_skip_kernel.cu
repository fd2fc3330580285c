// upsample_skip on CUDA: the conv-like ops' launchers (conv_kernels.cuh) over the ForwardPlane,
// InputGradPlane and WeightGradOp of csrc/index/upsample_skip.h.
#include "../index/upsample_skip.h"
#include "conv_kernels.cuh"

namespace fcn_kernels {
template struct cuda::ConvLaunchers<upsample_skip::ForwardPlane, upsample_skip::InputGradPlane,
                                    upsample_skip::WeightGradOp>;
}  // namespace fcn_kernels
