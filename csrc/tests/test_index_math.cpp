// ctest: the shared upsample_skip index math against brute-force enumeration of every
// (input, tap) pair, for all small strides, kernels, sizes and crop windows.
#include "index/upsample_skip.h"
#include "tests/harness.h"

using namespace fcn_kernels;
using namespace fcn_kernels::upsample_skip;

int main() {
  long checks = 0;
  for (long a = -20; a <= 20; ++a)
    for (long b = 1; b <= 9; ++b) {
      expect(floor_div(a, b) * b <= a && a < (floor_div(a, b) + 1) * b, "floor_div", a, b, 0, 0);
      expect(ceil_div(a, b) * b >= a && a > (ceil_div(a, b) - 1) * b, "ceil_div", a, b, 0, 0);
    }
  for (long s = 1; s <= 8; ++s)
    for (long K = 1; K <= 2 * s + 3; ++K)
      for (long in = 1; in <= 6; ++in) {
        const long full = full_size(in, s, K);
        expect(full == (in - 1) * s + K, "full_size", s, K, in, full);
        // forward gather: every input feeding p, and nothing else
        for (long p = 0; p < full; ++p) {
          const Range r = inputs_for_output(p, s, K, in);
          for (long i = 0; i < in; ++i) {
            const bool feeds = p - i * s >= 0 && p - i * s < K;
            expect(feeds == (i >= r.begin && i < r.end), "inputs_for_output", s, K, p, i);
            ++checks;
          }
        }
        for (long off = 0; off < full; ++off)
          for (long out = 0; off + out <= full; ++out) {
            for (long i = 0; i < in; ++i) {  // input gradient: taps landing in the window
              const Range r = taps_in_window(i, s, K, off, out);
              for (long k = 0; k < K; ++k) {
                const bool in_win = i * s + k >= off && i * s + k < off + out;
                expect(in_win == (k >= r.begin && k < r.end), "taps_in_window", s, K, i, k);
                ++checks;
              }
            }
            for (long k = 0; k < K; ++k) {  // weight gradient: inputs tap k carries into the window
              const Range r = inputs_in_window(k, s, off, out, in);
              for (long i = 0; i < in; ++i) {
                const bool in_win = i * s + k >= off && i * s + k < off + out;
                expect(in_win == (i >= r.begin && i < r.end), "inputs_in_window", s, K, k, i);
                ++checks;
              }
            }
          }
      }
  return report(checks, "checks");
}
