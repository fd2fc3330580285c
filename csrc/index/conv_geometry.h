// The sizes that rarefied_conv2d and upsample_skip share: a batch of contiguous NCHW inputs, grouped
// channels, a Kh x Kw filter, and the output's extent. Each op's Geometry (csrc/index/<op>.h) adds its
// own fields and its weight layout (w_index).
#pragma once

#include "host_device.h"

namespace fcn_kernels {

struct ConvGeometry {
  int64_t N, Cin, H, W;
  int64_t Cout, groups, Kh, Kw;
  int64_t Ho, Wo;  // output size

  FCN_HOST_DEVICE int64_t cin_per_group() const { return Cin / groups; }
  FCN_HOST_DEVICE int64_t cout_per_group() const { return Cout / groups; }
  FCN_HOST_DEVICE int64_t x_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cin + c) * H + i) * W + j;
  }
  FCN_HOST_DEVICE int64_t out_index(int64_t n, int64_t c, int64_t i, int64_t j) const {
    return ((n * Cout + c) * Ho + i) * Wo + j;
  }
};

}  // namespace fcn_kernels
