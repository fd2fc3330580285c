// The element types the CUDA launchers take; host-safe (included by the g++-compiled glue).
#pragma once

namespace fcn_kernels {
namespace cuda {

enum class DType { kFloat, kDouble, kHalf, kBFloat16 };

}  // namespace cuda
}  // namespace fcn_kernels
