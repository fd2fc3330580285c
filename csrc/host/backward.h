// The backward passes' prepared calls, alike for every op: grad_x from grad_out and weight, grad_w
// from grad_out and x. Each op's host header (csrc/host/<op>.h) checks the arguments, computes its
// Geometry and builds these.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include "checks.h"

namespace fcn_kernels {
namespace host {

// grad_x (N, Cin, H, W), allocated, not yet written.
template <typename Geometry>
struct BackwardInput {
  Geometry g;
  at::Tensor grad_out, weight, grad_x;
  bool done() const { return grad_x.numel() == 0; }  // nothing left for a kernel to write
};

// grad_w (the weight's size), allocated, not yet written; zeros, already final, for a batch of no images.
template <typename Geometry>
struct BackwardWeight {
  Geometry g;
  at::Tensor grad_out, x, grad_w;
  bool done() const { return g.N == 0 || grad_w.numel() == 0; }
};

// Built after the op's checks, in the layout its kernels read (checks.h).
template <typename Geometry>
BackwardInput<Geometry> backward_input(const Geometry& g, const at::Tensor& grad_out, const at::Tensor& weight,
                                       at::IntArrayRef input_size, Layout layout) {
  return {g, laid_out(grad_out, layout), laid_out(weight, layout), at::empty(input_size, grad_out.options())};
}

template <typename Geometry>
BackwardWeight<Geometry> backward_weight(const Geometry& g, const at::Tensor& grad_out, const at::Tensor& x,
                                         at::IntArrayRef weight_size, Layout layout) {
  if (g.N == 0) return {g, grad_out, x, at::zeros(weight_size, grad_out.options())};
  return {g, laid_out(grad_out, layout), laid_out(x, layout), at::empty(weight_size, grad_out.options())};
}

// The two backward ops of an op, one entry point each (csrc/register.cpp): kInput gives grad_x from
// grad_out and `other`, the weight (`size`: x's); kWeight gives grad_w from grad_out and `other`, x
// (`size`: the weight's).
enum class Grad { kInput, kWeight };

constexpr const char* other_name(Grad grad) { return grad == Grad::kInput ? "weight" : "x"; }

// After the op's own checks: geometry(x_size, w_size) checks grad_out and gives the call's Geometry; then
// Kernels' pass writes the gradient allocated here, unless it has nothing to write.
template <Grad kGrad, typename Kernels, typename MakeGeometry>
at::Tensor run_backward(const at::Tensor& grad_out, const at::Tensor& other, at::IntArrayRef size, Layout layout,
                        MakeGeometry&& geometry) {
  if constexpr (kGrad == Grad::kInput) {
    const auto p = backward_input(geometry(size, other.sizes()), grad_out, other, size, layout);
    if (!p.done()) Kernels::backward_input(p);
    return p.grad_x;
  } else {
    const auto p = backward_weight(geometry(other.sizes(), size), grad_out, other, size, layout);
    if (!p.done()) Kernels::backward_weight(p);
    return p.grad_w;
  }
}

}  // namespace host
}  // namespace fcn_kernels
