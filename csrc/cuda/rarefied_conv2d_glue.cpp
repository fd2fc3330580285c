// CUDA glue of rarefied_conv2d: the torch-free launchers of rarefied_conv2d_kernel.cu behind the op's
// entry points (csrc/host/rarefied_conv2d.h: checks, contiguous inputs, the result allocated), on the
// current stream.
#include <torch/library.h>

#include "../host/rarefied_conv2d.h"
#include "glue_helpers.h"
#include "rarefied_conv2d_cuda.h"

namespace fcn_kernels {
namespace rarefied_conv2d {
namespace {

using fcn_kernels::cuda::DType;
using fcn_kernels::cuda::backward_input_via;
using fcn_kernels::cuda::backward_weight_via;
using fcn_kernels::cuda::launch_like;

struct CudaKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CUDA;
  static constexpr Layout kLayout = Layout::kContiguous;

  static void forward(const Forward& p) {
    launch_like(p.x, kOp, [&](DType dtype, cudaStream_t stream) {
      return cuda::launch_forward(dtype, p.g, p.x.const_data_ptr(), p.weight.const_data_ptr(), data_or_null(p.bias),
                                  p.out.mutable_data_ptr(), stream);
    });
  }

  static void backward_input(const BackwardInput& p) {
    backward_input_via(p, kOp, cuda::launch_backward_input);
  }

  static void backward_weight(const BackwardWeight& p) {
    backward_weight_via(p, kOp, cuda::backward_weight_workspace, cuda::launch_backward_weight);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CUDA, m) { register_kernels<CudaKernels>(m); }

}  // namespace rarefied_conv2d
}  // namespace fcn_kernels
