// rarefied_conv2d on CUDA. Forward and input gradient: output-stationary gathers over the real (not
// zero-inserted) taps, the plane kernel (plane_kernel.cuh) running the ForwardPlane / InputGradPlane
// ops of csrc/index/rarefied_conv.h that the host tests replay. Weight gradient: the split reduction
// of weight_grad_kernel.cuh over its WeightGradOp. No atomics: every run gives the same bits.
#include "plane_kernel.cuh"
#include "weight_grad_kernel.cuh"
#include "rarefied_conv2d_cuda.h"

namespace fcn_kernels {
namespace rarefied_conv {
namespace cuda {
using namespace fcn_kernels::cuda;  // AccOf, with_type, launch_plane, launch_weight_grad, weight_grad_workspace

cudaError_t launch_forward(DType dtype, const Geometry& g, const void* x, const void* w, const void* bias, void* out,
                           cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_plane<ForwardPlane>(g, static_cast<const T*>(x), static_cast<const T*>(w),
                                      static_cast<const T*>(bias), static_cast<const T*>(nullptr),
                                      static_cast<T*>(out), stream);
  });
}

cudaError_t launch_backward_input(DType dtype, const Geometry& g, const void* grad_out, const void* w,
                                  void* grad_x, cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_plane<InputGradPlane>(g, static_cast<const T*>(grad_out), static_cast<const T*>(w),
                                        static_cast<const T*>(nullptr), static_cast<const T*>(nullptr),
                                        static_cast<T*>(grad_x), stream);
  });
}

int64_t backward_weight_workspace(const Geometry& g) { return weight_grad_workspace(WeightGradOp{g}); }

cudaError_t launch_backward_weight(DType dtype, const Geometry& g, const void* grad_out, const void* x,
                                   void* grad_w, void* workspace, cudaStream_t stream) {
  return with_type(dtype, [&](auto t) {
    using T = decltype(t);
    return launch_weight_grad(WeightGradOp{g}, static_cast<const T*>(x), static_cast<const T*>(grad_out),
                              static_cast<T*>(grad_w), static_cast<typename AccOf<T>::type*>(workspace), stream);
  });
}

}  // namespace cuda
}  // namespace rarefied_conv
}  // namespace fcn_kernels
