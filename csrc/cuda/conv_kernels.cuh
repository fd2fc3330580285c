// ConvLaunchers' definitions (conv_cuda.h): forward and input gradient are output-stationary gathers,
// the plane kernel (plane_kernel.cuh) running the op's ForwardPlane / InputGradPlane that the host tests
// replay; the weight gradient is the split reduction of weight_grad_kernel.cuh over its WeightGradOp.
// No atomics: every run gives the same bits.
#pragma once

#include "conv_cuda.h"
#include "plane_kernel.cuh"
#include "weight_grad_kernel.cuh"

namespace fcn_kernels {
namespace cuda {

template <template <typename> class F, template <typename> class B, typename W>
cudaError_t ConvLaunchers<F, B, W>::forward(DType dtype, const Geometry& g, const void* x, const void* w,
                                            const void* bias, const void* skip, void* out, cudaStream_t stream) {
  return launch_plane<F>(dtype, g, x, w, bias, skip, out, stream);
}

template <template <typename> class F, template <typename> class B, typename W>
cudaError_t ConvLaunchers<F, B, W>::backward_input(DType dtype, const Geometry& g, const void* grad_out,
                                                   const void* w, void* grad_x, cudaStream_t stream) {
  return launch_plane<B>(dtype, g, grad_out, w, nullptr, nullptr, grad_x, stream);
}

template <template <typename> class F, template <typename> class B, typename W>
int64_t ConvLaunchers<F, B, W>::backward_weight_workspace(const Geometry& g) {
  return weight_grad_workspace(W{g});
}

template <template <typename> class F, template <typename> class B, typename W>
cudaError_t ConvLaunchers<F, B, W>::backward_weight(DType dtype, const Geometry& g, const void* grad_out,
                                                    const void* x, void* grad_w, void* workspace,
                                                    cudaStream_t stream) {
  return launch_weight_grad(dtype, W{g}, x, grad_out, grad_w, workspace, stream);
}

}  // namespace cuda
}  // namespace fcn_kernels
