// Host side of the bilinear ops' CUDA glue: the taps of a call (csrc/host/interpolate.h, PyTorch's rule, in
// the op-math type of x's dtype) copied to x's device, in the layout interpolate_scores.cuh reads.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstring>

#include "../host/interpolate.h"

namespace fcn_kernels {
namespace interpolate {

struct DeviceTaps {
  at::Tensor index, lambda;  // 2 (Ho + Wo) each: rows' i0, i1, columns' i0, i1 (l0, l1 likewise)
};

template <typename A>
DeviceTaps device_taps_as(const Geometry& g, const at::Tensor& x, c10::ScalarType type) {
  const PlaneTaps<A> t(g);
  const int64_t n = 2 * (g.Ho + g.Wo);
  at::Tensor index = at::empty({n}, at::kLong), lambda = at::empty({n}, at::TensorOptions().dtype(type));
  int64_t* i = index.mutable_data_ptr<int64_t>();
  A* l = lambda.mutable_data_ptr<A>();
  for (const AxisTaps<A>* axis : {&t.rows, &t.cols}) {
    const size_t m = axis->i0.size();
    std::memcpy(i, axis->i0.data(), m * sizeof(int64_t));
    std::memcpy(i + m, axis->i1.data(), m * sizeof(int64_t));
    std::memcpy(l, axis->l0.data(), m * sizeof(A));
    std::memcpy(l + m, axis->l1.data(), m * sizeof(A));
    i += 2 * m;
    l += 2 * m;
  }
  return {index.to(x.device()), lambda.to(x.device())};
}

inline DeviceTaps device_taps(const Geometry& g, const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? device_taps_as<double>(g, x, at::kDouble)
                                        : device_taps_as<float>(g, x, at::kFloat);
}

}  // namespace interpolate
}  // namespace fcn_kernels
