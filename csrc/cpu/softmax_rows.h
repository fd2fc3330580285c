// The fused losses' per-pixel statistics and their gradient, for one output row of every class's scores
// (v[c * Wo + j]), shared by the CPU kernels of upsample_logsumexp and interpolate_logsumexp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "exp.h"

namespace fcn_kernels {

// lse[j] = log sum_c exp(v[c * Wo + j]), shifted by the largest score m as F.log_softmax shifts (and so
// F.cross_entropy): NaN where a score is NaN or m is infinite (all scores -inf, or one +inf), where
// log_softmax is NaN. m, s: scratch of Wo.
template <typename acc_t>
void logsumexp_row(const acc_t* v, int64_t C, int64_t Wo, acc_t* m, acc_t* s, acc_t* lse) {
  std::fill(m, m + Wo, -std::numeric_limits<acc_t>::infinity());
  for (int64_t c = 0; c < C; ++c) {
    const acc_t* vc = v + c * Wo;
    for (int64_t j = 0; j < Wo; ++j) m[j] = vc[j] > m[j] ? vc[j] : m[j];  // NaN never wins: s gets it
  }
  std::fill(s, s + Wo, acc_t(0));
  for (int64_t c = 0; c < C; ++c) {
    const acc_t* vc = v + c * Wo;
    for (int64_t j = 0; j < Wo; ++j) s[j] += exp_nonpositive(vc[j] - m[j]);
  }
  for (int64_t j = 0; j < Wo; ++j)
    lse[j] = std::isfinite(m[j]) ? std::log(s[j]) + m[j] : std::numeric_limits<acc_t>::quiet_NaN();
}

// The score gradient of one output row: d[c * ld + j] = a[j] * softmax_c + b[j] * [c == y[j]] (b only
// where y is a label: the target's score is the constant 0 at ignored pixels).
template <typename acc_t>
void score_grads(const acc_t* v, int64_t C, int64_t Wo, const acc_t* lse, const acc_t* a, const acc_t* b,
                 const int64_t* y, int64_t ignore_index, acc_t* d, int64_t ld) {
  for (int64_t c = 0; c < C; ++c) {
    const acc_t* vc = v + c * Wo;
    acc_t* __restrict__ dc = d + c * ld;
    for (int64_t j = 0; j < Wo; ++j) dc[j] = a[j] * exp_nonpositive(vc[j] - lse[j]);
  }
  for (int64_t j = 0; j < Wo; ++j)
    if (y[j] != ignore_index) d[y[j] * ld + j] += b[j];
}

// picked[j] = v[y[j] * Wo + j], or 0 where y[j] is ignore_index.
template <typename acc_t>
void picked_row(const acc_t* v, int64_t Wo, const int64_t* y, int64_t ignore_index, acc_t* picked) {
  for (int64_t j = 0; j < Wo; ++j) picked[j] = y[j] == ignore_index ? acc_t(0) : v[y[j] * Wo + j];
}

}  // namespace fcn_kernels
