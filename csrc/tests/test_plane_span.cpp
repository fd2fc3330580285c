// ctest: every value the plane ops compute in their index type stays within Op::span(g, V), the
// bound csrc/cuda/plane_kernel.cuh checks before it takes the 32-bit path. The ops run with a
// recording integer type on random geometries (large strides, offsets, padding and sizes included),
// through the same calls as the kernel: run_count / run_start, accumulate over every slab, and the
// epilogue's output and skip offsets.
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "index/rarefied_conv2d.h"
#include "index/upsample_skip.h"
#include "tests/harness.h"

static int64_t largest = 0;

// An int64_t that remembers the largest magnitude any result of its arithmetic reached.
struct Rec {
  int64_t v = 0;
  Rec() = default;
  Rec(int64_t x) : v(x) { note(); }
  Rec(int x) : Rec(int64_t(x)) {}
  explicit operator int64_t() const { return v; }
  void note() const { largest = std::max(largest, v < 0 ? -v : v); }
};
#define REC_OP(op)                                                             \
  inline Rec operator op(Rec a, Rec b) { return Rec(a.v op b.v); }             \
  inline Rec operator op(Rec a, int b) { return Rec(a.v op int64_t(b)); }      \
  inline Rec operator op(int a, Rec b) { return Rec(int64_t(a) op b.v); }
REC_OP(+) REC_OP(-) REC_OP(*) REC_OP(/)
#define REC_CMP(op)                                                            \
  inline bool operator op(Rec a, Rec b) { return a.v op b.v; }                 \
  inline bool operator op(Rec a, int b) { return a.v op int64_t(b); }
REC_CMP(<) REC_CMP(>) REC_CMP(<=) REC_CMP(>=) REC_CMP(==) REC_CMP(!=)
inline Rec& operator++(Rec& a) { return a = a + 1; }
inline Rec& operator+=(Rec& a, Rec b) { return a = a + b; }
// The kernel does these in int64_t: not recorded.
inline int64_t operator*(int64_t a, Rec b) { return a * b.v; }
inline int64_t operator+(int64_t a, Rec b) { return a + b.v; }

struct Zero {
  double operator()(Rec) const { return 0.0; }
};

template <int V, template <typename> class Op, typename Geometry>
static void check_span(const Geometry& g, int64_t slab, std::mt19937_64& rng, const char* what) {
  const auto op = Op<Rec>::make(g);
  largest = 0;
  const Rec cols = op.cols(), runs = fcn_kernels::run_count<V>(op.rows(), cols);
  std::vector<int64_t> rs;
  for (int64_t r = 0; r < std::min<int64_t>(runs.v, 2000); ++r) rs.push_back(r);
  for (int64_t r = std::max<int64_t>(0, runs.v - 500); r < runs.v; ++r) rs.push_back(r);
  for (int k = 0; k < 1000 && runs.v > 0; ++k) rs.push_back(std::uniform_int_distribution<int64_t>(0, runs.v - 1)(rng));
  for (Rec c0 = 0; c0 < op.reduce(); c0 += Rec(slab)) {
    const Rec cn = fcn_kernels::min_of<Rec>(Rec(slab), op.reduce() - c0);
    (void)(cn * op.taps());  // the tile fill's bound
    for (const int64_t r : rs) {
      Rec i, j0;
      fcn_kernels::run_start<V>(cols, Rec(r), i, j0);
      double acc[V] = {};
      op.template accumulate<V>(Zero{}, Zero{}, op.taps(), c0, cn, i, j0, acc);
      (void)fcn_kernels::min_of<Rec>(Rec(V), cols - j0);
      (void)(i * cols + j0);
      (void)op.skip_offset(0, i, j0);
    }
  }
  const int64_t span = Op<int64_t>::span(g, V);
  if (largest > span && failures++ < 10)
    std::printf("FAIL %s V=%d: an index reached %lld, span() is %lld\n", what, V, (long long)largest,
                (long long)span);
}

template <template <typename> class Op, typename Geometry>
static void check_all(const Geometry& g, int64_t slab, std::mt19937_64& rng, const char* what) {
  check_span<2, Op>(g, slab, rng, what);
  check_span<4, Op>(g, slab, rng, what);
  check_span<8, Op>(g, slab, rng, what);
}

// One image of 1-3 groups of 1-4 input and 1-4 output channels each (drawn in this order).
template <typename Geometry>
static Geometry random_channels(Draw<int64_t>& uni) {
  Geometry g{};
  g.groups = uni(1, 3);
  g.N = 1; g.Cin = g.groups * uni(1, 4); g.Cout = g.groups * uni(1, 4);
  return g;
}

// Both plane ops of g, over a random slab of its input channels.
template <template <typename> class Forward, template <typename> class InputGrad, typename Geometry>
static void check_planes(const Geometry& g, Draw<int64_t>& uni, const std::string& op) {
  const int64_t slab = uni(1, 5);
  check_all<Forward>(g, slab, uni.rng, (op + " forward").c_str());
  check_all<InputGrad>(g, slab, uni.rng, (op + " input gradient").c_str());
}

int main() {
  std::mt19937_64 rng(2026);
  Draw<int64_t> uni{rng};
  for (int t = 0; t < 250; ++t) {
    using namespace fcn_kernels::upsample_skip;
    const int big = int(uni(0, 3));
    Geometry g = random_channels<Geometry>(uni);
    g.H = uni(1, big == 1 ? 300 : 6); g.W = uni(1, big == 1 ? 300 : 6);
    g.sh = uni(1, big == 2 ? 300 : 8); g.sw = uni(1, big == 2 ? 300 : 8);
    g.Kh = uni(1, big == 3 ? 4 * g.sh + 40 : 2 * g.sh + 2); g.Kw = uni(1, big == 3 ? 4 * g.sw + 40 : 2 * g.sw + 2);
    const int64_t Hf = full_size(g.H, g.sh, g.Kh), Wf = full_size(g.W, g.sw, g.Kw);
    g.oy = uni(0, Hf - 1); g.ox = uni(0, Wf - 1); g.Ho = uni(1, Hf - g.oy); g.Wo = uni(1, Wf - g.ox);
    if (uni(0, 1)) { g.sy = uni(0, 3); g.sx = uni(0, 3); g.Hs = g.Ho + g.sy + uni(0, 2); g.Ws = g.Wo + g.sx + uni(0, 2); }
    check_planes<ForwardPlane, InputGradPlane>(g, uni, "upsample_skip");
  }
  for (int t = 0; t < 250; ++t) {
    using namespace fcn_kernels::rarefied_conv2d;
    const int big = int(uni(0, 2));
    Geometry g = random_channels<Geometry>(uni);
    g.Kh = uni(1, 5); g.Kw = uni(1, 5);
    g.rh = uni(1, big == 2 ? 200 : 6); g.rw = uni(1, big == 2 ? 200 : 6);
    g.ph = uni(0, big == 1 ? 300 : 7); g.pw = uni(0, big == 1 ? 300 : 7);
    g.H = std::max<int64_t>(uni(1, big ? 200 : 9), (g.Kh - 1) * g.rh + 1 - 2 * g.ph);
    g.W = std::max<int64_t>(uni(1, big ? 200 : 9), (g.Kw - 1) * g.rw + 1 - 2 * g.pw);
    g.Ho = out_size(g.H, g.ph, g.Kh, g.rh); g.Wo = out_size(g.W, g.pw, g.Kw, g.rw);
    check_planes<ForwardPlane, InputGradPlane>(g, uni, "rarefied");
  }
  std::printf("span checks: %d failures\n", failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
