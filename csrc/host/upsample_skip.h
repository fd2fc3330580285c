// The host layer of upsample_skip, for every backend (csrc/cpu/upsample_skip_kernel.cpp,
// csrc/cuda/conv_glue.cpp; upsample_argmax.h builds on its forward): argument checks, the
// geometry, the prepared call, and the op's entry points around a backend's kernels. The Python
// wrapper validates first with friendlier errors; these checks keep direct torch.ops calls memory-safe.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <optional>
#include <utility>

#include "../index/upsample_skip.h"
#include "backward.h"
#include "checks.h"

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

// What a backend's kernels work on (Forward here, upsample_argmax.h's Forward, backward.h's calls): the
// call's geometry, its inputs checked against it and contiguous, and its result allocated (not yet
// written). bias and skip are undefined where absent.
struct ForwardInputs {
  Geometry g;
  at::Tensor x, weight, bias, skip;
};

// upsample_skip: out (N, Cout, Ho, Wo), x's dtype.
struct Forward : ForwardInputs {
  at::Tensor out;
  bool done() const { return out.numel() == 0; }  // nothing left for a kernel to write
};

using BackwardInput = host::BackwardInput<Geometry>;
using BackwardWeight = host::BackwardWeight<Geometry>;

// The forward's inputs, for upsample_skip and upsample_argmax (`op`, which allocates its result).
inline ForwardInputs prepare_forward_inputs(const char* op, const at::Tensor& x, const at::Tensor& weight,
                                            const std::optional<at::Tensor>& bias,
                                            const std::optional<at::Tensor>& skip, at::IntArrayRef stride,
                                            int64_t groups, at::IntArrayRef out_offset, at::IntArrayRef out_size,
                                            at::IntArrayRef skip_offset, c10::DeviceType type) {
  check_device_type(op, x, "x", type);
  const Geometry g = forward_geometry(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset);
  return {g, x.contiguous(), weight.contiguous(), laid_out(bias, Layout::kContiguous),
          laid_out(skip, Layout::kContiguous)};
}

// The backward ops' own checks (`op` names the one called); `other` is weight or x.
inline void check_backward(const char* op, const at::Tensor& grad_out, const at::Tensor& other,
                           const char* other_name, c10::DeviceType type) {
  check_device_type(op, grad_out, "grad_out", type);
  check_same(kOp, other, grad_out, other_name);
  TORCH_CHECK(at::isFloatingType(grad_out.scalar_type()), op, ": grad_out must be floating point, got ",
              grad_out.scalar_type());
}

// The op's entry points, one per schema (csrc/register.cpp), registered by every backend: the host
// layer checks and prepares the call here, then the backend's Kernels::forward(p) (backward_input(p),
// backward_weight(p)) writes its result. Kernels::kDevice is the backend's device type.
template <typename Kernels>
at::Tensor forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                   at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset) {
  ForwardInputs in = prepare_forward_inputs(kOp, x, weight, bias, skip, stride, groups, out_offset, out_size,
                                            skip_offset, Kernels::kDevice);
  at::Tensor out = at::empty({in.g.N, in.g.Cout, in.g.Ho, in.g.Wo}, x.options());
  const Forward p{std::move(in), std::move(out)};
  return forward_with<Kernels>(p).out;
}

// Both backward ops (backward.h's Grad): `other` is the weight (kInput) or x (kWeight).
template <typename Kernels, host::Grad kGrad>
at::Tensor backward(const at::Tensor& grad_out, const at::Tensor& other, at::IntArrayRef size, at::IntArrayRef stride,
                    int64_t groups, at::IntArrayRef out_offset) {
  check_backward(kGrad == host::Grad::kInput ? "upsample_skip_backward_input" : "upsample_skip_backward_weight",
                 grad_out, other, host::other_name(kGrad), Kernels::kDevice);
  return host::run_backward<kGrad, Kernels>(grad_out, other, size, Layout::kContiguous, [&](auto x_size, auto w_size) {
    return backward_geometry(grad_out, x_size, w_size, stride, groups, out_offset);
  });
}

// In a backend's TORCH_LIBRARY_IMPL block: its kernels behind the op's entry points.
template <typename Kernels>
void register_kernels(torch::Library& m) {
  m.impl("upsample_skip", &forward<Kernels>);
  m.impl("upsample_skip_backward_input", &backward<Kernels, host::Grad::kInput>);
  m.impl("upsample_skip_backward_weight", &backward<Kernels, host::Grad::kWeight>);
}

}  // namespace upsample_skip
}  // namespace fcn_kernels
