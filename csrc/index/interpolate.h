// Index math of the bilinear ops (docs/DESIGN.md §2.6: interpolate_logsumexp, interpolate_argmax), shared
// by their kernels and replayed by csrc/tests/test_loss_math.cpp. F.interpolate(mode="bilinear") gives
// output (i, j) from the 2 x 2 input pixels of its row taps and column taps, each axis's taps being two
// input indices i0 <= i1 (equal at the last input) and weights l0 + l1 = 1. The taps of every output
// row and column are computed once per call on the host, by PyTorch's own rule (csrc/host/interpolate.h).
#pragma once

#include <cmath>

#include "host_device.h"

namespace fcn_kernels {
namespace interpolate {

// Sizes of one call: x (N, C, H, W) contiguous, the (virtual) output (N, C, Ho, Wo).
struct Geometry {
  int64_t N, C, H, W, Ho, Wo;
  bool align_corners;
};

// The taps along one axis, as arrays over the output coordinate (structure of arrays: the column taps
// are read in unit-stride runs).
template <typename T>
struct Taps {
  const int64_t* i0;
  const int64_t* i1;
  const T* l0;
  const T* l1;
};

// One step of F.interpolate's blend, a * wa + b * wb, with the first product fused into the sum: how
// PyTorch's FMA builds (its AVX2/AVX-512 CPU kernels, CUDA) contract it, written out so that every backend
// (the C++ CPU and CUDA kernels, fcn_kernels/triton/_tiles.py's bilinear_score) rounds each score alike
// whatever its compiler contracts, and near ties resolve to the same label.
template <typename T>
FCN_HOST_DEVICE T blend2(T a, T wa, T b, T wb) {
#ifdef __CUDA_ARCH__
  return fma(a, wa, b * wb);
#else
  return std::fma(a, wa, b * wb);
#endif
}

// F.interpolate's blend, in PyTorch's order: each tap row blended along the columns, then the two rows.
// x(r, c) reads input pixel (r, c) of the plane.
template <typename T, typename Load>
FCN_HOST_DEVICE T blend(T r0, T r1, T c0, T c1, int64_t ri0, int64_t ri1, int64_t ci0, int64_t ci1, const Load& x) {
  return blend2(blend2(x(ri0, ci0), c0, x(ri0, ci1), c1), r0, blend2(x(ri1, ci0), c0, x(ri1, ci1), c1), r1);
}

// The weight of input row (or column) h in output row i's blend: i's taps at h, both at the last input. The
// adjoint's gather (the CUDA backward) sums it over rows_reaching(taps, out, {h, h + 1}).
template <typename T>
FCN_HOST_DEVICE T tap_weight(const Taps<T>& t, int64_t i, int64_t h) {
  return (t.i0[i] == h ? t.l0[i] : T(0)) + (t.i1[i] == h ? t.l1[i] : T(0));
}

// The output rows [first, last) whose row taps reach the input rows [in.begin, in.end): the i0 and i1
// of the row taps never decrease (the source coordinate grows with the output one), so they are the
// rows from the first with i1 >= in.begin to the first with i0 >= in.end. Binary searches over `out`.
template <typename T>
FCN_HOST_DEVICE Range rows_reaching(const Taps<T>& rows, int64_t out, Range in) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (rows.i1[mid] >= in.begin) hi = mid; else lo = mid + 1;
  }
  const int64_t first = lo;
  hi = out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (rows.i0[mid] >= in.end) hi = mid; else lo = mid + 1;
  }
  return Range{first, lo};
}

// The backward's bands: kBandRows consecutive input rows of one image, so that each grad_x row has one
// writer; a band recomputes the output rows that blend its last input row with the next band's first
// (about one input row's share of output rows: a quarter of its own).
constexpr int64_t kBandRows = 4;

FCN_HOST_DEVICE int64_t bands_per_image(int64_t H) { return ceil_div(H, kBandRows); }

FCN_HOST_DEVICE Range band_inputs(int64_t H, int64_t b) {
  return Range{b * kBandRows, imin(H, (b + 1) * kBandRows)};
}

}  // namespace interpolate
}  // namespace fcn_kernels
