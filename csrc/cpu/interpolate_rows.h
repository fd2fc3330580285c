// The bilinear scores of one output row of every class (F.interpolate(mode="bilinear")), shared by the CPU
// kernels of interpolate_logsumexp and interpolate_argmax. An output row blends two input rows; each input
// row, blended along the columns for every class, is kept in a two-row cache, so that the output rows
// sharing an input row (all of an upsampling's s rows) blend its columns once.
#pragma once

#include <ATen/OpMathType.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "index/interpolate.h"

namespace fcn_kernels {
namespace interpolate {

// Score elements (a class at an output pixel: a blend, an exp, a few products) per parallel task: tasks
// much smaller than this cost more in the threads' hand-off than they save.
constexpr int64_t kGrainScores = 1 << 16;

inline int64_t grain_for_scores(int64_t scores_per_item) {
  return std::max<int64_t>(1, kGrainScores / std::max<int64_t>(1, scores_per_item));
}

template <typename scalar_t>
class ScoreRows {
 public:
  using acc_t = at::opmath_type<scalar_t>;

  ScoreRows(const Geometry& g, const scalar_t* x, Taps<acc_t> rows, Taps<acc_t> cols)
      : g_(g), x_(x), rows_(rows), cols_(cols), slots_{Slot(g), Slot(g)} {}

  // v[c * Wo + j] = class c's score at output (n, i, j), rounded to scalar_t as F.interpolate stores it:
  // (x[r0, c0] * wc0 + x[r0, c1] * wc1) * wr0 + (x[r1, c0] * wc0 + x[r1, c1] * wc1) * wr1, each step
  // index/interpolate.h's blend2.
  void scores(int64_t n, int64_t i, acc_t* v) {
    const acc_t* b0 = blended(n, rows_.i0[i], -1);
    const acc_t* b1 = blended(n, rows_.i1[i], rows_.i0[i]);
    const acc_t l0 = rows_.l0[i], l1 = rows_.l1[i];
    for (int64_t k = 0, size = g_.C * g_.Wo; k < size; ++k)
      v[k] = static_cast<acc_t>(static_cast<scalar_t>(blend2(b0[k], l0, b1[k], l1)));
  }

 private:
  struct Slot {
    explicit Slot(const Geometry& g) : buf(g.C * g.Wo) {}
    int64_t n = -1, row = -1;
    std::vector<acc_t> buf;
  };

  // Input row `row` of image n blended along the columns, every class: buf[c * Wo + j]. Never evicts the
  // slot holding row `keep` (the other row of the same output row).
  const acc_t* blended(int64_t n, int64_t row, int64_t keep) {
    for (Slot& s : slots_)
      if (s.n == n && s.row == row) return s.buf.data();
    Slot& s = (slots_[0].n == n && slots_[0].row == keep) ? slots_[1] : slots_[0];
    s.n = n;
    s.row = row;
    for (int64_t c = 0; c < g_.C; ++c) {
      const scalar_t* xr = x_ + ((n * g_.C + c) * g_.H + row) * g_.W;
      acc_t* __restrict__ out = s.buf.data() + c * g_.Wo;
      for (int64_t j = 0; j < g_.Wo; ++j)
        out[j] = blend2(static_cast<acc_t>(xr[cols_.i0[j]]), cols_.l0[j], static_cast<acc_t>(xr[cols_.i1[j]]), cols_.l1[j]);
    }
    return s.buf.data();
  }

  const Geometry& g_;
  const scalar_t* x_;
  Taps<acc_t> rows_, cols_;
  Slot slots_[2];
};

}  // namespace interpolate
}  // namespace fcn_kernels
