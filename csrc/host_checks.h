// Argument checks shared by every op's host glue (CPU kernel files, CUDA glue). Messages start with
// the op's name, and name the argument and its sizes.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace fcn_kernels {

inline void check_pair(const char* op, at::IntArrayRef v, const char* name, int64_t min_value) {
  TORCH_CHECK(v.size() == 2, op, ": ", name, " must have 2 elements, got ", v);
  TORCH_CHECK(v[0] >= min_value && v[1] >= min_value, op, ": ", name, " must be >= ", min_value, ", got ", v);
}

// t is on x's device with x's dtype.
inline void check_same(const char* op, const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " is on ", t.device(), " but x is on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
              " but x has dtype ", x.scalar_type());
}

}  // namespace fcn_kernels
