// rarefied_conv2d on CUDA: the conv-like ops' launchers (conv_kernels.cuh) over the ForwardPlane,
// InputGradPlane and WeightGradOp of csrc/index/rarefied_conv2d.h.
#include "../index/rarefied_conv2d.h"
#include "conv_kernels.cuh"

namespace fcn_kernels {
template struct cuda::ConvLaunchers<rarefied_conv2d::ForwardPlane, rarefied_conv2d::InputGradPlane,
                                    rarefied_conv2d::WeightGradOp>;
}  // namespace fcn_kernels
