// exp of the softmax's non-positive arguments (a score minus the row's maximum or its log-sum-exp), in
// a form the compiler vectorizes: std::exp is a library call per element, which leaves the loss's
// class loops scalar. Torch-free: csrc/tests/test_loss_math.cpp checks it against std::exp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fcn_kernels {

// exp(x) for x <= 0 or NaN, relative error at most 2**-22 (2 ulp; tested), 0 below -87.33 (where
// exp(x) is under float32's smallest normal number; the softmax's sums are >= 1). Cephes' expf: x =
// k ln2 + r with |r| <= ln2 / 2 (ln2 split in two for an exact product), exp(r) by a degree-7
// polynomial, 2**k built in the exponent bits. NaN stays NaN.
inline float exp_nonpositive(float x) {
  const float xc = x < -87.33654f ? -87.33654f : x;  // keeps NaN; k stays in [-126, 0], 2**k normal
  // t's low mantissa bits hold k = round(x / ln2): 1.5 * 2**23 has an ulp of 1
  const float t = xc * 1.44269504088896341f + 12582912.0f;
  const float kf = t - 12582912.0f;
  const float r = (xc - kf * 0.693359375f) + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t tb, mb;
  const float magic = 12582912.0f;
  std::memcpy(&tb, &t, sizeof tb);
  std::memcpy(&mb, &magic, sizeof mb);
  const uint32_t bits = (tb - mb + 127u) << 23;  // 2**k; unsigned: defined for NaN's bits too
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < -87.33654f ? 0.0f : p * scale;
}

// float64 (the tests' precision): the library's exp, exact to an ulp.
inline double exp_nonpositive(double x) { return std::exp(x); }

}  // namespace fcn_kernels
