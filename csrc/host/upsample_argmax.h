// The host layer of upsample_argmax, for the glue of every backend (csrc/cpu/upsample_argmax_kernel.cpp,
// csrc/cuda/upsample_argmax_glue.cpp): upsample_skip's forward inputs and checks (upsample_skip.h), the
// labels allocated.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

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

inline Forward prepare_forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                               at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset,
                               c10::DeviceType type) {
  upsample_skip::ForwardInputs in = upsample_skip::prepare_forward_inputs(
      kOp, x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset, type);
  // The CPU kernel keeps labels as int32 (the running maxima's width, so that its update vectorizes).
  TORCH_CHECK(in.g.Cout <= INT32_MAX, "upsample_argmax: ", in.g.Cout, " classes exceed 2**31 - 1");
  at::Tensor labels = at::empty({in.g.N, in.g.Ho, in.g.Wo}, x.options().dtype(at::kLong));
  return {std::move(in), std::move(labels)};
}

}  // namespace upsample_argmax
}  // namespace fcn_kernels
