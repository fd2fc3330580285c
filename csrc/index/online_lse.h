// The log-sum-exp of a pixel's scores in one pass, for the CUDA kernels of the fused losses (csrc/cuda/
// scores.cuh), replayed by csrc/tests/test_loss_math.cpp against the CPU kernels' two-pass rule
// (csrc/cpu/softmax_rows.h: the maximum m, then sum exp(v - m), lse = log(sum) + m).
#pragma once

#include <math.h>

#include "host_device.h"

namespace fcn_kernels {

FCN_HOST_DEVICE float exp_of(float v) { return expf(v); }
FCN_HOST_DEVICE double exp_of(double v) { return exp(v); }
FCN_HOST_DEVICE float log_of(float v) { return logf(v); }
FCN_HOST_DEVICE double log_of(double v) { return log(v); }

// The scores visited once each, in any order: the running maximum m and the sum s of exp(v - m), rescaled
// when m grows. value() is F.log_softmax's normaliser as the CPU kernels compute it: NaN where a score is
// NaN (s turns NaN) or m is infinite (all scores -inf, or one +inf); scores of -inf among finite ones add
// nothing.
template <typename A>
struct OnlineLse {
  A m = -INFINITY, s = A(0);
  FCN_HOST_DEVICE void add(A v) {
    if (v > m) {
      s = s * exp_of(m - v) + A(1);
      m = v;
    } else if (v != A(-INFINITY)) {  // a -inf adds exp(-inf) = 0 (not NaN where m is still -inf)
      s += exp_of(v - m);              // NaN for a NaN v, and for v = m = +inf
    }
  }
  FCN_HOST_DEVICE A value() const { return m - m == A(0) ? log_of(s) + m : A(NAN); }  // m - m: 0 iff finite
};

}  // namespace fcn_kernels
