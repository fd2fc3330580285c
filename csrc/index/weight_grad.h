// The weight-gradient reduction of both ops, as the CUDA kernel (csrc/cuda/weight_grad_kernel.cuh)
// runs it and the host test (csrc/tests/test_element_math.cpp) replays it.
//
// grad_w[pair, tap] sums x * grad_out over every (image, term row, column) where the tap connects
// them; a pair is one (channel, channel-in-group) slice of the weight, whose elements are
// pair * taps + tap in both ops' layouts. The term rows of all images are cut into `splits`
// contiguous chunks, a block per (pair, chunk); in a block, tap_threads threads take a tap each and
// `lanes` threads share each tap, lane l taking every lanes-th column from the l-th. Every sum runs in a
// fixed order (columns, then rows, then lanes, then chunks), so a call gives the same bits every time
// on a given GPU. No atomics.
//
// An op type (WeightGradOp in csrc/index/upsample_skip.h and csrc/index/rarefied_conv2d.h) provides
//   pairs(), taps(), kw(), images(), term_rows()      int64_t
//   row_range(kh)                                     term rows r where tap row kh connects x and grad_out
//   col_map(kw)                                       columns c, and x column c + xb, grad_out column c * gs + gb
//   x_row(n, pair, kh, r), go_row(n, pair, kh, r)     flat offsets of column 0 of the rows tap kh joins
#pragma once

#include "host_device.h"

namespace fcn_kernels {

struct ColMap {
  Range c;
  int64_t xb, gs, gb;
};

// Threads per tap and lanes per tap, for blocks of `threads` threads.
FCN_HOST_DEVICE int64_t tap_threads(int64_t taps, int64_t threads) { return imin(taps, threads); }
FCN_HOST_DEVICE int64_t tap_lanes(int64_t taps, int64_t threads) { return threads / tap_threads(taps, threads); }

// Term rows (over all images) of chunk s of `splits`.
FCN_HOST_DEVICE Range split_rows(int64_t rows, int64_t splits, int64_t s) {
  return Range{s * rows / splits, (s + 1) * rows / splits};
}

// One thread's share of grad_w[pair, tap]: the rows of `rows`, the columns of lane `lane`.
template <typename A, typename Op, typename LoadX, typename LoadG>
FCN_HOST_DEVICE A weight_grad_partial(const Op& op, const LoadX& x, const LoadG& go, int64_t pair, int64_t tap,
                                      int64_t lane, int64_t lanes, Range rows) {
  const int64_t kh = tap / op.kw(), kw = tap % op.kw();
  const Range rr = op.row_range(kh);
  const ColMap cm = op.col_map(kw);
  const int64_t R = op.term_rows();
  int64_t n = rows.begin / R, r = rows.begin % R;
  A acc = A(0);
  for (int64_t row = rows.begin; row < rows.end; ++row) {
    if (r >= rr.begin && r < rr.end) {
      const int64_t xo = op.x_row(n, pair, kh, r) + cm.xb, go_o = op.go_row(n, pair, kh, r) + cm.gb;
      for (int64_t c = cm.c.begin + lane; c < cm.c.end; c += lanes) acc += x(xo + c) * go(go_o + c * cm.gs);
    }
    if (++r == R) {
      r = 0;
      ++n;
    }
  }
  return acc;
}

}  // namespace fcn_kernels
