// The host layer of upsample_argmax, for every backend (csrc/cpu/upsample_argmax_kernel.cpp,
// csrc/cuda/upsample_argmax_glue.cpp): upsample_skip's forward inputs and checks (upsample_skip.h), the
// labels, and the op's entry point around a backend's kernel.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <utility>

#include "upsample_skip.h"

namespace fcn_kernels {
namespace upsample_argmax {

using upsample_skip::Geometry;

constexpr const char* kOp = "upsample_argmax";

// upsample_argmax: labels (N, Ho, Wo), int64.
struct Forward : upsample_skip::ForwardInputs {
  at::Tensor labels;
  bool done() const { return labels.numel() == 0; }  // nothing left for a kernel to write
};

// The op's entry point around a backend's Kernels::forward(p) (as upsample_skip.h's).
template <typename Kernels>
at::Tensor forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                   at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset) {
  upsample_skip::ForwardInputs in = upsample_skip::prepare_forward_inputs(
      kOp, x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset, Kernels::kDevice);
  at::Tensor labels = argmax_labels(kOp, in.g, in.g.Cout, x);
  const Forward p{std::move(in), std::move(labels)};
  return forward_with<Kernels>(p).labels;
}

template <typename Kernels>
void register_kernels(torch::Library& m) {
  m.impl("upsample_argmax", &forward<Kernels>);
}

}  // namespace upsample_argmax
}  // namespace fcn_kernels
