// ctest: the fused losses' shared math (csrc/index/upsample_logsumexp.h, csrc/index/interpolate.h,
// csrc/cpu/exp.h) against brute force. upsample_logsumexp's backward bands, for every small stride, kernel,
// size and crop window: the owned output rows partition [0, Ho); each (input row, output row) pair a tap
// joins is visited exactly once, by the band owning the input row, among the rows it recomputes; a band
// recomputes at most a quarter more rows than its share plus one kernel's overlap. interpolate_logsumexp's
// bands, for every small input and output size (PyTorch's taps, up and down, align_corners or not): each
// (output row, tap row) pair is visited exactly once, by the band owning the tap row. The vectorizable exp:
// within 2**-22 of std::exp on its whole domain, 0 below it, NaN for NaN.
#include <cmath>
#include <cstdio>
#include <vector>

#include "cpu/exp.h"
#include "index/interpolate.h"
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

int main() {
  long checks = 0;
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
