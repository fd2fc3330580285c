// The host layer of upsample_logsumexp (docs/DESIGN.md §2.5), for every backend
// (csrc/cpu/upsample_logsumexp_kernel.cpp): upsample_skip's forward inputs and checks (upsample_skip.h)
// with the target's size as the crop's, the labels' check, the prepared calls with their inputs and
// results by name, and the ops' entry points around a backend's kernels. The Python wrapper validates
// first with friendlier errors; these checks keep direct torch.ops calls memory-safe, and check the
// labels, which Python cannot read without a device sync (nor torch.compile without a graph break).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>

#include "../index/upsample_logsumexp.h"
#include "upsample_skip.h"

namespace fcn_kernels {
namespace upsample_logsumexp {

constexpr const char* kOp = "upsample_logsumexp";

// The statistics' dtype: float32, float64 for float64 scores (pixelwise_cross_entropy's log-softmax).
inline at::ScalarType stats_type(at::ScalarType scores) {
  return scores == at::kDouble ? at::kDouble : at::kFloat;
}

// The scores' inputs (upsample_skip's, cropped to the target's size) and the labels, checked and contiguous.
struct Scores : upsample_skip::ForwardInputs {
  at::Tensor target;  // (N, Ho, Wo) int64: labels in [0, Cout) or ignore_index
  int64_t ignore_index = 0;
};

// upsample_logsumexp: lse and picked (N, Ho, Wo) in stats_type, allocated, not yet written.
struct Forward : Scores {
  at::Tensor lse, picked;
  bool done() const { return lse.numel() == 0; }  // nothing left for a kernel to write
};

// upsample_logsumexp_backward: the gradients of x, weight, bias and skip from those of lse and picked. One
// not wanted is an empty (0,) tensor and costs no work; grad_skip is zeros outside the window.
struct Backward : Scores {
  at::Tensor grad_lse, grad_picked, lse;  // (N, Ho, Wo), stats_type
  bool need_x = false, need_weight = false, need_bias = false, need_skip = false;
  at::Tensor grad_x, grad_weight, grad_bias, grad_skip;
  bool done() const { return g.N * g.Ho * g.Wo == 0 || !(need_x || need_weight || need_bias || need_skip); }
};

// The ValueError of a bad label y at flat index k of target (N, Ho, Wo).
[[noreturn]] inline void bad_label(const char* op, const at::Tensor& target, int64_t k, int64_t y, int64_t classes,
                                   int64_t ignore_index) {
  const int64_t hw = target.size(1) * target.size(2);
  TORCH_CHECK_VALUE(false, op, ": target label ", y, " at (n, i, j) = (", k / hw, ", ", (k % hw) / target.size(2),
                    ", ", k % target.size(2), ") is outside [0, ", classes, ") and is not ignore_index (",
                    ignore_index, ")");
}

// The same check of labels in device memory, with ATen ops on their device: one sync for labels in range.
inline void check_labels_on_device(const char* op, const at::Tensor& target, int64_t classes, int64_t ignore_index) {
  const at::Tensor bad = target.ne(ignore_index).logical_and_(target.lt(0).logical_or_(target.ge(classes))).flatten();
  if (!bad.any().item<bool>()) return;
  const int64_t k = bad.nonzero().select(1, 0).min().item<int64_t>();
  bad_label(op, target, k, target.flatten()[k].item<int64_t>(), classes, ignore_index);
}

// Every label is ignore_index or in [0, classes): ValueError naming the first that is not.
inline void check_labels(const char* op, const at::Tensor& target, int64_t classes, int64_t ignore_index) {
  if (!target.is_cpu()) return check_labels_on_device(op, target, classes, ignore_index);
  const int64_t* y = target.const_data_ptr<int64_t>();
  const int64_t n = target.numel();
  bool bad = false;
  for (int64_t k = 0; k < n; ++k)  // branch-free: vectorizes
    bad |= (y[k] != ignore_index) & (static_cast<uint64_t>(y[k]) >= static_cast<uint64_t>(classes));
  if (!bad) return;
  int64_t k = 0;
  while (y[k] == ignore_index || (y[k] >= 0 && y[k] < classes)) ++k;
  bad_label(op, target, k, y[k], classes, ignore_index);
}

// target is an int64 (N, Ho, Wo) tensor on x's device, N = x's batch.
inline void check_target(const char* op, const at::Tensor& target, const at::Tensor& x) {
  TORCH_CHECK(target.scalar_type() == at::kLong, op, ": target must be int64, got ", target.scalar_type());
  TORCH_CHECK(target.device() == x.device(), op, ": target is on ", target.device(), " but x is on ", x.device());
  TORCH_CHECK(target.dim() == 3 && x.dim() == 4 && target.size(0) == x.size(0), op,
              ": target must have size (N, Ho, Wo) with N = x.size(0), got target ", target.sizes(), " and x ",
              x.sizes());
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

// The forward's results for the prepared scores s (Forward: the op's, a Scores with lse and picked): lse and
// picked (N, Ho, Wo) in stats_type, written by Kernels::forward.
template <typename Kernels, typename Forward, typename S>
std::tuple<at::Tensor, at::Tensor> forward_results(S s) {
  const auto options = s.x.options().dtype(stats_type(s.x.scalar_type()));
  at::Tensor lse = at::empty({s.g.N, s.g.Ho, s.g.Wo}, options), picked = at::empty({s.g.N, s.g.Ho, s.g.Wo}, options);
  const Forward p{std::move(s), std::move(lse), std::move(picked)};
  forward_with<Kernels>(p);
  return {p.lse, p.picked};
}

// The backward's statistics (grad_lse, grad_picked, the forward's lse), checked against p's pixels (op's).
template <typename Backward>
void take_stats(const char* op, Backward& p, const at::Tensor& grad_lse, const at::Tensor& grad_picked,
                const at::Tensor& lse) {
  p.grad_lse = stats_map(op, grad_lse, "grad_lse", p.g.N, p.g.Ho, p.g.Wo, p.x);
  p.grad_picked = stats_map(op, grad_picked, "grad_picked", p.g.N, p.g.Ho, p.g.Wo, p.x);
  p.lse = stats_map(op, lse, "lse", p.g.N, p.g.Ho, p.g.Wo, p.x);
}

inline Scores prepare_scores(const char* op, const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& skip,
                             const at::Tensor& target, at::IntArrayRef stride, int64_t groups,
                             at::IntArrayRef out_offset, at::IntArrayRef skip_offset, int64_t ignore_index,
                             c10::DeviceType type) {
  check_device_type(op, x, "x", type);
  check_target(op, target, x);
  Scores s{upsample_skip::prepare_forward_inputs(op, x, weight, bias, skip, stride, groups, out_offset,
                                                 {target.size(1), target.size(2)}, skip_offset, type),
           target.contiguous(), ignore_index};
  check_labels(op, s.target, s.g.Cout, ignore_index);
  return s;
}

// The ops' entry points, one per schema (csrc/register.cpp), registered by every backend: the host layer
// checks and prepares the call, then the backend's Kernels::forward(p) (backward(p)) writes its results.
template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias,
                                           const std::optional<at::Tensor>& skip, const at::Tensor& target,
                                           at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset,
                                           at::IntArrayRef skip_offset, int64_t ignore_index) {
  return forward_results<Kernels, Forward>(prepare_scores(kOp, x, weight, bias, skip, target, stride, groups, out_offset,
                                                     skip_offset, ignore_index, Kernels::kDevice));
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_lse, const at::Tensor& grad_picked, const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& skip, const at::Tensor& target,
    const at::Tensor& lse, at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset,
    at::IntArrayRef skip_offset, int64_t ignore_index, std::array<bool, 4> output_mask) {
  constexpr const char* op = "upsample_logsumexp_backward";
  Backward p;
  static_cast<Scores&>(p) = prepare_scores(op, x, weight, bias, skip, target, stride, groups, out_offset,
                                           skip_offset, ignore_index, Kernels::kDevice);
  take_stats(op, p, grad_lse, grad_picked, lse);
  p.need_x = output_mask[0];
  p.need_weight = output_mask[1];
  p.need_bias = output_mask[2] && p.bias.defined();
  p.need_skip = output_mask[3] && p.skip.defined();
  // One each (outputs must not alias); with no pixel every gradient is zero, else the kernels write every
  // element of grad_x, grad_weight and grad_bias, and grad_skip's window.
  const bool empty = p.g.N * p.g.Ho * p.g.Wo == 0;
  const auto result = [&](bool wanted, at::IntArrayRef size, bool zeros) {
    return !wanted ? at::empty({0}, x.options()) : zeros ? at::zeros(size, x.options()) : at::empty(size, x.options());
  };
  p.grad_x = result(p.need_x, p.x.sizes(), empty);
  p.grad_weight = result(p.need_weight, p.weight.sizes(), empty);
  p.grad_bias = result(p.need_bias, {p.g.Cout}, empty);
  p.grad_skip = result(p.need_skip, p.need_skip ? p.skip.sizes() : at::IntArrayRef{}, true);
  backward_with<Kernels>(p);
  return {p.grad_x, p.grad_weight, p.grad_bias, p.grad_skip};
}

// In a backend's TORCH_LIBRARY_IMPL block: its kernels behind the ops' entry points.
template <typename Kernels>
void register_kernels(torch::Library& m) {
  m.impl("upsample_logsumexp", &forward<Kernels>);
  m.impl("upsample_logsumexp_backward", &backward<Kernels>);
}

}  // namespace upsample_logsumexp
}  // namespace fcn_kernels
