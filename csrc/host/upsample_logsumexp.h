// The host layer of upsample_logsumexp (docs/DESIGN.md §2.5), for the glue of every backend
// (csrc/cpu/upsample_logsumexp_kernel.cpp): argument checks, the geometry, and the prepared call with
// its inputs and results by name. The Python wrapper validates first with friendlier errors; these
// checks keep direct torch.ops calls memory-safe, and check the labels, which Python cannot see
// without a device sync (and torch.compile, without a graph break).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstdint>
#include <optional>

#include "../upsample_skip_host.h"
#include "index/upsample_logsumexp.h"

namespace fcn_kernels {
namespace upsample_logsumexp {

constexpr const char* kOp = "upsample_logsumexp";

// The statistics' dtype: float32, float64 for float64 scores (pixelwise_cross_entropy's log-softmax).
inline at::ScalarType stats_type(at::ScalarType scores) {
  return scores == at::kDouble ? at::kDouble : at::kFloat;
}

// The scores' inputs (upsample_skip's, cropped to the target's size) and the labels, checked and
// contiguous; bias and skip undefined where absent.
struct Scores {
  Geometry g;
  at::Tensor x, weight, bias, skip;
  at::Tensor target;  // (N, Ho, Wo) int64: labels in [0, Cout) or ignore_index
  int64_t ignore_index = 0;
};

// upsample_logsumexp: lse and picked (N, Ho, Wo) in stats_type.
struct Forward : Scores {
  at::Tensor lse, picked;
  bool done() const { return lse.numel() == 0; }
};

// upsample_logsumexp_backward: the gradients of x, weight, bias and skip from those of lse and picked.
// An input whose gradient is not wanted gets an empty (0,) tensor and costs no work.
struct Backward : Scores {
  at::Tensor grad_lse, grad_picked, lse;  // (N, Ho, Wo), stats_type
  bool need_x = false, need_weight = false, need_bias = false, need_skip = false;
  at::Tensor grad_x, grad_weight, grad_bias, grad_skip;
};

// Every label is ignore_index or in [0, classes): ValueError naming the first that is not.
inline void check_labels(const at::Tensor& target, int64_t classes, int64_t ignore_index, const char* op = kOp) {
  const int64_t* y = target.const_data_ptr<int64_t>();
  const int64_t n = target.numel();
  bool bad = false;
  for (int64_t k = 0; k < n; ++k)  // branch-free: vectorizes
    bad |= (y[k] != ignore_index) & (static_cast<uint64_t>(y[k]) >= static_cast<uint64_t>(classes));
  if (!bad) return;
  int64_t k = 0;
  while (y[k] == ignore_index || (y[k] >= 0 && y[k] < classes)) ++k;
  const int64_t hw = target.size(1) * target.size(2);
  TORCH_CHECK_VALUE(false, op, ": target label ", y[k], " at (n, i, j) = (", k / hw, ", ", (k % hw) / target.size(2),
                    ", ", k % target.size(2), ") is outside [0, ", classes, ") and is not ignore_index (",
                    ignore_index, ")");
}

inline Scores prepare_scores(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                             const std::optional<at::Tensor>& skip, const at::Tensor& target, at::IntArrayRef stride,
                             int64_t groups, at::IntArrayRef out_offset, at::IntArrayRef skip_offset,
                             int64_t ignore_index, c10::DeviceType type) {
  upsample_skip::check_device_type(x, type, kOp, "x");
  TORCH_CHECK(target.scalar_type() == at::kLong, kOp, ": target must be int64, got ", target.scalar_type());
  TORCH_CHECK(target.device() == x.device(), kOp, ": target is on ", target.device(), " but x is on ", x.device());
  TORCH_CHECK(target.dim() == 3 && x.dim() == 4 && target.size(0) == x.size(0), kOp,
              ": target must have size (N, Ho, Wo) with N = x.size(0), got target ", target.sizes(), " and x ",
              x.sizes());
  Scores s;
  s.g = upsample_skip::forward_geometry(x, weight, bias, skip, stride, groups, out_offset,
                                        {target.size(1), target.size(2)}, skip_offset);
  s.x = x.contiguous();
  s.weight = weight.contiguous();
  if (bias.has_value()) s.bias = bias->contiguous();
  if (skip.has_value()) s.skip = skip->contiguous();
  s.target = target.contiguous();
  s.ignore_index = ignore_index;
  check_labels(s.target, s.g.Cout, ignore_index);
  return s;
}

inline Forward prepare_forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               const std::optional<at::Tensor>& skip, const at::Tensor& target, at::IntArrayRef stride,
                               int64_t groups, at::IntArrayRef out_offset, at::IntArrayRef skip_offset,
                               int64_t ignore_index, c10::DeviceType type) {
  Forward f;
  static_cast<Scores&>(f) =
      prepare_scores(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index, type);
  const auto options = x.options().dtype(stats_type(x.scalar_type()));
  f.lse = at::empty({f.g.N, f.g.Ho, f.g.Wo}, options);
  f.picked = at::empty({f.g.N, f.g.Ho, f.g.Wo}, options);
  return f;
}

// A per-pixel statistic or its gradient for the backward op `op`: (N, Ho, Wo), the statistics' dtype of x,
// on x's device; contiguous.
inline at::Tensor stats_map(const char* op, const at::Tensor& t, const char* name, int64_t N, int64_t Ho, int64_t Wo,
                            const at::Tensor& x) {
  TORCH_CHECK(t.dim() == 3 && t.size(0) == N && t.size(1) == Ho && t.size(2) == Wo, op, ": ", name,
              " must have size (", N, ", ", Ho, ", ", Wo, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == stats_type(x.scalar_type()), op, ": ", name, " must be ",
              stats_type(x.scalar_type()), " for x of dtype ", x.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " is on ", t.device(), " but x is on ", x.device());
  return t.contiguous();
}

inline Backward prepare_backward(const at::Tensor& grad_lse, const at::Tensor& grad_picked, const at::Tensor& x,
                                 const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                 const std::optional<at::Tensor>& skip, const at::Tensor& target,
                                 const at::Tensor& lse, at::IntArrayRef stride, int64_t groups,
                                 at::IntArrayRef out_offset, at::IntArrayRef skip_offset, int64_t ignore_index,
                                 std::array<bool, 4> output_mask, c10::DeviceType type) {
  Backward b;
  static_cast<Scores&>(b) =
      prepare_scores(x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index, type);
  const auto map = [&](const at::Tensor& t, const char* name) {
    return stats_map("upsample_logsumexp_backward", t, name, b.g.N, b.g.Ho, b.g.Wo, b.x);
  };
  b.grad_lse = map(grad_lse, "grad_lse");
  b.grad_picked = map(grad_picked, "grad_picked");
  b.lse = map(lse, "lse");
  b.need_x = output_mask[0];
  b.need_weight = output_mask[1];
  b.need_bias = output_mask[2] && b.bias.defined();
  b.need_skip = output_mask[3] && b.skip.defined();
  const auto none = [&] { return at::empty({0}, x.options()); };  // one each: outputs must not alias
  // The kernels write every element of grad_x, grad_weight and grad_bias, and grad_skip's window.
  b.grad_x = b.need_x ? at::empty(b.x.sizes(), x.options()) : none();
  b.grad_weight = b.need_weight ? at::empty(b.weight.sizes(), x.options()) : none();
  b.grad_bias = b.need_bias ? at::empty({b.g.Cout}, x.options()) : none();
  b.grad_skip = b.need_skip ? at::zeros(b.skip.sizes(), x.options()) : none();
  return b;
}

}  // namespace upsample_logsumexp
}  // namespace fcn_kernels
