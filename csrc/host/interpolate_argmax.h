// The host layer of interpolate_argmax (docs/DESIGN.md §2.6), for every backend
// (csrc/cpu/interpolate_argmax_kernel.cpp): the bilinear geometry (interpolate.h), the labels, and the
// op's entry point around a backend's kernel.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <utility>

#include "interpolate.h"

namespace fcn_kernels {
namespace interpolate_argmax {

using interpolate::Geometry;

constexpr const char* kOp = "interpolate_argmax";

// The input, contiguous, and the labels (N, Ho, Wo) int64, allocated, not yet written.
struct Forward {
  Geometry g;
  at::Tensor x, labels;
  bool done() const { return labels.numel() == 0; }
};

template <typename Kernels>
at::Tensor forward(const at::Tensor& x, at::IntArrayRef size, bool align_corners) {
  TORCH_CHECK(size.size() == 2, kOp, ": size must have 2 elements, got ", size);
  const Geometry g = interpolate::make_geometry(kOp, x, size[0], size[1], align_corners, Kernels::kDevice);
  const Forward p{g, x.contiguous(), argmax_labels(kOp, g, g.C, x)};
  return forward_with<Kernels>(p).labels;
}

template <typename Kernels>
void register_kernels(torch::Library& m) {
  m.impl("interpolate_argmax", &forward<Kernels>);
}

}  // namespace interpolate_argmax
}  // namespace fcn_kernels
