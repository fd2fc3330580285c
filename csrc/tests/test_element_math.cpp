// ctest: what the CUDA kernels compute, against naive loops, in double, on random small problems:
// for upsample_skip a scatter-form transposed convolution and crop (and upsample_argmax's label_at
// against torch.argmax's rule written out); for rarefied_conv2d the
// textbook dilated convolution over a zero-padded input. The forward and input-gradient passes are
// replayed as csrc/cuda/plane_kernel.cuh runs them (runs of V columns, weight slabs in a tile or
// read in place, 32- or 64-bit in-plane offsets, every read checked against its plane's extent);
// the weight gradient as csrc/cuda/weight_grad_kernel.cuh reduces it (chunks of rows, taps per
// thread, lanes per tap).
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <random>
#include <vector>

#include "index/rarefied_conv2d.h"
#include "index/upsample_argmax.h"
#include "index/upsample_skip.h"
#include "tests/harness.h"

static long compared = 0;

// A read of p[k], k checked against the extent the kernel may touch (a plane's input channels, a
// tile): reads for the columns a last run drops must stay in bounds too.
struct Load {
  const double* p;
  int64_t n;
  double operator()(int64_t k) const {
    if ((k < 0 || k >= n) && failures++ < 10) std::printf("FAIL read %lld outside [0, %lld)\n", (long long)k, (long long)n);
    return k >= 0 && k < n ? p[k] : 0.0;
  }
};

// Host replay of plane_kernel: the same op calls in the same order, the tile refilled per slab (or,
// unshared, the weights read in place in one slab). `w_size`: the weight's elements.
template <int V, typename I, typename Op>
static std::vector<double> replay(const Op& op, const double* in, const double* w, int64_t w_size,
                                  const double* bias, const double* skip, I slab, bool shared) {
  std::vector<double> out(op.planes() * op.rows() * op.cols(), -1e300), tile;
  const I runs = fcn_kernels::run_count<V>(op.rows(), op.cols());
  const int64_t in_extent = int64_t(op.reduce()) * op.in_rows * op.in_cols;
  for (int64_t plane = 0; plane < op.planes(); ++plane) {
      std::vector<std::array<double, V>> acc(runs);
      for (auto& a : acc) a.fill(0.0);
      const I step = shared ? slab : op.reduce();
      for (I c0 = 0; c0 < op.reduce(); c0 += step) {
        const I cn = std::min<I>(step, op.reduce() - c0);
        const int64_t wbase = op.weight_base(plane) + c0 * op.weight_stride();
        Load t{w + wbase, std::min<int64_t>((cn - 1) * op.weight_stride() + op.taps(), w_size - wbase)};
        I tstride = I(op.weight_stride());
        if (shared) {
          tile.assign(cn * op.taps(), 0.0);
          for (I k = 0; k < cn * op.taps(); ++k)
            tile[k] = w[op.weight_base(plane) + (c0 + k / op.taps()) * op.weight_stride() + k % op.taps()];
          t = Load{tile.data(), int64_t(tile.size())};
          tstride = op.taps();
        }
        for (I r = 0; r < runs; ++r) {
          I i, j0;
          fcn_kernels::run_start<V>(op.cols(), r, i, j0);
          double(&a)[V] = *reinterpret_cast<double(*)[V]>(acc[r].data());
          op.template accumulate<V>(Load{in + op.in_offset(plane), in_extent}, t, tstride, c0, cn, i, j0, a);
        }
      }
      for (I r = 0; r < runs; ++r) {
        I i, j0;
        fcn_kernels::run_start<V>(op.cols(), r, i, j0);
        for (I v = 0; v < std::min<I>(V, op.cols() - j0); ++v) {
          double y = acc[r][v];
          if (bias) y += bias[plane % op.out_channels()];
          if (skip) y += skip[op.skip_offset(plane, i, j0 + v)];
          out[(plane * op.rows() + i) * op.cols() + j0 + v] = y;
        }
      }
    }
  return out;
}

// Host replay of weight_grad_kernel with `splits` chunks and blocks of `threads` threads.
template <typename Op>
static std::vector<double> replay_weight_grad(const Op& op, const std::vector<double>& x,
                                              const std::vector<double>& go, int64_t splits, int64_t threads) {
  const int64_t taps = op.taps(), pairs = op.pairs();
  const int64_t tt = fcn_kernels::tap_threads(taps, threads), lanes = fcn_kernels::tap_lanes(taps, threads);
  std::vector<double> ws(splits * pairs * taps), gw(pairs * taps, 0.0);
  for (int64_t s = 0; s < splits; ++s)
    for (int64_t pair = 0; pair < pairs; ++pair) {
      const auto rows = fcn_kernels::split_rows(op.images() * op.term_rows(), splits, s);
      for (int64_t t0 = 0; t0 < taps; t0 += tt)
        for (int64_t tap = t0; tap < std::min(taps, t0 + tt); ++tap) {
          double sum = 0;
          for (int64_t lane = 0; lane < lanes; ++lane)
            sum += fcn_kernels::weight_grad_partial<double>(op, Load{x.data(), int64_t(x.size())},
                                                              Load{go.data(), int64_t(go.size())}, pair, tap, lane, lanes, rows);
          ws[(s * pairs + pair) * taps + tap] = sum;
        }
    }
  for (int64_t e = 0; e < pairs * taps; ++e)
    for (int64_t s = 0; s < splits; ++s) gw[e] += ws[s * pairs * taps + e];
  return gw;
}

static int64_t random_threads(std::mt19937_64& rng) {
  const int64_t choices[] = {1, 3, 8, 32, 256};
  return choices[std::uniform_int_distribution<int>(0, 4)(rng)];
}

// upsample_argmax's operands for label_at: reads checked against the plane's extents (x, weight) and
// the tensors' (bias, skip); an absent bias or skip is a null pointer, as the CUDA kernel gets it, and
// any read of it fails. Scores rounded to multiples of `quantum` (when > 0) so that rounded scores tie
// often.
struct ArgmaxIn {
  using Acc = double;
  const double *xp, *wp, *bp, *sp;
  int64_t x_extent, w_extent, b_extent, s_extent;
  bool has_bias, has_skip;
  double quantum;
  Load x(int64_t base) const { return Load{xp + base, x_extent}; }
  Load w(int64_t base) const { return Load{wp + base, w_extent}; }
  double bias(int64_t co) const { return Load{bp, bp ? b_extent : 0}(co); }
  double skip(int64_t k) const { return Load{sp, sp ? s_extent : 0}(k); }
  double round(double v) const { return quantum > 0 ? std::round(v / quantum) * quantum : v; }
};

// torch.argmax written out: the first NaN, else the first maximum.
static int64_t naive_argmax(const std::vector<double>& v) {
  int64_t best = 0;
  for (int64_t c = 0; c < int64_t(v.size()); ++c) {
    if (std::isnan(v[c])) return c;
    if (v[c] > v[best]) best = c;
  }
  return best;
}

// label_at over every pixel, in the index type I, against naive_argmax of `scores(n, co, i, j)`.
template <typename I, typename Scores>
static void check_labels(const fcn_kernels::upsample_skip::Geometry& g, const ArgmaxIn& in_proto, const Scores& scores,
                         int trial) {
  const auto op = fcn_kernels::upsample_skip::ForwardPlane<I>::make(g);
  ArgmaxIn in = in_proto;
  in.x_extent = int64_t(op.reduce()) * op.in_rows * op.in_cols;
  in.w_extent = (int64_t(op.reduce()) - 1) * op.weight_stride() + op.taps();
  in.b_extent = g.Cout;
  in.s_extent = g.N * g.Cout * g.Hs * g.Ws;
  std::vector<double> v(g.Cout);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t i = 0; i < g.Ho; ++i)
      for (int64_t j = 0; j < g.Wo; ++j) {
        for (int64_t co = 0; co < g.Cout; ++co) v[co] = in.round(scores(n, co, i, j));
        const int64_t got = fcn_kernels::upsample_argmax::label_at(op, in, n, I(i), I(j)), want = naive_argmax(v);
        ++compared;
        if (got != want && failures++ < 10)
          std::printf("FAIL upsample_argmax trial %d at (%lld, %lld, %lld): %lld vs %lld\n", trial, (long long)n,
                      (long long)i, (long long)j, (long long)got, (long long)want);
      }
}

// One replay with V, the index type, the slab and the tile placement drawn at random.
template <template <typename> class Op, typename Geometry>
static std::vector<double> replay_random(std::mt19937_64& rng, const Geometry& g, const double* in,
                                         const std::vector<double>& w, const double* bias, const double* skip) {
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int v = 1 << uni(0, 3);
  const bool narrow = uni(0, 1), shared = uni(0, 3) != 0;
  const int64_t slab = uni(1, int(Op<int64_t>::make(g).reduce()));
  auto go = [&](auto vconst) -> std::vector<double> {
    constexpr int V = decltype(vconst)::value;
    if (narrow)
      return replay<V, int32_t>(Op<int32_t>::make(g), in, w.data(), w.size(), bias, skip, int32_t(slab), shared);
    return replay<V, int64_t>(Op<int64_t>::make(g), in, w.data(), w.size(), bias, skip, slab, shared);
  };
  switch (v) {
    case 1: return go(std::integral_constant<int, 1>{});
    case 2: return go(std::integral_constant<int, 2>{});
    case 4: return go(std::integral_constant<int, 4>{});
    default: return go(std::integral_constant<int, 8>{});
  }
}

static void check(double got, double want, const char* what, int trial) {
  ++compared;
  if (std::fabs(got - want) > 1e-9 * (1 + std::fabs(want)) && failures++ < 10)
    std::printf("FAIL %s trial %d: %.17g vs %.17g\n", what, trial, got, want);
}

// f(n, ci, co, co_l, ih, iw, kh, kw) for every (input, tap) product of upsample_skip's transposed
// convolution (co the output channel, co_l its index in the group), always in this order.
template <typename F>
static void for_each_product(const fcn_kernels::upsample_skip::Geometry& g, F&& f) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t ci = 0; ci < g.Cin; ++ci)
      for (int64_t co_l = 0; co_l < cout_g; ++co_l)
        for (int64_t ih = 0; ih < g.H; ++ih)
          for (int64_t iw = 0; iw < g.W; ++iw)
            for (int64_t kh = 0; kh < g.Kh; ++kh)
              for (int64_t kw = 0; kw < g.Kw; ++kw) f(n, ci, (ci / cin_g) * cout_g + co_l, co_l, ih, iw, kh, kw);
}

// 1-3 groups of 1-3 input and 1-3 output channels each, a batch of 1-2 (drawn in this order).
template <typename Geometry>
static Geometry random_channels(Draw<int>& uni) {
  Geometry g{};
  g.groups = uni(1, 3);
  const int64_t cin_g = uni(1, 3), cout_g = uni(1, 3);
  g.N = uni(1, 2); g.Cin = cin_g * g.groups; g.Cout = cout_g * g.groups;
  return g;
}

// A trial's input gradient (the plane op InputGrad) and weight gradient (the split reduction of
// WeightGrad) as the CUDA kernels compute them, against the naive gx and gw.
template <template <typename> class InputGrad, typename WeightGrad, typename Geometry>
static void check_gradients(Draw<int>& uni, const Geometry& g, const std::vector<double>& x,
                            const std::vector<double>& w, const std::vector<double>& go,
                            const std::vector<double>& gx, const std::vector<double>& gw, const std::string& op,
                            int trial) {
  const std::string input = op + " input gradient", weight = op + " weight gradient";
  const auto gx_plane = replay_random<InputGrad>(uni.rng, g, go.data(), w, nullptr, nullptr);
  for (size_t k = 0; k < gx.size(); ++k) check(gx_plane[k], gx[k], input.c_str(), trial);
  const auto gw_split = replay_weight_grad(WeightGrad{g}, x, go, uni(1, 5), random_threads(uni.rng));
  for (size_t k = 0; k < gw.size(); ++k) check(gw_split[k], gw[k], weight.c_str(), trial);
}

static void test_upsample_skip(std::mt19937_64& rng) {
  using namespace fcn_kernels::upsample_skip;
  Draw<int> uni{rng};
  for (int trial = 0; trial < 400; ++trial) {
    Geometry g = random_channels<Geometry>(uni);
    const int64_t cout_g = g.cout_per_group();
    g.H = uni(1, 5); g.W = uni(1, 5); g.sh = uni(1, 8); g.sw = uni(1, 8);
    g.Kh = uni(1, 2 * g.sh + 2); g.Kw = uni(1, 2 * g.sw + 2);
    const int64_t Hf = full_size(g.H, g.sh, g.Kh), Wf = full_size(g.W, g.sw, g.Kw);
    g.oy = uni(0, Hf - 1); g.ox = uni(0, Wf - 1);
    g.Ho = uni(0, Hf - g.oy); g.Wo = uni(0, Wf - g.ox);
    std::vector<double> x(g.N * g.Cin * g.H * g.W), w(g.Cin * cout_g * g.Kh * g.Kw),
        go(g.N * g.Cout * g.Ho * g.Wo);
    for (auto* v : {&x, &w, &go})
      for (double& e : *v) e = uni.normal();
    // naive: scatter every (input, tap) product into the full output, then crop
    std::vector<double> full(g.N * g.Cout * Hf * Wf, 0.0), gx(x.size(), 0.0), gw(w.size(), 0.0);
    for_each_product(g, [&](int64_t n, int64_t ci, int64_t co, int64_t co_l, int64_t ih, int64_t iw, int64_t kh,
                            int64_t kw) {
      const int64_t p = ih * g.sh + kh, q = iw * g.sw + kw;
      const double xv = x[g.x_index(n, ci, ih, iw)], wv = w[g.w_index(ci, co_l, kh, kw)];
      full[((n * g.Cout + co) * Hf + p) * Wf + q] += xv * wv;
      const int64_t i = p - g.oy, j = q - g.ox;
      if (i >= 0 && i < g.Ho && j >= 0 && j < g.Wo) {
        const double gv = go[g.out_index(n, co, i, j)];
        gx[g.x_index(n, ci, ih, iw)] += gv * wv;
        gw[g.w_index(ci, co_l, kh, kw)] += gv * xv;
      }
    });
    const bool with_bias = uni(0, 1), with_skip = uni(0, 1);
    std::vector<double> bias(g.Cout), skip;
    for (double& e : bias) e = uni.normal();
    if (with_skip) {
      g.sy = uni(0, 2); g.sx = uni(0, 2); g.Hs = g.Ho + g.sy + uni(0, 2); g.Ws = g.Wo + g.sx + uni(0, 2);
      skip.resize(g.N * g.Cout * g.Hs * g.Ws);
      for (double& e : skip) e = uni.normal();
    }
    const auto y = replay_random<ForwardPlane>(rng, g, x.data(), w, with_bias ? bias.data() : nullptr,
                                               with_skip ? skip.data() : nullptr);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t co = 0; co < g.Cout; ++co)
        for (int64_t i = 0; i < g.Ho; ++i)
          for (int64_t j = 0; j < g.Wo; ++j)
            check(y[g.out_index(n, co, i, j)],
                  full[((n * g.Cout + co) * Hf + i + g.oy) * Wf + j + g.ox] + (with_bias ? bias[co] : 0.0) +
                      (with_skip ? skip[g.skip_index(n, co, i, j)] : 0.0),
                  "upsample_skip forward", trial);
    // upsample_argmax on the same problem: exact ties after a coarse rounding, NaN classes and pixels
    std::vector<double> bias_a = bias, skip_a = skip;
    if (uni(0, 3) == 0) bias_a[uni(0, int(g.Cout) - 1)] = NAN;
    if (with_skip && !skip_a.empty() && uni(0, 1)) skip_a[uni(0, int(skip_a.size()) - 1)] = NAN;
    const ArgmaxIn in{x.data(), w.data(), with_bias ? bias_a.data() : nullptr, with_skip ? skip_a.data() : nullptr,
                      0, 0, 0, 0, with_bias, with_skip, uni(0, 1) ? 0.0 : 0.5 * uni(1, 4)};
    auto scores = [&](int64_t n, int64_t co, int64_t i, int64_t j) {
      return full[((n * g.Cout + co) * Hf + i + g.oy) * Wf + j + g.ox] + (with_bias ? bias_a[co] : 0.0) +
             (with_skip ? skip_a[g.skip_index(n, co, i, j)] : 0.0);
    };
    if (uni(0, 1)) check_labels<int32_t>(g, in, scores, trial);
    else check_labels<int64_t>(g, in, scores, trial);
    check_gradients<InputGradPlane, WeightGradOp>(uni, g, x, w, go, gx, gw, "upsample_skip", trial);
  }
}

// The uncropped transposed convolution of x by w, naively scattered: (N, Cout, Hf, Wf).
static std::vector<double> naive_full(const fcn_kernels::upsample_skip::Geometry& g, const std::vector<double>& x,
                                      const std::vector<double>& w) {
  using fcn_kernels::upsample_skip::full_size;
  const int64_t Hf = full_size(g.H, g.sh, g.Kh), Wf = full_size(g.W, g.sw, g.Kw);
  std::vector<double> full(g.N * g.Cout * Hf * Wf, 0.0);
  for_each_product(g, [&](int64_t n, int64_t ci, int64_t co, int64_t co_l, int64_t ih, int64_t iw, int64_t kh,
                          int64_t kw) {
    full[((n * g.Cout + co) * Hf + ih * g.sh + kh) * Wf + iw * g.sw + kw] +=
        x[g.x_index(n, ci, ih, iw)] * w[g.w_index(ci, co_l, kh, kw)];
  });
  return full;
}

// The doctor's upsample cases (fcn_kernels/doctor.py UPSAMPLE) through label_at in both index types,
// every read checked against its tensor. The dense one has no bias: there the first H200 run's 16-bit
// CUDA upsample_argmax faulted, the compiler having hoisted the load of bias(0) above the has_bias test
// (fixed in csrc/cuda/common.cuh, ldg). The source's reads are in bounds and skip the absent operand,
// which this pins; the hoisting itself shows only on a GPU (tools/argmax_probe.py).
static void test_doctor_argmax_cases(std::mt19937_64& rng) {
  using namespace fcn_kernels::upsample_skip;
  struct Case { int64_t N, Cin, H, W, cout_g, K, stride, groups, oy, ox, Ho, Wo, Hs, Ws, sy, sx; bool bias; };
  const Case cases[] = {
      {2, 3, 5, 7, 1, 4, 2, 3, 1, 2, 9, 13, 12, 15, 2, 1, true},  // depthwise s2 k4, skip
      {1, 4, 3, 2, 3, 9, 4, 2, 5, 3, 12, 10, 0, 0, 0, 0, true},   // grouped s4 k9, crop at the end
      {1, 16, 3, 4, 16, 4, 2, 1, 0, 0, 8, 10, 9, 10, 1, 0, false},  // dense 16->16 s2 k4, skip, no bias
  };
  std::normal_distribution<double> normal;
  int trial = 1000;
  for (const Case& c : cases) {
    Geometry g{};
    g.N = c.N; g.Cin = c.Cin; g.H = c.H; g.W = c.W; g.groups = c.groups; g.Cout = c.cout_g * c.groups;
    g.Kh = g.Kw = c.K; g.sh = g.sw = c.stride; g.oy = c.oy; g.ox = c.ox; g.Ho = c.Ho; g.Wo = c.Wo;
    g.Hs = c.Hs; g.Ws = c.Ws; g.sy = c.sy; g.sx = c.sx;
    const bool with_skip = c.Hs > 0;
    std::vector<double> x(g.N * g.Cin * g.H * g.W), w(g.Cin * c.cout_g * g.Kh * g.Kw), bias(c.bias ? g.Cout : 0),
        skip(g.N * g.Cout * g.Hs * g.Ws);
    for (auto* v : {&x, &w, &bias, &skip})
      for (double& e : *v) e = normal(rng);
    const auto full = naive_full(g, x, w);
    const int64_t Hf = full_size(g.H, g.sh, g.Kh), Wf = full_size(g.W, g.sw, g.Kw);
    auto scores = [&](int64_t n, int64_t co, int64_t i, int64_t j) {
      return full[((n * g.Cout + co) * Hf + i + g.oy) * Wf + j + g.ox] + (c.bias ? bias[co] : 0.0) +
             (with_skip ? skip[g.skip_index(n, co, i, j)] : 0.0);
    };
    const ArgmaxIn in{x.data(), w.data(), c.bias ? bias.data() : nullptr, with_skip ? skip.data() : nullptr,
                      0, 0, 0, 0, c.bias, with_skip, 0.0};
    check_labels<int32_t>(g, in, scores, trial);
    check_labels<int64_t>(g, in, scores, trial++);
  }
}

static void test_rarefied_conv2d(std::mt19937_64& rng) {
  using namespace fcn_kernels::rarefied_conv2d;
  Draw<int> uni{rng};
  for (int trial = 0; trial < 400; ++trial) {
    Geometry g = random_channels<Geometry>(uni);
    const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
    g.Kh = uni(1, 4); g.Kw = uni(1, 4); g.rh = uni(1, 5); g.rw = uni(1, 5); g.ph = uni(0, 6); g.pw = uni(0, 6);
    g.H = std::max<int64_t>(uni(1, 9), (g.Kh - 1) * g.rh + 1 - 2 * g.ph);
    g.W = std::max<int64_t>(uni(1, 9), (g.Kw - 1) * g.rw + 1 - 2 * g.pw);
    g.Ho = out_size(g.H, g.ph, g.Kh, g.rh); g.Wo = out_size(g.W, g.pw, g.Kw, g.rw);
    std::vector<double> x(g.N * g.Cin * g.H * g.W), w(g.Cout * cin_g * g.Kh * g.Kw), go(g.N * g.Cout * g.Ho * g.Wo);
    for (auto* v : {&x, &w, &go})
      for (double& e : *v) e = uni.normal();
    std::vector<double> out(go.size(), 0.0), gx(x.size(), 0.0), gw(w.size(), 0.0);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t co = 0; co < g.Cout; ++co)
        for (int64_t i = 0; i < g.Ho; ++i)
          for (int64_t j = 0; j < g.Wo; ++j)
            for (int64_t ci_l = 0; ci_l < cin_g; ++ci_l)
              for (int64_t a = 0; a < g.Kh; ++a)
                for (int64_t b = 0; b < g.Kw; ++b) {
                  const int64_t ih = i - g.ph + a * g.rh, iw = j - g.pw + b * g.rw;
                  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;  // zero padding
                  const int64_t ci = (co / cout_g) * cin_g + ci_l;
                  const double xv = x[g.x_index(n, ci, ih, iw)], wv = w[g.w_index(co, ci_l, a, b)];
                  const double gv = go[g.out_index(n, co, i, j)];
                  out[g.out_index(n, co, i, j)] += xv * wv;
                  gx[g.x_index(n, ci, ih, iw)] += gv * wv;
                  gw[g.w_index(co, ci_l, a, b)] += gv * xv;
                }
    const bool with_bias = uni(0, 1);
    std::vector<double> bias(g.Cout);
    for (double& e : bias) e = uni.normal();
    const auto y = replay_random<ForwardPlane>(rng, g, x.data(), w, with_bias ? bias.data() : nullptr,
                                               nullptr);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t co = 0; co < g.Cout; ++co)
        for (int64_t i = 0; i < g.Ho; ++i)
          for (int64_t j = 0; j < g.Wo; ++j)
            check(y[g.out_index(n, co, i, j)], out[g.out_index(n, co, i, j)] + (with_bias ? bias[co] : 0.0),
                  "rarefied forward", trial);
    check_gradients<InputGradPlane, WeightGradOp>(uni, g, x, w, go, gx, gw, "rarefied", trial);
  }
}

int main() {
  std::mt19937_64 rng(12345);
  test_upsample_skip(rng);
  test_doctor_argmax_cases(rng);
  test_rarefied_conv2d(rng);
  return report(compared, "elements compared");
}
