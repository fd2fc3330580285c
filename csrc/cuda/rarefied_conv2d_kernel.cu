// rarefied_conv2d on CUDA. Forward and input gradient: output-stationary gathers over the real (not
// zero-inserted) taps, the plane kernel (plane_kernel.cuh) running the ForwardPlane / InputGradPlane
// ops of csrc/index/rarefied_conv2d.h that the host tests replay. Weight gradient: the split reduction
// of weight_grad_kernel.cuh over its WeightGradOp. No atomics: every run gives the same bits.
#include "plane_kernel.cuh"
#include "weight_grad_kernel.cuh"
#include "rarefied_conv2d_cuda.h"

namespace fcn_kernels {
namespace rarefied_conv2d {
namespace cuda {
using namespace fcn_kernels::cuda;  // launch_plane, launch_weight_grad, weight_grad_workspace

cudaError_t launch_forward(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias, void* out,
                           cudaStream_t stream) {
  return launch_plane<ForwardPlane>(dtype, g, x, w, bias, nullptr, out, stream);
}

cudaError_t launch_backward_input(DType dtype, const Geometry& g, const void* grad_out, const void* w,
                                  void* grad_x, cudaStream_t stream) {
  return launch_plane<InputGradPlane>(dtype, g, grad_out, w, nullptr, nullptr, grad_x, stream);
}

int64_t backward_weight_workspace(const Geometry& g) { return weight_grad_workspace(WeightGradOp{g}); }

cudaError_t launch_backward_weight(DType dtype, const Geometry& g, const void* grad_out, const void* x,
                                   void* grad_w, void* workspace, cudaStream_t stream) {
  return launch_weight_grad(dtype, WeightGradOp{g}, x, grad_out, grad_w, workspace, stream);
}

}  // namespace cuda
}  // namespace rarefied_conv2d
}  // namespace fcn_kernels
