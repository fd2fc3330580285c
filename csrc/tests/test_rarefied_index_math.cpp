// ctest: the shared rarefied_conv2d index math against brute-force enumeration of every
// (output, tap) pair, for small rarefactions, kernels, paddings and sizes.
#include "index/rarefied_conv2d.h"
#include "tests/harness.h"

using namespace fcn_kernels;
using namespace fcn_kernels::rarefied_conv2d;

int main() {
  long checks = 0;
  for (long r = 1; r <= 8; ++r)
    for (long K = 1; K <= 7; ++K)
      for (long pad = 0; pad <= 2 * r + 1; ++pad)
        for (long in = 1; in <= 3 * r + 4; ++in) {
          const long out = out_size(in, pad, K, r);
          if (out < 1) continue;
          for (long o = 0; o < out; ++o) {
            const Range t = taps_for_output(o, r, pad, in, K);
            for (long k = 0; k < K; ++k) {
              const long i = input_of(o, k, r, pad);
              const bool real = i >= 0 && i < in;
              expect(i == o - pad + k * r && output_of(i, k, r, pad) == o, "input_of/output_of", r, K, o, k);
              expect(real == (k >= t.begin && k < t.end), "taps_for_output", r, K, o, k);
              const Range c = outputs_for_tap(k, r, pad, in, out);
              expect(real == (o >= c.begin && o < c.end), "outputs_for_tap", r, K, o, k);
              ++checks;
            }
            // phase decomposition: output o = a + r u reads row (u0 + u + k) of input phase b
            const long a = o % r, u = o / r, b = phase_of_input(a, r, pad), u0 = floor_div(a - pad, r);
            expect(b >= 0 && b < r && u < phase_count(a, r, out), "phase", r, pad, o, b);
            for (long k = 0; k < K; ++k)
              expect(input_of(o, k, r, pad) == b + r * (u0 + u + k), "phase_of_input", r, pad, o, k);
          }
          for (long a = 0; a < r; ++a) {
            long n = 0;
            for (long o = a; o < out; o += r) ++n;
            expect(n == phase_count(a, r, out), "phase_count", r, out, a, n);
          }
          for (long i = 0; i < in; ++i) {
            const Range t = taps_for_input(i, r, pad, out, K);
            for (long k = 0; k < K; ++k) {
              const long o = output_of(i, k, r, pad);
              const bool hit = o >= 0 && o < out;
              expect(hit == (k >= t.begin && k < t.end), "taps_for_input", r, K, i, k);
              const Range c = inputs_for_tap(k, r, pad, in, out);
              expect(hit == (i >= c.begin && i < c.end), "inputs_for_tap", r, K, i, k);
              ++checks;
            }
          }
        }
  // wide layout: every valid output column reads, through every tap, the padded input it should
  for (long N = 1; N <= 2; ++N)
    for (long r = 1; r <= 3; ++r)
      for (long K = 1; K <= 3; ++K) {
        Geometry g{};
        g.N = N; g.Cin = 1; g.H = 7; g.W = 6; g.Cout = 1; g.groups = 1; g.Kh = K; g.Kw = K;
        g.rh = r; g.rw = r; g.ph = 1; g.pw = 2;
        g.Ho = out_size(g.H, g.ph, g.Kh, g.rh); g.Wo = out_size(g.W, g.pw, g.Kw, g.rw);
        if (g.Ho < 1 || g.Wo < 1) continue;
        for (long n = 0; n < N; ++n)
          for (long i = 0; i < g.Ho; ++i)
            for (long j = 0; j < g.Wo; ++j) {
              const long col = n * g.image_cols() + i * g.Wp() + j;
              expect(col < g.wide_cols(), "wide_cols", n, i, j, col);
              for (long kh = 0; kh < K; ++kh)
                for (long kw = 0; kw < K; ++kw) {
                  const long src = col + g.tap_shift(kh, kw);
                  const long want = n * g.image_cols() + (i + kh * r) * g.Wp() + (j + kw * r);
                  expect(src == want && src < g.wide_row(), "tap_shift", n, i, j, src);
                  ++checks;
                }
            }
        expect(g.wide_cols() - 1 + g.tap_shift(K - 1, K - 1) < g.wide_row(), "wide_row", N, r, K, 0);
      }
  return report(checks, "checks");
}
