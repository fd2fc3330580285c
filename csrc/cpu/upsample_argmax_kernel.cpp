// upsample_argmax on CPU: upsample_skip's forward (the row machinery and GEMM gathers of
// upsample_rows.h) reduced to labels over the classes without storing the scores. Each score is
// computed as the forward computes it (same summation order, bias then skip added, rounded to
// scalar_t), so the labels are exactly the argmax of the CPU upsample_skip's output. Deterministic:
// every label is written by one thread.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#if defined(__AVX512F__)
#include <cpuid.h>
#endif

#include "../host/upsample_argmax.h"
#include "../index/upsample_argmax.h"
#include "parallel_chunks.h"
#include "upsample_rows.h"

namespace fcn_kernels {
namespace upsample_argmax {
namespace {

// upsample_skip's forward machinery (upsample_rows.h).
using upsample_skip::gather_block_row;
using upsample_skip::grain_for;
using upsample_skip::Result;
using upsample_skip::load_block;
using upsample_skip::part_of;
using upsample_skip::rounded;
using upsample_skip::rounded_block;
using upsample_skip::RowPlan;
using upsample_skip::run_forward;
using upsample_skip::Stride;
using upsample_skip::scores_stay_finite;
using upsample_skip::Taps;
using upsample_skip::weight_blocks;
using upsample_skip::YRows;

// Classes are visited in increasing order; a row of running maxima (and int32 labels, the maxima's
// width, so that the update vectorizes) is kept per output row.
template <typename acc_t>
struct RunningArgmax {
  std::vector<acc_t> best;
  std::vector<int32_t> label;
  explicit RunningArgmax(int64_t n) : best(n), label(n) {}

  // Class co's rounded score v at position j.
  void take(int64_t j, int32_t co, acc_t v) {
    const bool t = co == 0 || takes_over(v, best[j]);
    best[j] = t ? v : best[j];
    label[j] = t ? co : label[j];
  }
  void store(int64_t lo, int64_t n, int64_t* out) const { std::copy(label.begin() + lo, label.begin() + lo + n, out); }
};

// Labels known without the scores. With one filter for every class, of positive separable factors
// (FCN's fixed bilinear upsampling), each score is a positively weighted sum of its class's input
// points, the same weights for every class: where one class beats every other at each input point an
// output takes by a margin d, it beats them at that output by at least (sum of weights) * d. Where that
// exceeds what the forward's roundings can move two scores (rel * max|x| of the points, and an absolute
// term for underflow), the forward's rounded scores have that class as their unique argmax, so its
// label is known: those outputs (most of a real segmentation, whose classes fill regions) skip the
// classes' scores. Elsewhere (boundaries, near ties, noise) the scores are computed as before.
template <int SW, typename scalar_t>
class SureLabels {
 public:
  using acc_t = at::opmath_type<scalar_t>;
  using Plan = RowPlan<SW, scalar_t>;
  static constexpr int64_t kLanes = 64 / sizeof(acc_t);
  static constexpr int kRing = upsample_skip::kMaxTaps;  // the most input rows an output row takes

  // A task's state: the sure labels of its last run of output rows sharing input rows (one image, the same
  // input rows), and its input rows' points.
  struct Rows {
    int64_t n = -1;
    Range in{-1, -1};
    bool active = false;  // label is this run's (else its rows are computed as without SureLabels)
    bool all = false;     // every block of the run sure
    int skip = 0, backoff = 0;
    // The input columns the blocks not sure take, as ranges of at least a vector's width where x is that
    // wide: the combined rows are built there only.
    std::vector<Range> columns;
    std::vector<int32_t> label, col_label;
    std::vector<acc_t> col_margin, col_mag;
    // Points of input rows (ring[h % kRing] holds row (ring_n, ring_h)): the first class of the largest x,
    // its margin over the next (0 for a tie, infinite for one class), and the largest |x|.
    int64_t ring_n[kRing], ring_h[kRing];
    std::vector<int32_t> win;
    std::vector<acc_t> margin, mag;
  };

  // Applies to the separable form without bias or skip, one filter for every class, factors all > 0.
  SureLabels(const Plan& plan, const scalar_t* x, bool bias_or_skip) : plan_(plan), g_(plan.g), x_(x) {
    if (!plan.separable() || bias_or_skip || ceil_div(g_.Kh, g_.sh) > kRing) return;
    const int64_t F = g_.Kh + g_.Kw;
    const acc_t* f = plan.factors.data();
    for (int64_t k = 0; k < F; ++k)
      if (!(f[k] > 0)) return;
    for (int64_t c = 1; c < g_.Cout; ++c)
      if (!std::equal(f, f + F, f + c * F)) return;
    // The forward's roundings: each score a sum of at most Kh / sh + Kw / sw terms' products, FMAs and
    // additions in acc_t (a relative error under (terms + 2) ulps of its terms' absolute sum), then one
    // rounding to scalar_t; both scores of a pair may move, and twice over for room.
    const int64_t terms = ceil_div(g_.Kh, g_.sh) + plan.T + 2;
    const acc_t u_acc = std::numeric_limits<acc_t>::epsilon() / 2;
    const acc_t u_out = static_cast<acc_t>(std::numeric_limits<scalar_t>::epsilon()) / 2;
    rel_ = 4 * (terms * u_acc + u_out);
    // Underflow: each rounding off by at most the least normal number of its type (flushed to zero under
    // torch.set_flush_denormal, else half the least subnormal); the combined rows' (terms of them) are
    // then scaled by b, up to b_max; all over the least sum of weights an output can take (least a times
    // least b).
    const acc_t a_min = *std::min_element(f, f + g_.Kh), b_min = *std::min_element(f + g_.Kh, f + F);
    const acc_t b_max = *std::max_element(f + g_.Kh, f + F);
    const acc_t tiny = 4 * (terms * (terms * std::max(acc_t(1), b_max)) * std::numeric_limits<acc_t>::min() +
                            static_cast<acc_t>(std::numeric_limits<scalar_t>::min()));
    abs_ = tiny / (a_min * b_min);
    // No score may round to infinity (two infinite scores tie): |score| <= A * B * max|x|, A and B the
    // largest sums of one phase's factors.
    const acc_t A = phase_sum(f, g_.Kh, g_.sh), B = phase_sum(f + g_.Kh, g_.Kw, g_.sw);
    mag_limit_ = static_cast<acc_t>(std::numeric_limits<scalar_t>::max()) / (2 * A * B);
    enabled_ = abs_ < std::numeric_limits<acc_t>::max();
  }

  bool enabled() const { return enabled_; }

  // Output row (n, i)'s run: r.label (indexed by block m - m_lo, -1 where not sure) where r.active. A run
  // with under an eighth of its blocks sure (noise: none) makes the task skip the next 1, 2, 4, .. 64 runs
  // (each skipped run costs nothing; where labels come sure again, the skips stop).
  const Rows& row(int64_t n, int64_t i, Rows& r) const {
    const Range in = plan_.inputs[i];
    if (r.n == n && r.in.begin == in.begin && r.in.end == in.end) return r;
    r.n = n, r.in = in, r.active = false;
    if (r.skip > 0) return --r.skip, r;
    if (!compute(n, in, r)) {
      r.backoff = std::min(2 * r.backoff + 1, 64), r.skip = r.backoff;
    } else {
      r.backoff = 0;
    }
    return r;
  }

 private:
  // r's labels for the run of image n taking input rows `in`; whether an eighth of its blocks are sure.
  bool compute(int64_t n, Range in, Rows& r) const {
    const int64_t W = g_.W, nb = plan_.m_hi - plan_.m_lo;
    if (in.size() == 0) return false;
    if (r.win.empty()) {
      r.win.resize(kRing * W), r.margin.resize(kRing * W), r.mag.resize(kRing * W);
      std::fill(r.ring_n, r.ring_n + kRing, -1);
    }
    r.label.resize(nb), r.col_label.resize(W), r.col_margin.resize(W), r.col_mag.resize(W);
    // The input columns over the rows: one winner, the least margin, the largest magnitude (loops without
    // branches, which vectorize).
    for (int64_t h = in.begin; h < in.end; ++h) {
      const int64_t s = h % kRing, p = s * W;
      if (r.ring_n[s] != n || r.ring_h[s] != h) points(n, h, r.win.data() + p, r.margin.data() + p, r.mag.data() + p);
      r.ring_n[s] = n, r.ring_h[s] = h;
      int32_t* label = r.col_label.data();
      acc_t *margin = r.col_margin.data(), *mag = r.col_mag.data();
      if (h == in.begin) {
        std::copy(r.win.begin() + p, r.win.begin() + p + W, label);
        std::copy(r.margin.begin() + p, r.margin.begin() + p + W, margin);
        std::copy(r.mag.begin() + p, r.mag.begin() + p + W, mag);
        continue;
      }
      for (int64_t c = 0; c < W; ++c) {
        label[c] = label[c] == r.win[p + c] ? label[c] : -1;
        margin[c] = std::min(margin[c], r.margin[p + c]), mag[c] = std::max(mag[c], r.mag[p + c]);
      }
    }
    // Block m takes the input columns m - t, t < T, inside x: all of them for m in [T - 1, W).
    const auto block = [&](int64_t c0, int64_t c1) FCN_BLOCK_INLINE_LAMBDA {
      if (c0 >= c1) return -1;
      const int32_t* cl = r.col_label.data();
      const acc_t *cm = r.col_margin.data(), *cg = r.col_mag.data();
      int32_t label = cl[c1 - 1];
      acc_t margin = cm[c1 - 1], mag = cg[c1 - 1];
      for (int64_t c = c0; c + 1 < c1; ++c) {
        label = label == cl[c] ? label : -1;
        margin = std::min(margin, cm[c]), mag = std::max(mag, cg[c]);
      }
      return label >= 0 && margin > rel_ * mag + abs_ && mag < mag_limit_ ? label : -1;
    };
    const int64_t T = plan_.T, lo = plan_.m_lo, hi = plan_.m_hi;
    const int64_t in_lo = std::clamp(T - 1, lo, hi), in_hi = std::clamp(W, in_lo, hi);
    int32_t* label = r.label.data();  // label[m - lo]
    const auto edge = [&](int64_t m) { return block(std::max<int64_t>(0, m - T + 1), std::min<int64_t>(W, m + 1)); };
    for (int64_t m = lo; m < in_lo; ++m) label[m - lo] = edge(m);
    for (int64_t m = in_lo; m < in_hi; ++m) label[m - lo] = block(m - T + 1, m + 1);
    for (int64_t m = in_hi; m < hi; ++m) label[m - lo] = edge(m);
    const int64_t unsure = std::count(r.label.begin(), r.label.end(), -1);
    if (8 * (nb - unsure) < nb) return false;
    r.active = true, r.all = unsure == 0;
    r.columns.clear();
    for (int64_t m = lo; m < hi; ++m) {
      if (label[m - lo] >= 0) continue;
      int64_t c0 = std::max<int64_t>(0, m - T + 1), c1 = std::min<int64_t>(W, m + 1);
      if (c1 - c0 < kLanes && W >= kLanes) c0 = std::min(c0, W - kLanes), c1 = c0 + kLanes;
      if (c0 >= c1) continue;
      if (!r.columns.empty() && c0 <= r.columns.back().end) {
        r.columns.back().end = std::max(r.columns.back().end, c1);
      } else {
        r.columns.push_back({c0, c1});
      }
    }
    return true;
  }

  // The largest sum of the factors f[k], k < K, of one phase k % s.
  static acc_t phase_sum(const acc_t* f, int64_t K, int64_t s) {
    acc_t most = 0;
    for (int64_t ph = 0; ph < s; ++ph) {
      acc_t sum = 0;
      for (int64_t k = ph; k < K; k += s) sum += f[k];
      most = std::max(most, sum);
    }
    return most;
  }

  // Input row (n, h)'s points (Rows::win, margin, mag), kLanes columns at a time in vector registers, the
  // last chunk overlapping the one before (the same values). The separable form's inputs are finite
  // (scores_stay_finite).
  void points(int64_t n, int64_t h, int32_t* win, acc_t* margin, acc_t* mag) const {
    const int64_t W = g_.W, count = std::min(W, kLanes);
    for (int64_t w = 0; w < W; w += kLanes)
      points_chunk(n, h, W < kLanes ? 0 : std::min(w, W - kLanes), count, win, margin, mag);
  }

  // points() for columns [w0, w0 + count), count <= kLanes (as arrays, GCC stored the running class with
  // a masked store and a reload, which stalled).
  FCN_BLOCK_INLINE void points_chunk(int64_t n, int64_t h, int64_t w0, int64_t count, int32_t* win_out,
                                     acc_t* margin_out, acc_t* mag_out) const {
    using Vec = upsample_skip::Block<acc_t, kLanes>;
    const auto load = [&](int64_t c) FCN_BLOCK_INLINE_LAMBDA {
      return upsample_skip::load_block<Vec>(x_ + g_.x_index(n, c, h, w0), 0, count);
    };
    Vec best = load(0), second = Vec{} - std::numeric_limits<acc_t>::infinity(), win = {};
    Vec mag = best < 0 ? -best : best;
    for (int64_t c = 1; c < g_.Cin; ++c) {
      const Vec v = load(c);
      const auto t = v > best;
      second = t ? best : (v > second ? v : second);
      best = t ? v : best;
      win = t ? static_cast<acc_t>(c) : win;
      const Vec a = v < 0 ? -v : v;
      mag = a > mag ? a : mag;
    }
    const Vec margin = best - second;
    for (int64_t k = 0; k < count; ++k)
      win_out[w0 + k] = static_cast<int32_t>(win[k]), margin_out[w0 + k] = margin[k], mag_out[w0 + k] = mag[k];
  }

  const Plan& plan_;
  const Geometry& g_;
  const scalar_t* x_;
  bool enabled_ = false;
  acc_t rel_ = 0, abs_ = 0, mag_limit_ = 0;
};

// rounded_block for scores that cannot be NaN (kFinite): bfloat16's rounding to nearest even without the
// compare and selects that map NaN to 0x7FC0, the same bits for every other value, infinities included. In
// the labels' loop, per score, they are as many vector operations as the argmax's own compare and selects.
template <typename scalar_t, typename V>
FCN_BLOCK_INLINE V rounded_finite_block(V v) {
  if constexpr (upsample_skip::kBFloat16Block<scalar_t, V> && sizeof(V) <= 64) {
    using U = upsample_skip::Block<uint32_t, upsample_skip::kLanes<V>>;
    U u;
    std::memcpy(&u, &v, sizeof u);
    u = (u + (((u >> 16) & 1u) + 0x7FFFu)) & 0xFFFF0000u;
    return std::memcpy(&v, &u, sizeof v), v;
  } else if constexpr (upsample_skip::kSplitBlock<scalar_t, V> && upsample_skip::kBFloat16Block<scalar_t, V>) {
    // wider than a register (stride 32): a register's part at a time, as rounded_block splits them
    using Part = upsample_skip::Block<float, upsample_skip::kPartLanes>;
    for (int i = 0; i < upsample_skip::kLanes<V>; i += upsample_skip::kPartLanes) {
      Part part;
      std::memcpy(&part, reinterpret_cast<const float*>(&v) + i, sizeof part);
      part = rounded_finite_block<scalar_t>(part);
      std::memcpy(reinterpret_cast<float*>(&v) + i, &part, sizeof part);
    }
    return v;
  } else {
    return rounded_block<scalar_t>(v);
  }
}

// Labels of blocks [m, m + B) of output row (n, i), the blocks' running maxima and labels kept in
// registers while the classes are visited in increasing order (class co's row terms: taps[co]); each
// score is computed, biased, skipped and rounded as upsample_skip's forward stores it. kCore: core blocks
// (RowPlan::core_blocks), else edge blocks. kBias, kSkip: whether bias and skip are given (tested once per
// row, not per block). kFinite: no score can be NaN (scores_stay_finite), so that takes_over is v > best,
// one comparison (core blocks only: the edge blocks are few). kCore blocks outside `whole` (blocks inside x
// that the crop window cuts: inner_blocks) store their columns inside the window only; they take no skip.
template <int NT, bool kCore, int B, bool kBias, bool kSkip, bool kFinite, int SW, typename scalar_t, typename TapsT>
FCN_BLOCK_INLINE void label_tile(const RowPlan<SW, scalar_t>& plan, const TapsT* taps, const scalar_t* bias,
                                 const scalar_t* skip, int64_t n, int64_t i, int64_t m, int64_t* orow,
                                 Range whole = {0, std::numeric_limits<int64_t>::max()}) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = typename TapsT::Vec;
  // The compares and selects on parts of a block of at most 64 bytes (one register): on wider blocks (float at
  // stride 32, double at 16 and 32) GCC 12 kept the whole-block running maxima and labels on the stack and
  // compared them lane by lane (float, 256x256, 1 thread: 2.8 ms at stride 32 against 0.2 at 8 and 16).
  constexpr int P = sizeof(Vec) > 64 ? int(sizeof(Vec) / 64) : 1, PL = upsample_skip::kLanes<Vec> / P;
  using Part = upsample_skip::Block<acc_t, PL>;
  using Label = decltype(Part{} > Part{});  // integer lanes as wide as the scores'
  const auto parts = [](auto&& fn) FCN_BLOCK_INLINE_LAMBDA {  // fn(integral_constant p) for p < P
    [&]<int... p>(std::integer_sequence<int, p...>) { (fn(std::integral_constant<int, p>{}), ...); }(
        std::make_integer_sequence<int, P>{});
  };
  const auto part = [](const Vec& v, auto p) FCN_BLOCK_INLINE_LAMBDA {
    return part_of<Part, decltype(p)::value * PL>(v, std::make_index_sequence<PL>{});
  };
  const Geometry& g = plan.g;
  int64_t r0[B], r1[B];
  for (int b = 0; b < B; ++b) {
    r0[b] = 0, r1[b] = SW;
    if (!kCore) plan.window(m + b, r0[b], r1[b]);
  }
  // Class co's scores of the B blocks into v.
  const auto scores = [&](int64_t co, Vec* v) FCN_BLOCK_INLINE_LAMBDA {
    if constexpr (kCore) {
      taps[co].template inner_blocks<NT, B>(m, v);
    } else {
      for (int b = 0; b < B; ++b) v[b] = taps[co].template at<NT, true>(m + b);
    }
    for (int b = 0; b < B; ++b) {
      // Without a bias, the forward adds 0, which changes no comparison (-0 == +0): left out here.
      if constexpr (kBias) v[b] += static_cast<acc_t>(bias[co]);
      if constexpr (kSkip) v[b] += load_block<Vec>(skip + g.skip_index(n, co, i, plan.column(m + b)), r0[b], r1[b]);
      if constexpr (kFinite && kCore) {
        v[b] = rounded_finite_block<scalar_t>(v[b]);
      } else {
        v[b] = rounded_block<scalar_t>(v[b]);
      }
    }
  };
  Vec v[B];
  Part best[B][P];
  Label label[B][P] = {};
  scores(0, v);
  for (int b = 0; b < B; ++b) parts([&](auto p) FCN_BLOCK_INLINE_LAMBDA { best[b][p] = part(v[b], p); });
  Label c = {};  // co in every lane, counted in a vector register (a broadcast from a general one per block costs more)
  for (int64_t co = 1; co < g.Cout; ++co) {
    scores(co, v);
    c += 1;
    for (int b = 0; b < B; ++b) {
      parts([&](auto p) FCN_BLOCK_INLINE_LAMBDA {
        const Part vp = part(v[b], p);
        Label t;
        if constexpr (kFinite && kCore) {
          t = vp > best[b][p];
        } else {  // takes_over, lane by lane: (v > best or v NaN), best not NaN
          t = ~(vp <= best[b][p]) & (best[b][p] == best[b][p]);
        }
        best[b][p] = t ? vp : best[b][p];
        label[b][p] = t ? c : label[b][p];
      });
    }
  }
  for (int b = 0; b < B; ++b) {
    if constexpr (kCore) {  // the whole block: widened to int64 in registers, one store a part
      const bool all = m + b >= whole.begin && m + b < whole.end;
      int64_t w0 = 0, w1 = SW;
      if (!all) plan.window(m + b, w0, w1);
      parts([&](auto p) FCN_BLOCK_INLINE_LAMBDA {
        const auto wide = __builtin_convertvector(label[b][p], upsample_skip::Block<int64_t, PL>);
        int64_t* o = orow + plan.column(m + b) + p * PL;
        if (all) return upsample_skip::store_block(o, wide, 0, PL);
        for (int64_t r = std::max<int64_t>(w0 - p * PL, 0); r < std::min<int64_t>(w1 - p * PL, PL); ++r) o[r] = wide[r];
      });
    } else {
      for (int64_t r = r0[b]; r < r1[b]; ++r) orow[plan.column(m + b) + r] = label[b][r / PL][r % PL];
    }
  }
}

// Block groups (label_group below) at stride 8 in float with AVX-512 builds.
#if defined(__AVX512F__)
template <int SW, typename acc_t>
constexpr bool kBlockGroups = SW == 8 && std::is_same_v<acc_t, float>;

// Whether 16-lane vectors pay on this CPU, asked at run time (the build is -march=native, but one wheel or build
// tree can meet other machines): they need 512-bit operations at full width. Measured with session 14's class
// pairs (two classes' 8 scores a vector, which block groups replaced in session 24) on 2-core VMs, upscore8 noise:
// 10% to 21% faster than 8-lane blocks on AMD family 26 (Zen 5), 6% to 18% slower on AMD family 25 (Zen 4, which
// splits each in two 256-bit halves); on an Intel Xeon with AMX (Sapphire Rapids' generation), 2% to 7% faster,
// and the groups 12% to 14% faster than the pairs there in float (session 24; the groups are unmeasured on AMD).
// So on for AMD from family 26 and for Intel with AMX-TILE (its server cores, with two 512-bit FMA units); off
// on other Intel CPUs, unmeasured.
// FCN_KERNELS_CPU_BLOCK_GROUPS=1 or 0 forces them on or off (the tests run both paths on any AVX-512 machine).
inline bool block_groups_pay() {
  if (const char* force = std::getenv("FCN_KERNELS_CPU_BLOCK_GROUPS"); force && *force) return force[0] == '1';
  static const bool pay = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    const unsigned max_leaf = a;
    const bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;    // "AuthenticAMD"
    const bool intel = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu;  // "GenuineIntel"
    if (intel) return max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1u);  // AMX-TILE
    if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return false;
    const unsigned base = (a >> 8) & 0xFu, family = base == 0xFu ? base + ((a >> 20) & 0xFFu) : base;
    return family >= 0x1Au;
  }();
  return pay;
}
#else
template <int SW, typename acc_t>
constexpr bool kBlockGroups = false;
inline bool block_groups_pay() { return false; }
#endif

// Block groups: 16 inner blocks m0 .. m0 + 15 of output row (n, i) at stride 8 (two tap blocks), one class's
// scores at one column j of the blocks in a 16-lane vector (lane l: block m0 + l). A class's two combined-row
// vectors (y[m] and y[m - 1]) are computed straight from x in RowPlan::sep_row's expression (a product, then an
// FMA an input row) and serve its 8 columns; each score is label_tile's expression (then rounded to scalar_t),
// compared in increasing class order (v > best: finite scores, no bias or skip), so the labels are label_tile's.
// The labels, a vector a column, are transposed to a block's 8 at the end. Against session 14's class pairs
// (two classes' 8 scores a vector), no interleaved rows and no merge of two argmaxes a block: 0.86x of their
// time at upscore8 on noise (float, 1 thread; session 24).
#if defined(__AVX512F__)
template <typename scalar_t, typename Plan>
FCN_BLOCK_INLINE void label_group(const Plan& plan, const scalar_t* x, int64_t n, int64_t i, int64_t m0,
                                  int64_t* orow, Range whole) {
  using Vec = upsample_skip::Block<float, 16>;
  using Label = upsample_skip::Block<int32_t, 16>;
  constexpr int SW = 8;
  const Geometry& g = plan.g;
  const Range ih = plan.inputs[i];  // at least one row (the caller's test)
  const int64_t p_out = i + g.oy, F = g.Kh + g.Kw;
  // The labels' cache lines (128 of them from first: 16 or 17 lines) asked for, for writing, while the classes
  // are scored (fetched at the stores, they stalled them: a tenth of the op in perf)
  const int64_t* first = orow + plan.column(m0);
  for (int k = 0; k < 16; ++k) __builtin_prefetch(first + 8 * k, 1, 3);
  __builtin_prefetch(first + 127, 1, 3);
  // fn(j, class c's scores at column j of the blocks)
  const auto scores = [&](int64_t c, auto&& fn) FCN_BLOCK_INLINE_LAMBDA {
    const float* a = plan.factors.data() + c * F;
    const float* b = a + g.Kh;
    const scalar_t* xc = x + g.x_index(n, c, ih.begin, m0);
    // columns m0 .. m0 + 16 (y0) and m0 - 1 .. m0 + 15 (y1) of the class's combined row
    const auto load = [&](int64_t r, int64_t shift) FCN_BLOCK_INLINE_LAMBDA {
      return (__m512)load_block<Vec>(xc + r * g.W - shift, 0, 16);
    };
    const __m512 a0 = _mm512_set1_ps(a[p_out - ih.begin * g.sh]);
    __m512 y0 = _mm512_mul_ps(load(0, 0), a0), y1 = _mm512_mul_ps(load(0, 1), a0);
    for (int64_t r = 1; r < ih.size(); ++r) {
      const __m512 ar = _mm512_set1_ps(a[p_out - (ih.begin + r) * g.sh]);
      y0 = _mm512_fmadd_ps(load(r, 0), ar, y0), y1 = _mm512_fmadd_ps(load(r, 1), ar, y1);
    }
    // Taps::inner_blocks' expression to the letter (0, then v += y * w tap by tap), so that a build that contracts
    // no multiply-add (the sanitizers' -O1) rounds it as the forward does too; explicit FMAs would not
    const Vec Y0 = (Vec)y0, Y1 = (Vec)y1;
    for (int j = 0; j < SW; ++j) {
      Vec v = {};
      v += Y0 * b[j];
      v += Y1 * b[SW + j];
      fn(j, rounded_finite_block<scalar_t>(v));
    }
  };
  Vec best[SW];
  Label label[SW];
  scores(0, [&](int j, const Vec& v) FCN_BLOCK_INLINE_LAMBDA { best[j] = v, label[j] = Label{}; });
  for (int64_t c = 1; c < g.Cout; ++c) {
    const Label cv = Label{} + static_cast<int32_t>(c);
    scores(c, [&](int j, const Vec& v) FCN_BLOCK_INLINE_LAMBDA {
      const Label t = v > best[j];
      best[j] = t ? v : best[j];
      label[j] = t ? cv : label[j];
    });
  }
  // label[j][l] is column j of block m0 + l: transposed to 16 rows of 8, widened and stored a block at a time.
  // (The maskz forms with every lane set, as half_bits': GCC 12's unmasked ones start from undefined values.)
  __m512i r[SW];
  for (int j = 0; j < SW; ++j) r[j] = (__m512i)label[j];  // a cast, not a copy through memory: label stays in registers
  const auto lo32 = [](__m512i a, __m512i b) { return _mm512_maskz_unpacklo_epi32(0xFFFF, a, b); };
  const auto hi32 = [](__m512i a, __m512i b) { return _mm512_maskz_unpackhi_epi32(0xFFFF, a, b); };
  const auto lo64 = [](__m512i a, __m512i b) { return _mm512_maskz_unpacklo_epi64(0xFF, a, b); };
  const auto hi64 = [](__m512i a, __m512i b) { return _mm512_maskz_unpackhi_epi64(0xFF, a, b); };
  const __m512i t0 = lo32(r[0], r[1]), t1 = hi32(r[0], r[1]), t2 = lo32(r[2], r[3]), t3 = hi32(r[2], r[3]);
  const __m512i t4 = lo32(r[4], r[5]), t5 = hi32(r[4], r[5]), t6 = lo32(r[6], r[7]), t7 = hi32(r[6], r[7]);
  // q[e][h], 128-bit lane k: columns 4h .. 4h + 4 of block 4k + e
  const __m512i q[4][2] = {{lo64(t0, t2), lo64(t4, t6)},
                           {hi64(t0, t2), hi64(t4, t6)},
                           {lo64(t1, t3), lo64(t5, t7)},
                           {hi64(t1, t3), hi64(t5, t7)}};
  const auto store = [&](int64_t l, __m128i lo, __m128i hi) FCN_BLOCK_INLINE_LAMBDA {
    const __m512i wide = _mm512_maskz_cvtepi32_epi64(0xFF, _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
    const int64_t m = m0 + l;
    int64_t* o = orow + plan.column(m);
    if (m >= whole.begin && m < whole.end) return _mm512_storeu_si512(o, wide);
    int64_t w0, w1;
    plan.window(m, w0, w1);
    _mm512_mask_storeu_epi64(o, static_cast<__mmask8>(((1u << w1) - 1u) & ~((1u << w0) - 1u)), wide);
  };
  for (int e = 0; e < 4; ++e) {
    store(e, _mm512_maskz_extracti32x4_epi32(0xF, q[e][0], 0), _mm512_maskz_extracti32x4_epi32(0xF, q[e][1], 0));
    store(4 + e, _mm512_maskz_extracti32x4_epi32(0xF, q[e][0], 1), _mm512_maskz_extracti32x4_epi32(0xF, q[e][1], 1));
    store(8 + e, _mm512_maskz_extracti32x4_epi32(0xF, q[e][0], 2), _mm512_maskz_extracti32x4_epi32(0xF, q[e][1], 2));
    store(12 + e, _mm512_maskz_extracti32x4_epi32(0xF, q[e][0], 3), _mm512_maskz_extracti32x4_epi32(0xF, q[e][1], 3));
  }
}
#endif

// Block m's sure label over its columns inside the crop window (a whole block: vector stores).
template <int SW, typename scalar_t>
FCN_BLOCK_INLINE void write_known(const RowPlan<SW, scalar_t>& plan, const int32_t* known, int64_t m, int64_t* orow) {
  int64_t r0, r1;
  plan.window(m, r0, r1);
  const int64_t label = known[m - plan.m_lo];
  int64_t* o = orow + plan.column(m);
  if constexpr (SW > 0) {
    if (r0 == 0 && r1 == SW) {
      using Labels = upsample_skip::Block<int64_t, SW>;
      const Labels v = Labels{} + label;
      return void(std::memcpy(o, &v, sizeof v));
    }
  }
  std::fill(o + r0, o + r1, label);
}

// The inner blocks (label_row): the core blocks, and without a skip (whose loads are whole blocks) also those
// that the crop window cuts but whose terms are all inside x.
template <typename Plan>
Range inner_blocks(const Plan& plan, bool skip) {
  const int64_t lo = std::max(plan.m_lo, plan.T - 1), hi = std::min(plan.m_hi, plan.g.W);
  return skip ? plan.core : Range{std::min(lo, hi), hi};
}

// Output row (n, i)'s labels from register blocks: the inner blocks in tiles, the edge blocks one by one.
// Inner blocks: the core blocks, and without a skip also those that the crop window cuts but whose terms are
// all inside x (FCN's 500x500 upscore8: its first and last block), scored as core blocks and stored in part.
// Block by block, each edge block's classes are one chain of dependent compares, where a tile's blocks run
// side by side. known (or nullptr): the blocks' sure labels (SureLabels), written as they are where not -1; a
// tile with more than half its blocks not sure is computed whole, then its sure blocks written from known, and
// one with fewer block by block. group_x (or nullptr): x, for the inner blocks in block groups (label_group),
// where argmax_kernel's conditions for them hold. padded: the taps read YRows' padded combined rows, so that
// without a skip every block is an inner block (the groups keep to the blocks whose columns lie inside x).
template <int SW, typename scalar_t, typename TapsT>
void label_row(const RowPlan<SW, scalar_t>& plan, const TapsT* taps, const scalar_t* bias,
               const scalar_t* skip, int64_t n, int64_t i, bool finite, int64_t* orow, const int32_t* known,
               bool padded, const scalar_t* group_x = nullptr) {
  if constexpr (upsample_skip::kRegisterBlocks<SW, at::opmath_type<scalar_t>>) {
    constexpr int kTile = std::max(1, 64 / SW);  // blocks per tile: 8 at stride 8 (4 measured 5% slower)
    const auto row = [&](auto nt, auto has_bias, auto has_skip, auto is_finite) {
      constexpr int NT = decltype(nt)::value;
      constexpr bool kB = decltype(has_bias)::value, kS = decltype(has_skip)::value, kF = decltype(is_finite)::value;
      const Range core = plan.core;
      const Range x_inner = inner_blocks(plan, kS);
      const Range inner = padded && !kS ? Range{plan.m_lo, plan.m_hi} : x_inner;
      int64_t m = plan.m_lo;
      // Core blocks [m, m + B).
      const auto core_blocks = [&](auto blocks, int64_t m) FCN_BLOCK_INLINE_LAMBDA {
        label_tile<NT, true, decltype(blocks)::value, kB, kS, kF>(plan, taps, bias, skip, n, i, m, orow, core);
      };
      using One = std::integral_constant<int, 1>;
      const auto sure = [&](int64_t m, int64_t count) {
        return known && std::all_of(known + (m - plan.m_lo), known + (m - plan.m_lo) + count,
                                    [](int32_t l) { return l >= 0; });
      };
      const auto write = [&](int64_t m, int64_t count) {
        for (int64_t e = m + count; m < e; ++m) write_known(plan, known, m, orow);
      };
      for (; m < inner.begin; ++m)
        sure(m, 1) ? write(m, 1) : label_tile<NT, false, 1, kB, kS, false>(plan, taps, bias, skip, n, i, m, orow);
#if defined(__AVX512F__)
      if constexpr (kBlockGroups<SW, at::opmath_type<scalar_t>> && kF && !kB && !kS &&
                    std::is_same_v<TapsT, Taps<SW, scalar_t, float>>)  // the separable form's taps
        if (group_x && x_inner.size() >= 16) {  // every block scored: those inside x in groups (the last
                                                // overlapping the one before), the others one by one (the
                                                // classes' rows are built for their columns only: edge_cols)
          for (; m < x_inner.begin; ++m) core_blocks(One{}, m);
          for (; m < x_inner.end; m += 16)
            label_group<scalar_t>(plan, group_x, n, i, std::min<int64_t>(m, x_inner.end - 16), orow, core);
          for (m = x_inner.end; m < inner.end; ++m) core_blocks(One{}, m);
        }
#endif
      for (; m + kTile <= inner.end; m += kTile) {
        if (sure(m, kTile)) {
          write(m, kTile);
          continue;
        }
        const int64_t unsure = known ? std::count(known + (m - plan.m_lo), known + (m - plan.m_lo) + kTile, -1) : kTile;
        if (unsure > kTile / 2) {
          core_blocks(std::integral_constant<int, kTile>{}, m);
          // The tile's sure blocks read combined-row columns not built for this row: their labels written again.
          if (unsure < kTile)
            for (int64_t b = m; b < m + kTile; ++b)
              if (known[b - plan.m_lo] >= 0) write_known(plan, known, b, orow);
        } else {  // block by block
          for (int64_t b = m; b < m + kTile; ++b)
            sure(b, 1) ? write(b, 1) : core_blocks(One{}, b);
        }
      }
      // The last inner blocks, fewer than a tile: where every block is scored (no sure labels), one more tile
      // ending at inner.end, overlapping the one before (a block's label is the same whichever tile scores it):
      // block by block, the 6 such blocks of upscore8's rows took a tenth of label_row's time (perf, noise, 1
      // thread).
      if (!known && m < inner.end && inner.end - kTile >= inner.begin) {
        core_blocks(std::integral_constant<int, kTile>{}, inner.end - kTile);
        m = inner.end;
      }
      for (; m < inner.end; ++m) sure(m, 1) ? write(m, 1) : core_blocks(One{}, m);
      for (; m < plan.m_hi; ++m)
        sure(m, 1) ? write(m, 1) : label_tile<NT, false, 1, kB, kS, false>(plan, taps, bias, skip, n, i, m, orow);
    };
    upsample_skip::with_tap_count(taps[0].n, [&](auto nt) {
      upsample_skip::with_flag(bias != nullptr, [&](auto has_bias) FCN_BLOCK_INLINE_LAMBDA {
        upsample_skip::with_flag(skip != nullptr, [&](auto has_skip) FCN_BLOCK_INLINE_LAMBDA {
          upsample_skip::with_flag(finite, [&](auto is_finite) FCN_BLOCK_INLINE_LAMBDA {
            row(nt, has_bias, has_skip, is_finite);
          });
        });
      });
    });
  }
}

// Direct path: one output row (n, i) per step, from register blocks (label_row) where they apply, else
// the classes' rows accumulated in turn. scores_finite(): whether no score can be NaN (scores_stay_finite),
// asked only where the register blocks, which use it, apply (it is a pass over the inputs).
template <int SW, typename scalar_t, typename Finite>
void argmax_kernel(Stride<SW> sw, const Geometry& g, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                   const scalar_t* skip, int64_t* out, Finite&& scores_finite) {
  using acc_t = at::opmath_type<scalar_t>;
  RowPlan<SW, scalar_t> plan_(sw, g, w);
  const bool finite = plan_.register_blocks && scores_finite();
  plan_.use_separable(w, [&] { return finite; });  // as upsample_skip's forward does
  const RowPlan<SW, scalar_t>& plan = plan_;
  const SureLabels<SW, scalar_t> sure(plan, x, bias != nullptr || skip != nullptr);
  // Block groups where every block of a row is scored (label_group's conditions: the separable form with two tap
  // blocks, finite scores, no bias or skip, and a group's 16 blocks inside x), on CPUs where they pay
  const bool groups = kBlockGroups<SW, acc_t> && plan.separable() && plan.T == 2 && finite && !bias && !skip &&
                      g.Cout > 1 && inner_blocks(plan, false).size() >= 16 && block_groups_pay();
  parallel_chunks(g.N * g.Ho, grain_for(g.Cout * plan.work()), [&](auto next) {
    // The classes' combined rows, padded so that every block reads inside them (YRows)
    const YRows yrows(plan);
    std::vector<acc_t> acc(plan.acc_size()), ybuf = yrows.template buffer<acc_t>(plan.separable() ? g.Cout : 0);
    const auto y_of = [&](int64_t co) { return yrows.row(ybuf, co); };
    std::vector<Taps<SW, scalar_t>> taps(g.Cout);
    std::vector<Taps<SW, scalar_t, acc_t>> sep(plan.separable() ? g.Cout : 0);
    RunningArgmax<acc_t> run(g.Wo);
    typename SureLabels<SW, scalar_t>::Rows known;
    // The columns of the classes' own combined rows that the edge blocks take, where the groups serve the inner
    // blocks (from x): left of the inner blocks and right of them.
    Range edge_cols[2] = {};
    if constexpr (kBlockGroups<SW, acc_t>) {
      if (groups) {
        const Range inner = inner_blocks(plan, false);
        // The classes' taps over their rows in ybuf, which no row changes: set once here.
        for (int64_t co = 0; co < g.Cout; ++co) plan.sep_put(co, y_of(co), sep[co]);
        if (inner.begin > plan.m_lo)
          edge_cols[0] = {std::max<int64_t>(0, plan.m_lo - plan.T + 1), std::min(g.W, inner.begin)};
        if (plan.m_hi > inner.end)
          edge_cols[1] = {std::max<int64_t>(0, inner.end - plan.T + 1), std::min(g.W, plan.m_hi)};
      }
    }
    for (int64_t begin, end; next(begin, end);) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t i = row % g.Ho, n = row / g.Ho;
        if (plan.separable()) {
          const int32_t* labels = nullptr;
          if (sure.enabled() && sure.row(n, i, known).active) {
            if (known.all) {  // no class's combined row needed
              for (int64_t m = plan.m_lo; m < plan.m_hi; ++m)
                write_known(plan, known.label.data(), m, out + row * g.Wo);
              continue;
            }
            labels = known.label.data();
          }
          const bool row_groups = groups && !labels && plan.inputs[i].size() > 0;
          if (labels) {  // the combined rows where blocks are not sure only
            for (int64_t co = 0; co < g.Cout; ++co) {
              acc_t* y = y_of(co);
              for (const Range& c : known.columns) plan.sep_row(x, n, co, i, y, c.begin, c.end);
              plan.sep_put(co, y, sep[co]);
            }
          } else if (row_groups) {  // the classes' own rows where the edge blocks take them
            for (const Range& c : edge_cols)
              for (int64_t co = 0; co < g.Cout && c.size() > 0; ++co)
                plan.sep_row(x, n, co, i, y_of(co), c.begin, c.end);
          } else {
            for (int64_t co = 0; co < g.Cout; ++co) plan.sep_taps(x, n, co, i, y_of(co), sep[co]);
          }
          // Block groups where every block is scored (noise, boundaries); not where some blocks' labels are sure
          // (regions: the class pairs before them were 7-15% slower there, measured; the groups unmeasured).
          label_row(plan, sep.data(), bias, skip, n, i, finite, out + row * g.Wo, labels, true,
                    row_groups ? x : nullptr);
          continue;
        }
        if (plan.taps(x, n, 0, i, taps[0])) {
          for (int64_t co = 1; co < g.Cout; ++co) plan.taps(x, n, co, i, taps[co]);
          label_row(plan, taps.data(), bias, skip, n, i, finite, out + row * g.Wo, nullptr, false);
          continue;
        }
        for (int64_t co = 0; co < g.Cout; ++co) {
          const acc_t* a = plan.row(x, n, co, i, acc.data());
          const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
          if (skip) {
            const scalar_t* srow = skip + g.skip_index(n, co, i, 0);
            for (int64_t j = 0; j < g.Wo; ++j)
              run.take(j, int32_t(co), rounded<scalar_t>(a[j] + b + static_cast<acc_t>(srow[j])));
          } else {
            for (int64_t j = 0; j < g.Wo; ++j) run.take(j, int32_t(co), rounded<scalar_t>(a[j] + b));
          }
        }
        run.store(0, g.Wo, out + row * g.Wo);
      }
    }
  });
}

// GEMM path: one block row bi of one image per task, its groups' GEMMs in turn (as upsample_skip's
// forward_gemm_kernel runs them).
template <typename scalar_t>
void argmax_gemm_kernel(const Geometry& g, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                        const scalar_t* skip, int64_t* out, const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t kdim = cin_g * ceil_div(g.Kh, g.sh) * ceil_div(g.Kw, g.sw), cols = cout_g * g.sh * g.sw;
  const auto B = weight_blocks(g, w, acc_options);
  const int64_t bi_lo = floor_div(g.oy, g.sh), bi_hi = ceil_div(g.oy + g.Ho, g.sh);
  const int64_t bj_lo = floor_div(g.ox, g.sw), bj_hi = ceil_div(g.ox + g.Wo, g.sw), nb = bj_hi - bj_lo;
  parallel_for(0, g.N * (bi_hi - bi_lo), 1, [&](int64_t begin, int64_t end) {
    auto A = at::empty({nb, kdim}, acc_options), C = at::empty({nb, cols}, acc_options);
    acc_t* a = A.mutable_data_ptr<acc_t>();
    const acc_t* c = C.const_data_ptr<acc_t>();
    RunningArgmax<acc_t> run(g.sh * g.Wo);  // rows rh of the block row
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = bi_lo + task % (bi_hi - bi_lo), n = task / (bi_hi - bi_lo);
      const int64_t rh_lo = std::max<int64_t>(0, g.oy - bi * g.sh), rh_hi = std::min(g.sh, g.oy + g.Ho - bi * g.sh);
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        gather_block_row(g, x, n, grp, bi, bj_lo, bj_hi, a);
        at::mm_out(C, A, B[grp]);
        for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
          const int64_t co = grp * cout_g + co_l;
          const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
          for (int64_t rh = rh_lo; rh < rh_hi; ++rh) {
            const int64_t i = bi * g.sh + rh - g.oy;
            const scalar_t* srow = skip ? skip + g.skip_index(n, co, i, 0) : nullptr;
            for (int64_t bj = bj_lo; bj < bj_hi; ++bj) {
              const acc_t* cb = c + (bj - bj_lo) * cols + (co_l * g.sh + rh) * g.sw;
              const int64_t j0 = bj * g.sw - g.ox;
              const int64_t r0 = std::max<int64_t>(0, -j0), r1 = std::min<int64_t>(g.sw, g.Wo - j0);
              for (int64_t r = r0; r < r1; ++r) {
                acc_t v = cb[r] + b;
                if (srow) v += static_cast<acc_t>(srow[j0 + r]);
                run.take(rh * g.Wo + j0 + r, int32_t(co), rounded<scalar_t>(v));
              }
            }
          }
        }
      }
      for (int64_t rh = rh_lo; rh < rh_hi; ++rh)
        run.store(rh * g.Wo, g.Wo, out + (n * g.Ho + bi * g.sh + rh - g.oy) * g.Wo);
    }
  });
}

// The CPU kernel behind the op's entry point (csrc/host/upsample_argmax.h).
struct CpuKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;

  static void forward(const Forward& p) {
    run_forward<Result::kLabels>(p, p.labels, [](const auto&... a) { argmax_gemm_kernel(a...); },
                                 [&](const auto&... a) { argmax_kernel(a..., [&] { return scores_stay_finite(p); }); });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) { register_kernels<CpuKernels>(m); }

}  // namespace upsample_argmax
}  // namespace fcn_kernels
