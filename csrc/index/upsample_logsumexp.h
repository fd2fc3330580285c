// Index math of upsample_logsumexp, the per-pixel statistics of upsample_cross_entropy (docs/DESIGN.md
// §2.5): which output rows each backward task recomputes and which it owns. Shared by the CPU kernel and
// replayed against naive loops by csrc/tests/test_loss_math.cpp.
//
// The backward never stores the (N, C, Ho, Wo) score gradient. It walks the output rows, recomputes
// each row's scores from x, turns them into the score gradient dscore[c] = a * softmax_c + b * [c == y]
// (a, b: the gradients of the log-sum-exp and of the target's score at that pixel), and pushes that row
// through the upsampling's adjoint at once. Input row ih receives output rows ih * sh + kh - oy, kh <
// Kh: the tasks are bands of consecutive input rows of one image, so that each grad_x row has one
// writer; a band recomputes the output rows it reaches, about (Kh - sh) / sh rows more than its
// share where the kernel is larger than the stride. Every output row is *owned* by one band, which
// writes its grad_skip row and adds it to the bias gradient, including rows no input row reaches
// (Kh < sh, or the first band's rows above its first input's reach).
#pragma once

#include "upsample_skip.h"

namespace fcn_kernels {
namespace upsample_logsumexp {

using upsample_skip::Geometry;

// Input rows per band: enough that the recomputed rows are at most a quarter of a band's (the
// overlap is Kh - sh rows), at least 1, at most H. A function of the geometry only, so that the
// bands, and the sums per band, are the same whatever the thread count.
FCN_HOST_DEVICE int64_t band_rows(const Geometry& g) {
  const int64_t overlap = imax(0, g.Kh - g.sh);
  return imin(g.H, imax(1, ceil_div(4 * overlap, g.sh)));
}

FCN_HOST_DEVICE int64_t bands_per_image(const Geometry& g) { return ceil_div(g.H, band_rows(g)); }

// Input rows of band b of an image.
FCN_HOST_DEVICE Range band_inputs(const Geometry& g, int64_t b) {
  const int64_t B = band_rows(g);
  return Range{b * B, imin(g.H, (b + 1) * B)};
}

// Output rows that band b's input rows reach through some tap: ih * sh + kh - oy in [0, Ho).
FCN_HOST_DEVICE Range band_reach(const Geometry& g, int64_t b) {
  const Range in = band_inputs(g, b);
  return Range{imin(g.Ho, imax(0, in.begin * g.sh - g.oy)), imax(0, imin(g.Ho, (in.end - 1) * g.sh + g.Kh - g.oy))};
}

// Output rows band b owns: from its first input row's first output row to the next band's, the first
// band from row 0 and the last to row Ho. The bands' owned rows partition [0, Ho).
FCN_HOST_DEVICE Range band_owned(const Geometry& g, int64_t b) {
  const Range in = band_inputs(g, b);
  const int64_t lo = b == 0 ? 0 : imin(g.Ho, imax(0, in.begin * g.sh - g.oy));
  const int64_t hi = in.end == g.H ? g.Ho : imin(g.Ho, imax(0, in.end * g.sh - g.oy));
  return Range{lo, hi};
}

// Output rows band b recomputes: the owned and the reached rows (one interval: both start at the band's
// first input row's first output row, or at 0).
FCN_HOST_DEVICE Range band_rows_computed(const Geometry& g, int64_t b) {
  const Range own = band_owned(g, b), reach = band_reach(g, b);
  if (own.size() == 0) return reach;
  if (reach.size() == 0) return own;
  return Range{imin(own.begin, reach.begin), imax(own.end, reach.end)};
}

// Input rows of band b that output row i receives from: inputs_for_output clipped to the band.
FCN_HOST_DEVICE Range band_inputs_of_row(const Geometry& g, int64_t b, int64_t i) {
  const Range in = band_inputs(g, b), all = upsample_skip::inputs_for_output(i + g.oy, g.sh, g.Kh, g.H);
  return Range{imax(in.begin, all.begin), imin(in.end, all.end)};
}

// The backward's tasks: the bands of all images, in order, cut into `chunks` runs of consecutive bands
// (split_rows), at most kMaxChunks, and fewer for a large weight: a run keeps a partial weight gradient
// (in the CPU kernel's padded layout, Kh rows of ceil(Kw / sw) * sw), and all runs together at most
// kMaxPartials elements. A run's weight and bias gradient partial sums are added in run order.
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMaxPartials = int64_t(1) << 24;

FCN_HOST_DEVICE int64_t chunk_count(const Geometry& g) {
  const int64_t partial = g.Cin * g.cout_per_group() * g.Kh * ceil_div(g.Kw, g.sw) * g.sw;
  return imin(imin(kMaxChunks, g.N * bands_per_image(g)), imax(1, kMaxPartials / imax(1, partial)));
}

// The CUDA backward (csrc/cuda/upsample_logsumexp_kernel.cu) computes the score gradient of an output element
// where a reduction reads it, from its flat offset in the (virtual) (N, Cout, Ho, Wo) scores: its coordinates.
struct OutCoords {
  int64_t n, c, i, j;
};

FCN_HOST_DEVICE OutCoords out_coords(const Geometry& g, int64_t k) {
  const int64_t j = k % g.Wo, r = k / g.Wo, i = r % g.Ho, nc = r / g.Ho;
  return OutCoords{nc / g.Cout, nc % g.Cout, i, j};
}

// The bias gradient as a weight gradient (csrc/index/weight_grad.h) of an input that is 1 everywhere: pair co,
// one tap, term rows the output rows; it sums class co's score gradient over every output pixel, in the
// split reduction's fixed order.
struct BiasGradOp {
  Geometry g;
  FCN_HOST_DEVICE int64_t pairs() const { return g.Cout; }
  FCN_HOST_DEVICE int64_t taps() const { return 1; }
  FCN_HOST_DEVICE int64_t kw() const { return 1; }
  FCN_HOST_DEVICE int64_t images() const { return g.N; }
  FCN_HOST_DEVICE int64_t term_rows() const { return g.Ho; }
  FCN_HOST_DEVICE Range row_range(int64_t) const { return Range{0, g.Ho}; }
  FCN_HOST_DEVICE ColMap col_map(int64_t) const { return ColMap{Range{0, g.Wo}, 0, 1, 0}; }
  FCN_HOST_DEVICE int64_t x_row(int64_t, int64_t, int64_t, int64_t) const { return 0; }
  FCN_HOST_DEVICE int64_t go_row(int64_t n, int64_t pair, int64_t, int64_t r) const {
    return g.out_index(n, pair, r, 0);
  }
};

}  // namespace upsample_logsumexp
}  // namespace fcn_kernels
