// The host layer shared by the bilinear ops (docs/DESIGN.md §2.6; csrc/host/interpolate_logsumexp.h,
// csrc/host/interpolate_argmax.h): the geometry of F.interpolate(x, size=(Ho, Wo), mode="bilinear",
// align_corners=...), its checks, and the taps of every output row and column, computed with PyTorch's
// own functions (ATen/native/UpSample.h: area_pixel_compute_scale, then compute_source_index_and_lambda,
// in the op-math type as its CPU kernel computes them), so that the source coordinates are PyTorch's.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"  // CUDA's `#pragma unroll` in ATen's vectorized headers
#include <ATen/native/UpSample.h>
#pragma GCC diagnostic pop
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "../index/interpolate.h"
#include "checks.h"

namespace fcn_kernels {
namespace interpolate {

inline Geometry make_geometry(const char* op, const at::Tensor& x, int64_t Ho, int64_t Wo, bool align_corners,
                              c10::DeviceType type) {
  check_device_type(op, x, "x", type);
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D (N, C, H, W), got size ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": x must be floating point, got ", x.scalar_type());
  check_numel(op, "x", x.sizes());
  Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), Ho, Wo, align_corners};
  TORCH_CHECK(g.C >= 1 && g.H >= 1 && g.W >= 1, op, ": x must have non-empty channel and spatial sizes, got ",
              x.sizes());
  TORCH_CHECK(Ho >= 1 && Wo >= 1, op, ": the output size must be >= 1 (as F.interpolate's), got (", Ho, ", ", Wo,
              ")");
  check_extent(op, "the output size", std::max(Ho, Wo));
  check_planes(op, "x (its planes)", g.C, g.H, g.W);
  check_planes(op, "the output size (its planes)", g.C, Ho, Wo);
  check_numel(op, "the scores (N, C, output size)", {g.N, g.C, Ho, Wo});
  return g;
}

// The taps of every output coordinate along one axis (index/interpolate.h's Taps), owned.
template <typename T>
struct AxisTaps {
  std::vector<int64_t> i0, i1;
  std::vector<T> l0, l1;
  Taps<T> view() const { return {i0.data(), i1.data(), l0.data(), l1.data()}; }
};

template <typename T>
AxisTaps<T> axis_taps(int64_t in, int64_t out, bool align_corners) {
  AxisTaps<T> t{std::vector<int64_t>(out), std::vector<int64_t>(out), std::vector<T>(out), std::vector<T>(out)};
  const T scale = at::native::area_pixel_compute_scale<T>(in, out, align_corners, std::nullopt);
  for (int64_t i = 0; i < out; ++i)
    at::native::compute_source_index_and_lambda<T, T>(t.i0[i], t.i1[i], t.l0[i], t.l1[i], scale, i, in, out,
                                                      align_corners);
  return t;
}

// The row and column taps of a call, in the op-math type of x's dtype (float; double for double).
template <typename T>
struct PlaneTaps {
  AxisTaps<T> rows, cols;
  explicit PlaneTaps(const Geometry& g)
      : rows(axis_taps<T>(g.H, g.Ho, g.align_corners)), cols(axis_taps<T>(g.W, g.Wo, g.align_corners)) {}
};

}  // namespace interpolate
}  // namespace fcn_kernels
