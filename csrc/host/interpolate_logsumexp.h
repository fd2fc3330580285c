// The host layer of interpolate_logsumexp (docs/DESIGN.md §2.6), for the glue of every backend
// (csrc/cpu/interpolate_logsumexp_kernel.cpp): the checked call with its inputs and results by name. As
// upsample_logsumexp's (csrc/host/upsample_logsumexp.h), whose label check and statistics' dtype it shares.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include "interpolate.h"
#include "upsample_logsumexp.h"

namespace fcn_kernels {
namespace interpolate_logsumexp {

using interpolate::Geometry;
using upsample_logsumexp::stats_type;

constexpr const char* kOp = "interpolate_logsumexp";

// The scores' input and the labels, checked and contiguous.
struct Scores {
  Geometry g;
  at::Tensor x;
  at::Tensor target;  // (N, Ho, Wo) int64: labels in [0, C) or ignore_index
  int64_t ignore_index = 0;
};

// interpolate_logsumexp: lse and picked (N, Ho, Wo) in stats_type.
struct Forward : Scores {
  at::Tensor lse, picked;
  bool done() const { return lse.numel() == 0; }
};

// interpolate_logsumexp_backward: grad_x from the gradients of lse and picked.
struct Backward : Scores {
  at::Tensor grad_lse, grad_picked, lse;  // (N, Ho, Wo), stats_type
  at::Tensor grad_x;
};

inline Scores prepare_scores(const at::Tensor& x, const at::Tensor& target, bool align_corners, int64_t ignore_index,
                             c10::DeviceType type) {
  upsample_skip::check_device_type(x, type, kOp, "x");
  TORCH_CHECK(target.scalar_type() == at::kLong, kOp, ": target must be int64, got ", target.scalar_type());
  TORCH_CHECK(target.device() == x.device(), kOp, ": target is on ", target.device(), " but x is on ", x.device());
  TORCH_CHECK(target.dim() == 3 && x.dim() == 4 && target.size(0) == x.size(0), kOp,
              ": target must have size (N, Ho, Wo) with N = x.size(0), got target ", target.sizes(), " and x ",
              x.sizes());
  Scores s;
  s.g = interpolate::make_geometry(kOp, x, target.size(1), target.size(2), align_corners);
  s.x = x.contiguous();
  s.target = target.contiguous();
  s.ignore_index = ignore_index;
  upsample_logsumexp::check_labels(s.target, s.g.C, ignore_index, kOp);
  return s;
}

inline Forward prepare_forward(const at::Tensor& x, const at::Tensor& target, bool align_corners, int64_t ignore_index,
                               c10::DeviceType type) {
  Forward f;
  static_cast<Scores&>(f) = prepare_scores(x, target, align_corners, ignore_index, type);
  const auto options = x.options().dtype(stats_type(x.scalar_type()));
  f.lse = at::empty({f.g.N, f.g.Ho, f.g.Wo}, options);
  f.picked = at::empty({f.g.N, f.g.Ho, f.g.Wo}, options);
  return f;
}

inline Backward prepare_backward(const at::Tensor& grad_lse, const at::Tensor& grad_picked, const at::Tensor& x,
                                 const at::Tensor& target, const at::Tensor& lse, bool align_corners,
                                 int64_t ignore_index, c10::DeviceType type) {
  Backward b;
  static_cast<Scores&>(b) = prepare_scores(x, target, align_corners, ignore_index, type);
  const auto map = [&](const at::Tensor& t, const char* name) {
    return upsample_logsumexp::stats_map("interpolate_logsumexp_backward", t, name, b.g.N, b.g.Ho, b.g.Wo, b.x);
  };
  b.grad_lse = map(grad_lse, "grad_lse");
  b.grad_picked = map(grad_picked, "grad_picked");
  b.lse = map(lse, "lse");
  b.grad_x = at::empty(b.x.sizes(), x.options());  // every element written
  return b;
}

}  // namespace interpolate_logsumexp
}  // namespace fcn_kernels
