// The host layer of rarefied_conv2d, for every backend (csrc/cpu/rarefied_conv2d_kernel.cpp,
// csrc/cuda/conv_glue.cpp): argument checks, the geometry, the prepared call, and the op's
// entry points around a backend's kernels. The Python wrapper validates first with friendlier errors;
// these checks keep direct torch.ops calls memory-safe.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "../index/rarefied_conv2d.h"
#include "backward.h"
#include "checks.h"

namespace fcn_kernels {
namespace rarefied_conv2d {

constexpr const char* kOp = "rarefied_conv2d";

inline Geometry make_geometry(at::IntArrayRef x_size, at::IntArrayRef w_size, at::IntArrayRef rarefaction,
                              at::IntArrayRef padding, int64_t groups) {
  TORCH_CHECK(x_size.size() == 4, "rarefied_conv2d: x must be 4-D (N, Cin, H, W), got size ", x_size);
  TORCH_CHECK(w_size.size() == 4, "rarefied_conv2d: weight must be 4-D (Cout, Cin/groups, Kh, Kw), got size ",
              w_size);
  TORCH_CHECK(groups >= 1, "rarefied_conv2d: groups must be >= 1, got ", groups);
  check_pair(kOp, rarefaction, "rarefaction", 1);
  check_pair(kOp, padding, "padding", 0);
  Geometry g{};
  g.N = x_size[0]; g.Cin = x_size[1]; g.H = x_size[2]; g.W = x_size[3];
  g.Cout = w_size[0]; g.groups = groups; g.Kh = w_size[2]; g.Kw = w_size[3];
  g.rh = rarefaction[0]; g.rw = rarefaction[1];
  g.ph = padding[0]; g.pw = padding[1];
  TORCH_CHECK(g.N >= 0 && g.Cin >= 1 && g.H >= 1 && g.W >= 1 && g.Cout >= 1 && w_size[1] >= 1 && g.Kh >= 1 &&
                  g.Kw >= 1,
              "rarefied_conv2d: empty spatial or channel size, x ", x_size, ", weight ", w_size);
  TORCH_CHECK(g.Cin % groups == 0 && w_size[1] == g.Cin / groups, "rarefied_conv2d: weight.size(1) (", w_size[1], ") * groups (", groups,
              ") must equal x's channels (", g.Cin, ")");
  TORCH_CHECK(g.Cout % groups == 0, "rarefied_conv2d: weight.size(0) (", g.Cout, ") not divisible by groups (",
              groups, ")");
  check_numel(kOp, "x", x_size);
  check_numel(kOp, "weight", w_size);
  // The rarefied kernel's extent, the padded input, and the tap ranges' (Kh + Kw) * (rh + rw).
  const int64_t eh = checked_mul(kOp, "rarefaction[0] * (kernel height - 1)", g.rh, g.Kh - 1);
  const int64_t ew = checked_mul(kOp, "rarefaction[1] * (kernel width - 1)", g.rw, g.Kw - 1);
  const int64_t Hp = checked_add(kOp, "the padded height (H + 2 * padding[0])", g.H, checked_mul(kOp, "2 * padding[0]", 2, g.ph));
  const int64_t Wp = checked_add(kOp, "the padded width (W + 2 * padding[1])", g.W, checked_mul(kOp, "2 * padding[1]", 2, g.pw));
  checked_mul(kOp, "rarefaction times the kernel size", g.Kh + g.Kw, g.rh + g.rw);
  TORCH_CHECK(eh < Hp && ew < Wp, "rarefied_conv2d: rarefied kernel (", eh + 1, ", ", ew + 1, ") of rarefaction ",
              rarefaction, " is larger than the padded input (", Hp, ", ", Wp, ") of padding ", padding);
  g.Ho = out_size(g.H, g.ph, g.Kh, g.rh);
  g.Wo = out_size(g.W, g.pw, g.Kw, g.rw);
  const int64_t channels = std::max(g.cin_per_group(), g.cout_per_group());
  check_planes(kOp, "x (its planes)", channels, g.H, g.W);
  check_planes(kOp, "the output (its planes)", channels, g.Ho, g.Wo);
  check_numel(kOp, "the output (N, Cout, Ho, Wo)", {g.N, g.Cout, g.Ho, g.Wo});
  // The CPU kernels' padded ("wide") copies of x and grad_out: every channel's N padded images.
  checked_mul(kOp, "the padded input (channels * N * (H + 2 * padding[0]) * (W + 2 * padding[1]))",
              std::max(g.Cin, g.Cout), checked_add(kOp, "the padded input", checked_mul(kOp, "the padded input", g.N,
              checked_mul(kOp, "the padded input", Hp, Wp)), ew));
  return g;
}

inline Geometry forward_geometry(const at::Tensor& x, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, at::IntArrayRef rarefaction,
                                 at::IntArrayRef padding, int64_t groups) {
  Geometry g = make_geometry(x.sizes(), weight.sizes(), rarefaction, padding, groups);
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "rarefied_conv2d: x must be floating point, got ",
              x.scalar_type());
  check_same(kOp, weight, x, "weight");
  if (bias.has_value()) {
    check_same(kOp, *bias, x, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.Cout, "rarefied_conv2d: bias must have size (", g.Cout,
                "), got ", bias->sizes());
  }
  return g;
}

// Backward ops check grad_out against the output size the forward produced.
inline Geometry backward_geometry(const at::Tensor& grad_out, at::IntArrayRef x_size, at::IntArrayRef w_size,
                                  at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  TORCH_CHECK(grad_out.dim() == 4, "rarefied_conv2d backward: grad_out must be 4-D, got ", grad_out.sizes());
  TORCH_CHECK(at::isFloatingType(grad_out.scalar_type()),
              "rarefied_conv2d backward: grad_out must be floating point, got ", grad_out.scalar_type());
  Geometry g = make_geometry(x_size, w_size, rarefaction, padding, groups);
  TORCH_CHECK(grad_out.size(0) == g.N && grad_out.size(1) == g.Cout && grad_out.size(2) == g.Ho &&
                  grad_out.size(3) == g.Wo,
              "rarefied_conv2d backward: grad_out size ", grad_out.sizes(), " does not match the output (", g.N,
              ", ", g.Cout, ", ", g.Ho, ", ", g.Wo, ")");
  return g;
}

// What a backend's kernels work on (Forward, backward.h's calls): the call's geometry, its inputs
// checked against it and laid out as the kernels read them (Kernels::kLayout), and its result allocated
// (not yet written). bias is undefined where absent. rarefied_conv2d: out (N, Cout, Ho, Wo), x's dtype.
struct Forward {
  Geometry g;
  at::Tensor x, weight, bias, out;
  bool done() const { return out.numel() == 0; }  // nothing left for a kernel to write
};

using BackwardInput = host::BackwardInput<Geometry>;
using BackwardWeight = host::BackwardWeight<Geometry>;

// The op's entry points, one per schema (csrc/register.cpp), registered by every backend: the host
// layer checks and prepares the call here, then the backend's Kernels::forward(p) (backward_input(p),
// backward_weight(p)) writes its result. Kernels::kDevice is the backend's device type.
template <typename Kernels>
at::Tensor forward(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_device_type(kOp, x, "x", Kernels::kDevice);
  const Geometry g = forward_geometry(x, weight, bias, rarefaction, padding, groups);
  at::Tensor out = at::empty({g.N, g.Cout, g.Ho, g.Wo}, x.options());
  const Layout layout = Kernels::kLayout;
  const Forward p{g, laid_out(x, layout), laid_out(weight, layout), laid_out(bias, layout), std::move(out)};
  return forward_with<Kernels>(p).out;
}

// Both backward ops (backward.h's Grad): `other` is the weight (kInput) or x (kWeight).
template <typename Kernels, host::Grad kGrad>
at::Tensor backward(const at::Tensor& grad_out, const at::Tensor& other, at::IntArrayRef size,
                    at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_device_type(kOp, grad_out, "grad_out", Kernels::kDevice);
  check_same(kOp, other, grad_out, host::other_name(kGrad));
  return host::run_backward<kGrad, Kernels>(grad_out, other, size, Kernels::kLayout, [&](auto x_size, auto w_size) {
    return backward_geometry(grad_out, x_size, w_size, rarefaction, padding, groups);
  });
}

// In a backend's TORCH_LIBRARY_IMPL block: its kernels behind the op's entry points.
template <typename Kernels>
void register_kernels(torch::Library& m) {
  m.impl("rarefied_conv2d", &forward<Kernels>);
  m.impl("rarefied_conv2d_backward_input", &backward<Kernels, host::Grad::kInput>);
  m.impl("rarefied_conv2d_backward_weight", &backward<Kernels, host::Grad::kWeight>);
}

}  // namespace rarefied_conv2d
}  // namespace fcn_kernels
