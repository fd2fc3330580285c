// The host layer of interpolate_argmax (docs/DESIGN.md §2.6), for the glue of every backend
// (csrc/cpu/interpolate_argmax_kernel.cpp): the checked call, its input and its labels by name.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include "interpolate.h"

namespace fcn_kernels {
namespace interpolate_argmax {

using interpolate::Geometry;

constexpr const char* kOp = "interpolate_argmax";

struct Call {
  Geometry g;
  at::Tensor x;       // contiguous
  at::Tensor labels;  // (N, Ho, Wo) int64
  bool done() const { return labels.numel() == 0; }
};

inline Call prepare(const at::Tensor& x, at::IntArrayRef size, bool align_corners, c10::DeviceType type) {
  upsample_skip::check_device_type(x, type, kOp, "x");
  TORCH_CHECK(size.size() == 2, kOp, ": size must have 2 elements, got ", size);
  Call c;
  c.g = interpolate::make_geometry(kOp, x, size[0], size[1], align_corners);
  TORCH_CHECK(c.g.C <= INT32_MAX, kOp, ": ", c.g.C, " classes exceed 2**31 - 1");
  c.x = x.contiguous();
  c.labels = at::empty({c.g.N, c.g.Ho, c.g.Wo}, x.options().dtype(at::kLong));
  return c;
}

}  // namespace interpolate_argmax
}  // namespace fcn_kernels
