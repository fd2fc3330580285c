// The host layer shared by the bilinear ops (docs/DESIGN.md §2.6; csrc/host/interpolate_logsumexp.h,
// csrc/host/interpolate_argmax.h): the geometry of F.interpolate(x, size=(Ho, Wo), mode="bilinear",
// align_corners=...), its checks, and the taps of every output row and column: PyTorch's scale
// (ATen/native/UpSample.h: area_pixel_compute_scale) and its compute_source_index_and_lambda, in the op-math
// type as its CPU kernel computes them, with the source coordinate's multiply-add fused as PyTorch's FMA
// builds compute it (source_coordinate).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"  // CUDA's `#pragma unroll` in ATen's vectorized headers
#include <ATen/native/UpSample.h>
#pragma GCC diagnostic pop
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
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

// compute_source_index_and_lambda's source coordinate of output index i: scale * (i + 0.5) - 0.5 clamped
// at 0, or scale * i with align_corners. Where PyTorch is compiled with FMA (its AVX2 and AVX-512 CPU
// kernels, CUDA) the compiler fuses the multiply-add, which moves the coordinate by an ulp and with it a
// score near a tie; calling PyTorch's function here would fuse it or not with this file's compiler flags
// (nvcc's host pass, -march), so the fused form is written out: the taps are the same in every build, on
// every backend (fcn_kernels/triton/_tiles.py's bilinear_taps computes the same), and PyTorch's own.
template <typename T>
T source_coordinate(T scale, int64_t i, bool align_corners) {
  if (align_corners) return scale * static_cast<T>(i);
  const T src = std::fma(scale, static_cast<T>(i) + static_cast<T>(0.5), static_cast<T>(-0.5));
  return src < static_cast<T>(0) ? static_cast<T>(0) : src;
}

template <typename T>
AxisTaps<T> axis_taps(int64_t in, int64_t out, bool align_corners) {
  AxisTaps<T> t{std::vector<int64_t>(out), std::vector<int64_t>(out), std::vector<T>(out), std::vector<T>(out)};
  const T scale = at::native::area_pixel_compute_scale<T>(in, out, align_corners, std::nullopt);
  for (int64_t i = 0; i < out; ++i) {
    if (in == out) {  // a copy: one tap, so that a non-finite neighbour never meets a zero weight
      t.i0[i] = t.i1[i] = i;
      t.l0[i] = static_cast<T>(1);
      t.l1[i] = static_cast<T>(0);
      continue;
    }
    // guard_index_and_lambda's, floorf included (a double coordinate rounded to float before its floor);
    // with align_corners, src - i0 is a multiply then a subtract, unfused, as in PyTorch's CPU kernel (src
    // has other uses, so GCC does not contract it; Triton's bilinear_taps keeps its GPU compiler from it)
    const T src = source_coordinate(scale, i, align_corners);
    t.i0[i] = std::min(static_cast<int64_t>(floorf(src)), in - 1);
    t.l1[i] = std::min(std::max(src - static_cast<T>(t.i0[i]), static_cast<T>(0)), static_cast<T>(1));
    t.i1[i] = t.i0[i] + (t.i0[i] < in - 1 ? 1 : 0);
    t.l0[i] = static_cast<T>(1) - t.l1[i];
  }
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
