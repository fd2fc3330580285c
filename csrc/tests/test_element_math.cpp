// ctest: the per-element functions that the CUDA kernels run (forward_element,
// backward_input_element, weight_grad_term) against naive loops, in double, on random small
// problems: for upsample_skip a scatter-form transposed convolution and crop; for
// rarefied_conv2d the textbook dilated convolution over a zero-padded input.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <random>
#include <vector>

#include "index/rarefied_conv.h"
#include "index/upsample_skip.h"


struct Load {
  const double* p;
  double operator()(int64_t k) const { return p[k]; }
};

static int failures = 0;
static long compared = 0;

static void check(double got, double want, const char* what, int trial) {
  ++compared;
  if (std::fabs(got - want) > 1e-9 * (1 + std::fabs(want)) && failures++ < 10)
    std::printf("FAIL %s trial %d: %.17g vs %.17g\n", what, trial, got, want);
}

static void test_upsample_skip(std::mt19937_64& rng) {
  using namespace fcn_kernels::upsample_skip;
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 400; ++trial) {
    Geometry g{};
    g.groups = uni(1, 3);
    const int64_t cin_g = uni(1, 3), cout_g = uni(1, 3);
    g.N = uni(1, 2); g.Cin = cin_g * g.groups; g.Cout = cout_g * g.groups;
    g.H = uni(1, 5); g.W = uni(1, 5); g.sh = uni(1, 8); g.sw = uni(1, 8);
    g.Kh = uni(1, 2 * g.sh + 2); g.Kw = uni(1, 2 * g.sw + 2);
    const int64_t Hf = full_size(g.H, g.sh, g.Kh), Wf = full_size(g.W, g.sw, g.Kw);
    g.oy = uni(0, Hf - 1); g.ox = uni(0, Wf - 1);
    g.Ho = uni(0, Hf - g.oy); g.Wo = uni(0, Wf - g.ox);
    std::vector<double> x(g.N * g.Cin * g.H * g.W), w(g.Cin * cout_g * g.Kh * g.Kw),
        go(g.N * g.Cout * g.Ho * g.Wo);
    for (auto* v : {&x, &w, &go})
      for (double& e : *v) e = normal(rng);
    // naive: scatter every (input, tap) product into the full output, then crop
    std::vector<double> full(g.N * g.Cout * Hf * Wf, 0.0), gx(x.size(), 0.0), gw(w.size(), 0.0);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t ci = 0; ci < g.Cin; ++ci)
        for (int64_t co_l = 0; co_l < cout_g; ++co_l)
          for (int64_t ih = 0; ih < g.H; ++ih)
            for (int64_t iw = 0; iw < g.W; ++iw)
              for (int64_t kh = 0; kh < g.Kh; ++kh)
                for (int64_t kw = 0; kw < g.Kw; ++kw) {
                  const int64_t co = (ci / cin_g) * cout_g + co_l, p = ih * g.sh + kh, q = iw * g.sw + kw;
                  const double xv = x[g.x_index(n, ci, ih, iw)], wv = w[g.w_index(ci, co_l, kh, kw)];
                  full[((n * g.Cout + co) * Hf + p) * Wf + q] += xv * wv;
                  const int64_t i = p - g.oy, j = q - g.ox;
                  if (i >= 0 && i < g.Ho && j >= 0 && j < g.Wo) {
                    const double gv = go[g.out_index(n, co, i, j)];
                    gx[g.x_index(n, ci, ih, iw)] += gv * wv;
                    gw[g.w_index(ci, co_l, kh, kw)] += gv * xv;
                  }
                }
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t co = 0; co < g.Cout; ++co)
        for (int64_t i = 0; i < g.Ho; ++i)
          for (int64_t j = 0; j < g.Wo; ++j)
            check(forward_element<double>(g, Load{x.data()}, Load{w.data()}, n, co, i, j),
                  full[((n * g.Cout + co) * Hf + i + g.oy) * Wf + j + g.ox], "forward_element", trial);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t ci = 0; ci < g.Cin; ++ci)
        for (int64_t ih = 0; ih < g.H; ++ih)
          for (int64_t iw = 0; iw < g.W; ++iw)
            check(backward_input_element<double>(g, Load{go.data()}, Load{w.data()}, n, ci, ih, iw),
                  gx[g.x_index(n, ci, ih, iw)], "backward_input_element", trial);
    for (int64_t ci = 0; ci < g.Cin; ++ci)
      for (int64_t co_l = 0; co_l < cout_g; ++co_l)
        for (int64_t kh = 0; kh < g.Kh; ++kh)
          for (int64_t kw = 0; kw < g.Kw; ++kw) {
            double sum = 0;
            for (int64_t k = 0; k < weight_grad_terms(g, kh, kw); ++k)
              sum += weight_grad_term<double>(g, Load{x.data()}, Load{go.data()}, ci, co_l, kh, kw, k);
            check(sum, gw[g.w_index(ci, co_l, kh, kw)], "weight_grad_term", trial);
          }
  }
}

static void test_rarefied_conv(std::mt19937_64& rng) {
  using namespace fcn_kernels::rarefied_conv;
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 400; ++trial) {
    Geometry g{};
    g.groups = uni(1, 3);
    const int64_t cin_g = uni(1, 3), cout_g = uni(1, 3);
    g.N = uni(1, 2); g.Cin = cin_g * g.groups; g.Cout = cout_g * g.groups;
    g.Kh = uni(1, 4); g.Kw = uni(1, 4); g.rh = uni(1, 5); g.rw = uni(1, 5); g.ph = uni(0, 6); g.pw = uni(0, 6);
    g.H = std::max<int64_t>(uni(1, 9), (g.Kh - 1) * g.rh + 1 - 2 * g.ph);
    g.W = std::max<int64_t>(uni(1, 9), (g.Kw - 1) * g.rw + 1 - 2 * g.pw);
    g.Ho = out_size(g.H, g.ph, g.Kh, g.rh); g.Wo = out_size(g.W, g.pw, g.Kw, g.rw);
    std::vector<double> x(g.N * g.Cin * g.H * g.W), w(g.Cout * cin_g * g.Kh * g.Kw), go(g.N * g.Cout * g.Ho * g.Wo);
    for (auto* v : {&x, &w, &go})
      for (double& e : *v) e = normal(rng);
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
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t co = 0; co < g.Cout; ++co)
        for (int64_t i = 0; i < g.Ho; ++i)
          for (int64_t j = 0; j < g.Wo; ++j)
            check(forward_element<double>(g, Load{x.data()}, Load{w.data()}, n, co, i, j),
                  out[g.out_index(n, co, i, j)], "rarefied forward_element", trial);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t ci = 0; ci < g.Cin; ++ci)
        for (int64_t ih = 0; ih < g.H; ++ih)
          for (int64_t iw = 0; iw < g.W; ++iw)
            check(backward_input_element<double>(g, Load{go.data()}, Load{w.data()}, n, ci, ih, iw),
                  gx[g.x_index(n, ci, ih, iw)], "rarefied backward_input_element", trial);
    for (int64_t co = 0; co < g.Cout; ++co)
      for (int64_t ci_l = 0; ci_l < cin_g; ++ci_l)
        for (int64_t a = 0; a < g.Kh; ++a)
          for (int64_t b = 0; b < g.Kw; ++b) {
            double sum = 0;
            for (int64_t k = 0; k < weight_grad_terms(g, a, b); ++k)
              sum += weight_grad_term<double>(g, Load{x.data()}, Load{go.data()}, co, ci_l, a, b, k);
            check(sum, gw[g.w_index(co, ci_l, a, b)], "rarefied weight_grad_term", trial);
          }
  }
}

int main() {
  std::mt19937_64 rng(12345);
  test_upsample_skip(rng);
  test_rarefied_conv(rng);
  std::printf("%ld elements compared, %d failures\n", compared, failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
