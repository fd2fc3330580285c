// ctest: the fused loss's shared math (csrc/index/upsample_logsumexp.h, csrc/cpu/exp.h) against brute
// force. The backward's bands, for every small stride, kernel, size and crop window: the owned output
// rows partition [0, Ho); each (input row, output row) pair a tap joins is visited exactly once, by the
// band owning the input row, among the rows it recomputes; a band recomputes at most a quarter more rows
// than its share plus one kernel's overlap. The vectorizable exp: within 2**-22 of std::exp on its whole
// domain, 0 below it, NaN for NaN.
#include <cmath>
#include <cstdio>
#include <vector>

#include "cpu/exp.h"
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
  return checks;
}

int main() {
  long checks = 0;
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
