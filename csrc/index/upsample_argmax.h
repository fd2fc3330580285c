// Per-element math of upsample_argmax, shared by the CPU and CUDA kernels and replayed on the host by
// csrc/tests/test_element_math.cpp: the scores of one output pixel are upsample_skip's forward
// (ForwardPlane's gather, then bias, then skip, then the rounding to the output dtype), reduced over
// the classes in torch.argmax's order.
#pragma once

#include "upsample_skip.h"

namespace fcn_kernels {
namespace upsample_argmax {

// torch.argmax's order: NaN above every number; among equal maxima (and among NaNs) the lowest
// class wins. Visiting the classes in increasing order, class c's score v replaces the running
// best iff this holds.
template <typename A>
FCN_HOST_DEVICE bool takes_over(A v, A best) {
  return best == best && (v > best || v != v);
}

// Score of class `co` at output (n, i, j), exactly as upsample_skip stores it. `in` supplies the
// operands: Acc (the accumulation type), x(base) and w(base) loaders of the plane's input channels and
// weights, has_bias / bias(co), has_skip / skip(offset), and round(v) (to the output dtype and back).
template <typename I, typename In>
FCN_HOST_DEVICE typename In::Acc score_at(const upsample_skip::ForwardPlane<I>& op, const In& in, int64_t n,
                                          int64_t co, I i, I j) {
  using A = typename In::Acc;
  const int64_t plane = n * op.Cout + co;
  A acc[1] = {A(0)};
  op.template accumulate<1>(in.x(op.in_offset(plane)), in.w(op.weight_base(plane)), I(op.weight_stride()), I(0),
                            op.reduce(), i, j, acc);
  A v = acc[0];
  if (in.has_bias) v += in.bias(co);
  if (in.has_skip) v += in.skip(op.skip_offset(plane, i, j));
  return in.round(v);
}

// Label of output pixel (n, i, j).
template <typename I, typename In>
FCN_HOST_DEVICE int64_t label_at(const upsample_skip::ForwardPlane<I>& op, const In& in, int64_t n, I i, I j) {
  using A = typename In::Acc;
  A best = score_at(op, in, n, 0, i, j);
  int64_t label = 0;
  for (int64_t co = 1; co < op.Cout; ++co) {
    const A v = score_at(op, in, n, co, i, j);
    if (takes_over(v, best)) {
      best = v;
      label = co;
    }
  }
  return label;
}

}  // namespace upsample_argmax
}  // namespace fcn_kernels
