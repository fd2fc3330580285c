// Argument checks and geometry of upsample_skip for the host-side glue of every
// backend (CPU kernel file, CUDA glue). The Python wrapper validates first with
// friendlier errors; these checks keep direct torch.ops calls memory-safe.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include "host_checks.h"

#include <optional>

#include "index/upsample_skip.h"

namespace fcn_kernels {
namespace upsample_skip {

constexpr const char* kOp = "upsample_skip";

// Geometry of the full call; the forward's tensors are validated against it.
inline Geometry make_geometry(at::IntArrayRef x_size, at::IntArrayRef w_size, at::IntArrayRef stride,
                              int64_t groups, at::IntArrayRef out_offset, at::IntArrayRef out_size) {
  TORCH_CHECK(x_size.size() == 4, "upsample_skip: x must be 4-D (N, Cin, H, W), got size ", x_size);
  TORCH_CHECK(w_size.size() == 4, "upsample_skip: weight must be 4-D (Cin, Cout/groups, Kh, Kw), got size ",
              w_size);
  TORCH_CHECK(groups >= 1, "upsample_skip: groups must be >= 1, got ", groups);
  check_pair(kOp, stride, "stride", 1);
  check_pair(kOp, out_offset, "out_offset", 0);
  check_pair(kOp, out_size, "out_size", 0);
  check_numel(kOp, "x", x_size);
  check_numel(kOp, "weight", w_size);
  Geometry g{};
  g.N = x_size[0]; g.Cin = x_size[1]; g.H = x_size[2]; g.W = x_size[3];
  g.groups = groups; g.Kh = w_size[2]; g.Kw = w_size[3];
  g.sh = stride[0]; g.sw = stride[1];
  g.oy = out_offset[0]; g.ox = out_offset[1];
  g.Ho = out_size[0]; g.Wo = out_size[1];
  TORCH_CHECK(w_size[0] == g.Cin, "upsample_skip: weight.size(0) (", w_size[0],
              ") must equal x's channels (", g.Cin, ")");
  TORCH_CHECK(g.Cin % groups == 0, "upsample_skip: x's channels (", g.Cin, ") not divisible by groups (",
              groups, ")");
  TORCH_CHECK(g.H >= 1 && g.W >= 1 && g.Kh >= 1 && g.Kw >= 1 && w_size[1] >= 1,
              "upsample_skip: empty spatial or channel size, x ", x_size, ", weight ", w_size);
  g.Cout = checked_mul(kOp, "out channels (weight.size(1) * groups)", w_size[1], groups);
  const int64_t Hf = checked_add(kOp, "the full output height", checked_mul(kOp, "stride[0] * (H - 1)", g.sh, g.H - 1),
                                 g.Kh);
  const int64_t Wf = checked_add(kOp, "the full output width", checked_mul(kOp, "stride[1] * (W - 1)", g.sw, g.W - 1),
                                 g.Kw);
  checked_mul(kOp, "stride times the full output's extent", std::max(g.sh, g.sw),
              std::max(Hf, Wf) + kRowSlack);
  TORCH_CHECK(g.oy <= Hf && g.Ho <= Hf - g.oy && g.ox <= Wf && g.Wo <= Wf - g.ox, "upsample_skip: crop window out_offset ",
              out_offset, " out_size ", out_size, " exceeds the full output (", Hf, ", ", Wf, ")");
  check_planes(kOp, "x (its planes)", g.cin_per_group(), g.H, g.W);
  check_planes(kOp, "the output (out_size, its planes)", std::max(g.cin_per_group(), g.cout_per_group()), g.Ho, g.Wo);
  check_numel(kOp, "the output (N, out channels, out_size)", {g.N, g.Cout, g.Ho, g.Wo});
  return g;
}

inline Geometry forward_geometry(const at::Tensor& x, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias,
                                 const std::optional<at::Tensor>& skip, at::IntArrayRef stride,
                                 int64_t groups, at::IntArrayRef out_offset, at::IntArrayRef out_size,
                                 at::IntArrayRef skip_offset) {
  Geometry g = make_geometry(x.sizes(), weight.sizes(), stride, groups, out_offset, out_size);
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "upsample_skip: x must be floating point, got ",
              x.scalar_type());
  check_same(kOp, weight, x, "weight");
  if (bias.has_value()) {
    check_same(kOp, *bias, x, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.Cout, "upsample_skip: bias must have size (",
                g.Cout, "), got ", bias->sizes());
  }
  check_pair(kOp, skip_offset, "skip_offset", 0);
  if (skip.has_value()) {
    check_same(kOp, *skip, x, "skip");
    TORCH_CHECK(skip->dim() == 4 && skip->size(0) == g.N && skip->size(1) == g.Cout,
                "upsample_skip: skip must have size (", g.N, ", ", g.Cout, ", Hs, Ws), got ", skip->sizes());
    g.Hs = skip->size(2); g.Ws = skip->size(3);
    g.sy = skip_offset[0]; g.sx = skip_offset[1];
    check_planes(kOp, "skip (its planes)", 1, g.Hs, g.Ws);
    TORCH_CHECK(g.sy <= g.Hs && g.Ho <= g.Hs - g.sy && g.sx <= g.Ws && g.Wo <= g.Ws - g.sx,
                "upsample_skip: skip window skip_offset ",
                skip_offset, " out_size ", out_size, " exceeds skip's size ", skip->sizes());
  }
  return g;
}

// Backward ops get the crop size from grad_out.
inline Geometry backward_geometry(const at::Tensor& grad_out, at::IntArrayRef x_size,
                                  at::IntArrayRef w_size, at::IntArrayRef stride, int64_t groups,
                                  at::IntArrayRef out_offset) {
  TORCH_CHECK(grad_out.dim() == 4, "upsample_skip backward: grad_out must be 4-D, got ", grad_out.sizes());
  Geometry g = make_geometry(x_size, w_size, stride, groups, out_offset,
                             {grad_out.size(2), grad_out.size(3)});
  TORCH_CHECK(grad_out.size(0) == g.N && grad_out.size(1) == g.Cout,
              "upsample_skip backward: grad_out size ", grad_out.sizes(), " does not match (N, Cout) = (",
              g.N, ", ", g.Cout, ")");
  return g;
}

// What every backend's glue does before launching: check, make contiguous, allocate the result.
// `a` and `b` are the kernel's two tensor inputs (x and weight; grad_out and weight; grad_out and x).
struct Prepared {
  Geometry g;
  at::Tensor a, b, bias, skip, out;
};

inline void check_device_type(const at::Tensor& t, c10::DeviceType type, const char* op, const char* name) {
  TORCH_CHECK(t.device().type() == type, op, ": ", name, " must be a ", c10::DeviceTypeName(type, true),
              " tensor for this kernel, got ", t.device());
}

// The forward's inputs, checked and contiguous; `op` (upsample_skip or upsample_argmax) allocates p.out.
inline Prepared prepare_forward_inputs(const at::Tensor& x, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& skip,
                                       at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset,
                                       at::IntArrayRef out_size, at::IntArrayRef skip_offset, c10::DeviceType type,
                                       const char* op) {
  check_device_type(x, type, op, "x");
  Prepared p;
  p.g = forward_geometry(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset);
  p.a = x.contiguous();
  p.b = weight.contiguous();
  if (bias.has_value()) p.bias = bias->contiguous();
  if (skip.has_value()) p.skip = skip->contiguous();
  return p;
}

inline Prepared prepare_forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                                at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset,
                                c10::DeviceType type) {
  Prepared p = prepare_forward_inputs(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset,
                                      type, kOp);
  p.out = at::empty({p.g.N, p.g.Cout, p.g.Ho, p.g.Wo}, x.options());
  return p;
}

// upsample_argmax: the same inputs, int64 labels (N, Ho, Wo) out.
inline Prepared prepare_argmax(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                               at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset,
                               c10::DeviceType type) {
  Prepared p = prepare_forward_inputs(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset,
                                      type, "upsample_argmax");
  TORCH_CHECK(p.g.Cout <= INT32_MAX, "upsample_argmax: ", p.g.Cout, " classes exceed 2**31 - 1");
  p.out = at::empty({p.g.N, p.g.Ho, p.g.Wo}, x.options().dtype(at::kLong));
  return p;
}

// grad_x from (grad_out, weight), or grad_w from (grad_out, x): `other` is weight or x.
inline Prepared prepare_backward(const at::Tensor& grad_out, const at::Tensor& other, bool other_is_weight,
                                 at::IntArrayRef result_size, at::IntArrayRef stride, int64_t groups,
                                 at::IntArrayRef out_offset, c10::DeviceType type) {
  const char* op = other_is_weight ? "upsample_skip_backward_input" : "upsample_skip_backward_weight";
  check_device_type(grad_out, type, op, "grad_out");
  check_same(kOp, other, grad_out, other_is_weight ? "weight" : "x");
  TORCH_CHECK(at::isFloatingType(grad_out.scalar_type()), op, ": grad_out must be floating point, got ",
              grad_out.scalar_type());
  Prepared p;
  p.g = other_is_weight ? backward_geometry(grad_out, result_size, other.sizes(), stride, groups, out_offset)
                        : backward_geometry(grad_out, other.sizes(), result_size, stride, groups, out_offset);
  p.a = grad_out.contiguous();
  p.b = other.contiguous();
  p.out = at::empty(result_size, grad_out.options());
  return p;
}

}  // namespace upsample_skip
}  // namespace fcn_kernels
