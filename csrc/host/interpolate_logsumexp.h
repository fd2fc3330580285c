// The host layer of interpolate_logsumexp (docs/DESIGN.md §2.6), for every backend
// (csrc/cpu/interpolate_logsumexp_kernel.cpp): the bilinear geometry (interpolate.h) with the target's size
// as the output's, the labels' check (upsample_logsumexp.h's), the prepared calls with their inputs and
// results by name, and the ops' entry points around a backend's kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <utility>

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

// interpolate_logsumexp: lse and picked (N, Ho, Wo) in stats_type, allocated, not yet written.
struct Forward : Scores {
  at::Tensor lse, picked;
  bool done() const { return lse.numel() == 0; }
};

// interpolate_logsumexp_backward: grad_x from the gradients of lse and picked; zeros with no pixel.
struct Backward : Scores {
  at::Tensor grad_lse, grad_picked, lse;  // (N, Ho, Wo), stats_type
  at::Tensor grad_x;
  bool done() const { return grad_x.numel() == 0; }
};

inline Scores prepare_scores(const char* op, const at::Tensor& x, const at::Tensor& target, bool align_corners,
                             int64_t ignore_index, c10::DeviceType type) {
  upsample_logsumexp::check_target(op, target, x);
  Scores s{interpolate::make_geometry(op, x, target.size(1), target.size(2), align_corners, type), x.contiguous(),
           target.contiguous(), ignore_index};
  upsample_logsumexp::check_labels(op, s.target, s.g.C, ignore_index);
  return s;
}

// The ops' entry points (csrc/register.cpp) around a backend's Kernels::forward(p) and backward(p).
template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& target, bool align_corners,
                                           int64_t ignore_index) {
  return upsample_logsumexp::forward_results<Kernels, Forward>(
      prepare_scores(kOp, x, target, align_corners, ignore_index, Kernels::kDevice));
}

template <typename Kernels>
at::Tensor backward(const at::Tensor& grad_lse, const at::Tensor& grad_picked, const at::Tensor& x,
                    const at::Tensor& target, const at::Tensor& lse, bool align_corners, int64_t ignore_index) {
  constexpr const char* op = "interpolate_logsumexp_backward";
  Backward p;
  static_cast<Scores&>(p) = prepare_scores(op, x, target, align_corners, ignore_index, Kernels::kDevice);
  upsample_logsumexp::take_stats(op, p, grad_lse, grad_picked, lse);
  p.grad_x = at::empty(p.x.sizes(), x.options());  // every element written
  return backward_with<Kernels>(p).grad_x;
}

template <typename Kernels>
void register_kernels(torch::Library& m) {
  m.impl("interpolate_logsumexp", &forward<Kernels>);
  m.impl("interpolate_logsumexp_backward", &backward<Kernels>);
}

}  // namespace interpolate_logsumexp
}  // namespace fcn_kernels
