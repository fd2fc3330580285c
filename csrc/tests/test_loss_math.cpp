// ctest: the fused losses' shared math (csrc/index/upsample_logsumexp.h, csrc/index/interpolate.h,
// csrc/cpu/exp.h) against brute force. upsample_logsumexp's backward bands, for every small stride, kernel,
// size and crop window: the owned output rows partition [0, Ho); each (input row, output row) pair a tap
// joins is visited exactly once, by the band owning the input row, among the rows it recomputes; a band
// recomputes at most a quarter more rows than its share plus one kernel's overlap. interpolate_logsumexp's
// bands, for every small input and output size (PyTorch's taps, up and down, align_corners or not): each
// (output row, tap row) pair is visited exactly once, by the band owning the tap row. The vectorizable exp:
// within 2**-22 of std::exp on its whole domain, 0 below it, NaN for NaN. The CUDA backwards' gathers: the
// output coordinates of a flat score offset; the bias gradient's split reduction (BiasGradOp) sums each class
// over every pixel once; an input row's tap weights, summed over rows_reaching its row, are all its weights;
// the one-pass log-sum-exp (index/online_lse.h) is the CPU kernels' two-pass one, NaN where it is NaN, for
// every order of finite, infinite and NaN scores.
#include <cmath>
#include <cstdio>
#include <vector>

#include "cpu/exp.h"
#include "index/interpolate.h"
#include "index/online_lse.h"
#include "index/upsample_logsumexp.h"

using namespace fcn_kernels;
using namespace fcn_kernels::upsample_logsumexp;

static int failures = 0;

static void expect(bool ok, const char* what, long a, long b, long c, long d) {
  if (!ok && failures++ < 20) std::printf("FAIL %s (%ld %ld %ld %ld)\n", what, a, b, c, d);
}

static long check_bands(const Geometry& g) {
  long checks = 0;
  std::vector<int> owners(g.Ho, 0), visits;
  const long nb = bands_per_image(g);
  expect(nb >= 1 && band_inputs(g, nb - 1).end == g.H && band_inputs(g, 0).begin == 0, "bands cover x", g.H, g.Kh,
         g.sh, nb);
  for (long b = 0; b < nb; ++b) {
    const Range in = band_inputs(g, b), own = band_owned(g, b), rows = band_rows_computed(g, b);
    expect(in.size() >= 1 && (b == 0 || in.begin == band_inputs(g, b - 1).end), "bands are consecutive", b, in.begin,
           in.end, g.H);
    for (long i = own.begin; i < own.end; ++i) {
      ++owners[i];
      expect(i >= rows.begin && i < rows.end, "an owned row is recomputed", b, i, rows.begin, rows.end);
    }
    // the pairs (ih, i) of this band's inputs: visited through band_inputs_of_row from the computed rows
    visits.assign(g.H * g.Ho, 0);
    for (long i = rows.begin; i < rows.end; ++i) {
      const Range ihs = band_inputs_of_row(g, b, i);
      for (long ih = ihs.begin; ih < ihs.end; ++ih) ++visits[ih * g.Ho + i];
    }
    for (long ih = 0; ih < g.H; ++ih)
      for (long i = 0; i < g.Ho; ++i) {
        const long kh = i + g.oy - ih * g.sh;
        const bool joined = kh >= 0 && kh < g.Kh && ih >= in.begin && ih < in.end;
        expect(visits[ih * g.Ho + i] == (joined ? 1 : 0), "each joined pair once", b, ih, i, kh);
        ++checks;
      }
    const long share = own.size(), extra = rows.size() - share;
    expect(extra <= (share + 3) / 4 + g.Kh, "recomputed rows", b, share, rows.size(), g.Kh);
  }
  for (long i = 0; i < g.Ho; ++i) expect(owners[i] == 1, "one owner per output row", i, owners[i], g.Ho, nb);
  const long chunks = chunk_count(g), partial = g.Kh * ceil_div(g.Kw, g.sw) * g.sw;
  expect(chunks >= 1 && chunks <= kMaxChunks && chunks <= g.N * nb && (chunks == 1 || chunks * partial <= kMaxPartials),
         "runs of bands", chunks, g.N * nb, partial, 0);
  return checks;
}

// PyTorch's row taps (ATen/native/UpSample.h, float), written out: the host layer calls PyTorch's own.
static void torch_taps(long in, long out, bool align_corners, std::vector<int64_t>& i0, std::vector<int64_t>& i1,
                       std::vector<float>& l0, std::vector<float>& l1) {
  i0.resize(out), i1.resize(out), l0.resize(out), l1.resize(out);
  const float scale = align_corners ? (out > 1 ? float(in - 1) / float(out - 1) : 0.0f) : float(in) / float(out);
  for (long i = 0; i < out; ++i) {
    if (in == out) {
      i0[i] = i1[i] = i, l0[i] = 1, l1[i] = 0;
      continue;
    }
    float src = align_corners ? scale * float(i) : scale * (float(i) + 0.5f) - 0.5f;
    if (!align_corners && src < 0) src = 0;
    i0[i] = std::min<int64_t>(int64_t(std::floor(src)), in - 1);
    l1[i] = std::min(std::max(src - float(i0[i]), 0.0f), 1.0f);
    i1[i] = i0[i] + (i0[i] < in - 1 ? 1 : 0);
    l0[i] = 1.0f - l1[i];
  }
}

static long check_interpolate_bands(long in, long out, bool align_corners) {
  long checks = 0;
  std::vector<int64_t> i0, i1;
  std::vector<float> l0, l1;
  torch_taps(in, out, align_corners, i0, i1, l0, l1);
  const interpolate::Taps<float> taps{i0.data(), i1.data(), l0.data(), l1.data()};
  std::vector<int> visits(2 * out, 0);
  const long nb = interpolate::bands_per_image(in);
  expect(interpolate::band_inputs(in, nb - 1).end == in, "interpolate bands cover x", in, out, nb, 0);
  for (long b = 0; b < nb; ++b) {
    const Range band = interpolate::band_inputs(in, b), rows = interpolate::rows_reaching(taps, out, band);
    for (long i = 0; i < out; ++i) {
      const bool reaches = (i0[i] >= band.begin && i0[i] < band.end) || (i1[i] >= band.begin && i1[i] < band.end);
      expect(reaches == (i >= rows.begin && i < rows.end), "rows_reaching", in, out, b, i);
      ++checks;
      if (i < rows.begin || i >= rows.end) continue;
      for (int k = 0; k < 2; ++k) {
        const int64_t h = k ? i1[i] : i0[i];
        if (h >= band.begin && h < band.end) ++visits[2 * i + k];
      }
    }
  }
  for (long i = 0; i < 2 * out; ++i) expect(visits[i] == 1, "each (output row, tap) once", in, out, i / 2, i % 2);
  return checks;
}

// out_coords inverts out_index; BiasGradOp through weight_grad_partial, for every split and lane count, sums
// each class's elements of a (N, Cout, Ho, Wo) array once (integers: exact in any order).
static long check_bias_grad(long N, long C, long Ho, long Wo) {
  long checks = 0;
  Geometry g{};
  g.N = N, g.Cout = C, g.Ho = Ho, g.Wo = Wo;
  std::vector<double> go(N * C * Ho * Wo);
  for (long k = 0; k < long(go.size()); ++k) {
    go[k] = double((k * 7919) % 1009);
    const OutCoords o = out_coords(g, k);
    expect(g.out_index(o.n, o.c, o.i, o.j) == k && o.j < Wo && o.i < Ho && o.c < C, "out_coords", k, o.n, o.c, o.i);
    ++checks;
  }
  const BiasGradOp op{g};
  const auto ones = [](int64_t) { return 1.0; };
  const auto load = [&](int64_t k) { return go[k]; };
  for (long splits : {1L, 3L, 7L})
    for (long lanes : {1L, 5L}) {
      for (long c = 0; c < C; ++c) {
        double want = 0, got = 0;
        for (long n = 0; n < N; ++n)
          for (long k = 0; k < Ho * Wo; ++k) want += go[(n * C + c) * Ho * Wo + k];
        for (long s = 0; s < splits; ++s)
          for (long l = 0; l < lanes; ++l)
            got += weight_grad_partial<double>(op, ones, load, c, 0, l, lanes, split_rows(N * Ho, splits, s));
        expect(got == want, "bias gradient's split sums", c, splits, lanes, long(got - want));
        ++checks;
      }
    }
  return checks;
}

// Every output row whose blend weighs input row h lies in rows_reaching(h): the CUDA backward's gather range.
static long check_tap_weights(long in, long out, bool align_corners) {
  std::vector<int64_t> i0, i1;
  std::vector<float> l0, l1;
  torch_taps(in, out, align_corners, i0, i1, l0, l1);
  const interpolate::Taps<float> taps{i0.data(), i1.data(), l0.data(), l1.data()};
  long checks = 0;
  for (long h = 0; h < in; ++h) {
    const Range rows = interpolate::rows_reaching(taps, out, Range{h, h + 1});
    for (long i = 0; i < out; ++i) {
      const bool tapped = i0[i] == h || i1[i] == h;
      expect(tapped == (i >= rows.begin && i < rows.end), "an input row's gather range", in, out, h, i);
      const float want = (i0[i] == h ? l0[i] : 0.0f) + (i1[i] == h ? l1[i] : 0.0f);
      expect(interpolate::tap_weight(taps, i, h) == want, "tap_weight", in, out, h, i);
      checks += 2;
    }
  }
  return checks;
}

// softmax_rows.h's logsumexp_row for one pixel (with the library exp).
template <typename A>
static A two_pass_lse(const std::vector<A>& v) {
  A m = -INFINITY, s = 0;
  for (A x : v) m = x > m ? x : m;
  for (A x : v) s += std::exp(x - m);
  return std::isfinite(m) ? std::log(s) + m : A(NAN);
}

// Every sequence of up to 4 scores drawn from finite values, +-inf and NaN.
template <typename A>
static long check_online_lse(double tol) {
  const A values[] = {A(0.5), A(-3), A(40), A(-200), A(INFINITY), A(-INFINITY), A(NAN)};
  long checks = 0;
  for (int len = 1; len <= 4; ++len) {
    long combos = 1;
    for (int k = 0; k < len; ++k) combos *= 7;
    for (long code = 0; code < combos; ++code) {
      std::vector<A> v;
      OnlineLse<A> lse;
      for (long c = code, k = 0; k < len; ++k, c /= 7) {
        v.push_back(values[c % 7]);
        lse.add(v.back());
      }
      const A want = two_pass_lse(v), got = lse.value();
      const double err = std::fabs(double(got) - double(want));
      const bool ok = std::isnan(want) ? std::isnan(got) : err <= tol * (1 + std::fabs(double(want)));
      expect(ok, "online log-sum-exp", len, code, long(sizeof(A)), 0);
      ++checks;
    }
  }
  return checks;
}

int main() {
  long checks = check_online_lse<double>(1e-14) + check_online_lse<float>(1e-6);
  for (long N : {1L, 2L})
    for (long C : {1L, 3L})
      for (long Ho : {1L, 5L, 17L}) checks += check_bias_grad(N, C, Ho, 6);
  for (long in = 1; in <= 24; ++in)
    for (long out = 1; out <= 70; ++out)
      for (bool ac : {false, true}) checks += check_tap_weights(in, out, ac);
  for (long in = 1; in <= 24; ++in)
    for (long out = 1; out <= 70; ++out)
      for (bool ac : {false, true}) checks += check_interpolate_bands(in, out, ac);
  for (long s = 1; s <= 9; ++s)
    for (long K = 1; K <= 2 * s + 3; ++K)
      for (long H = 1; H <= 9; ++H) {
        const long full = (H - 1) * s + K;
        for (long oy = 0; oy <= full; ++oy)
          for (long Ho = 0; oy + Ho <= full; Ho += (Ho < 4 || oy + Ho + 1 >= full) ? 1 : 3) {
            Geometry g{};
            g.N = 2;
            g.Cin = g.Cout = g.groups = 1;
            g.H = H;
            g.W = 1;
            g.Kh = g.Kw = K;
            g.sh = g.sw = s;
            g.oy = oy;
            g.Ho = Ho;
            g.Wo = 1;
            checks += check_bands(g);
          }
      }
  {  // a large dense weight: fewer runs, so that their partial weight gradients stay within kMaxPartials
    Geometry g{};
    g.N = 4, g.Cin = g.Cout = 512, g.groups = 1, g.H = g.W = 64, g.Kh = g.Kw = 4, g.sh = g.sw = 2, g.Ho = g.Wo = 128;
    expect(chunk_count(g) == 4, "runs of a large weight", chunk_count(g), 4, 0, 0);
  }
  // the exp: every float in [-88, 0] at a stride of 97 ulps, the boundaries, and the special values
  double worst = 0;
  for (float x = -88.0f; x <= 0.0f; x = std::nextafter(x, 1.0f)) {
    for (int k = 0; k < 96 && x < 0.0f; ++k) x = std::nextafter(x, 1.0f);
    const double want = std::exp(double(x)), got = exp_nonpositive(x);
    if (want < 1.1754944e-38) {
      expect(got == 0.0 || std::fabs(got - want) <= 0x1p-22 * want, "exp below float's normal range", long(x * 1000), 0,
             0, 0);
    } else {
      const double rel = std::fabs(got - want) / want;
      worst = rel > worst ? rel : worst;
      expect(rel <= 0x1p-22, "exp relative error", long(x * 1e6), long(rel * 1e12), 0, 0);
    }
    ++checks;
  }
  expect(exp_nonpositive(0.0f) == 1.0f, "exp(0) == 1 exactly (the softmax's sums are >= 1)", 0, 0, 0, 0);
  expect(exp_nonpositive(-INFINITY) == 0.0f, "exp(-inf) == 0", 0, 0, 0, 0);
  expect(std::isnan(exp_nonpositive(NAN)), "exp(NaN) is NaN", 0, 0, 0, 0);
  expect(exp_nonpositive(-1000.0f) == 0.0f, "exp(-1000) == 0", 0, 0, 0, 0);
  std::printf("%ld checks, exp's worst relative error %.3g (2**%.2f), %d failures\n", checks, worst, std::log2(worst),
              failures);
  return failures ? 1 : 0;
}
