// What the host tests share: the failure count and the last line that reports it, expect(), and the
// random draws.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <random>

static int failures = 0;

// A FAIL line naming `what` and four numbers of the case, for the first 20 failures.
[[maybe_unused]] static void expect(bool ok, const char* what, long a, long b, long c, long d) {
  if (!ok && failures++ < 20) std::printf("FAIL %s (%ld %ld %ld %ld)\n", what, a, b, c, d);
}

// The test's last line, "<count> <counted>, <failures> failures", and its exit status.
static int report(long count, const char* counted) {
  std::printf("%ld %s, %d failures\n", count, counted, failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

// Uniform Ints in [lo, hi] and standard normal doubles, both from `rng`.
template <typename Int>
struct Draw {
  std::mt19937_64& rng;
  std::normal_distribution<double> normal_dist{};
  Int operator()(Int lo, Int hi) { return std::uniform_int_distribution<Int>(lo, hi)(rng); }
  double normal() { return normal_dist(rng); }
};
