// rarefied_conv2d on CPU: F.conv2d(x, w, b, stride=1, padding, dilation=rarefaction,
// groups) without ever forming the rarefied (zero-inserted) filter, and its two
// backward passes. Two paths, same results up to rounding order:
//
//  * GEMM path (channels per group >= 8 on both sides): the "wide layout" of
//    index/rarefied_conv2d.h. Each rarefied tap (kh, kw) is one constant shift of
//    the flattened, padded input, so the convolution is Kh * Kw matrix products
//    per group, each over all N images and all r^2 phases at once, accumulated
//    in a fixed order into one buffer (BLAS via at::addmm_, ld = row length, no
//    im2col copy). This is the paper's "subsampled versions of the input"
//    (3.2) without de-interleaving them: in the wide layout the phases already
//    share one shifted view per tap.
//  * Direct path (depthwise, channel multipliers, small groups): the same wide
//    layout, one image plane per task; each tap is one unit-stride axpy over the
//    whole plane (vectorized; x86 builds carry AVX2/AVX-512 clones picked at load
//    time), the weight gradient a fixed-lane dot product per weight element.
//
// Half and bfloat16 compute in float (inputs upcast once, accumulation in float),
// float and double in themselves. Deterministic: every output element has one
// writer and a fixed summation order (no atomics), so repeated calls give the
// same bits. FCN_KERNELS_RAREFIED_CONV_PATH=direct|gemm forces a path (tests).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../host/rarefied_conv2d.h"
#include "finite.h"
#include "parallel_chunks.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FCN_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FCN_VEC_CLONES
#endif

namespace fcn_kernels {
namespace rarefied_conv2d {
namespace {

constexpr int64_t kGrainWork = 1 << 15;
constexpr int kLanes = 16;  // fixed partial-sum lanes of the weight-gradient dot products

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
}

// ---- vectorizable primitives (float and double) --------------------------------

// dst[i * pitch + j + k * dst_step] += w[k] * src[i * pitch + j + k * src_step] for rows i in
// [0, rows), j in [0, n), k = 0..K-1 in order.
#define FCN_DEFINE_AXPY_TAPS(T)                                                                    \
  FCN_VEC_CLONES void axpy_taps(T* __restrict__ dst, const T* __restrict__ src,                   \
                                const T* __restrict__ w, int64_t K, int64_t dst_step,            \
                                int64_t src_step, int64_t n, int64_t rows, int64_t pitch) {      \
    for (int64_t i = 0; i < rows; ++i, dst += pitch, src += pitch) {                             \
      if (K == 3 && dst_step == 0) { /* gather form, 3 taps per load/store of dst */             \
        const T w0 = w[0], w1 = w[1], w2 = w[2];                                                 \
        const T *s0 = src, *s1 = src + src_step, *s2 = src + 2 * src_step;                       \
        for (int64_t j = 0; j < n; ++j) dst[j] = ((dst[j] + w0 * s0[j]) + w1 * s1[j]) + w2 * s2[j]; \
        continue;                                                                                \
      }                                                                                          \
      for (int64_t k = 0; k < K; ++k) {                                                          \
        const T wv = w[k];                                                                       \
        T* d = dst + k * dst_step;                                                               \
        const T* s = src + k * src_step;                                                         \
        for (int64_t j = 0; j < n; ++j) d[j] += wv * s[j];                                       \
      }                                                                                          \
    }                                                                                            \
  }
FCN_DEFINE_AXPY_TAPS(float)
FCN_DEFINE_AXPY_TAPS(double)

// lanes[l] += sum over rows i in [0, rows) and j = l (mod kLanes), j < n, of a[i * pitch + j] *
// b[i * pitch + j]: a fixed association, so the result does not depend on the vector width the
// compiler picks.
#define FCN_DEFINE_DOT_LANES(T)                                                                    \
  FCN_VEC_CLONES void dot_lanes(T* __restrict__ lanes, const T* __restrict__ a,                   \
                                const T* __restrict__ b, int64_t n, int64_t rows, int64_t pitch) { \
    for (int64_t i = 0; i < rows; ++i, a += pitch, b += pitch) {                                 \
      int64_t j = 0;                                                                             \
      for (; j + kLanes <= n; j += kLanes)                                                       \
        for (int l = 0; l < kLanes; ++l) lanes[l] += a[j + l] * b[j + l];                        \
      for (int l = 0; j + l < n; ++l) lanes[l] += a[j + l] * b[j + l];                           \
    }                                                                                            \
  }
FCN_DEFINE_DOT_LANES(float)
FCN_DEFINE_DOT_LANES(double)

// ---- wide layout (both paths), in the accumulation dtype --------------------------

// [C, wide_row] rows: each channel's N images zero-padded to Hp x Wp, back to back.
at::Tensor to_wide_input(const at::Tensor& x, const Geometry& g, at::ScalarType acc) {
  const int64_t C = x.size(1);
  auto buf = at::zeros({C, g.wide_row()}, x.options().dtype(acc));
  buf.narrow(1, 0, g.N * g.image_cols())
      .view({C, g.N, g.Hp(), g.Wp()})
      .narrow(2, g.ph, g.H)
      .narrow(3, g.pw, g.W)
      .copy_(x.transpose(0, 1));
  return buf;
}

// grad_out [N, Cout, Ho, Wo] -> [Cout, N * Hp * Wp], zeros in the dropped columns.
at::Tensor to_wide_output(const at::Tensor& go, const Geometry& g, at::ScalarType acc) {
  auto buf = at::zeros({g.Cout, g.N * g.image_cols()}, go.options().dtype(acc));
  buf.view({g.Cout, g.N, g.Hp(), g.Wp()}).narrow(2, 0, g.Ho).narrow(3, 0, g.Wo).copy_(go.transpose(0, 1));
  return buf;
}

// ---- direct path (wide layout, one image plane per task) --------------------------
//
// xw: [Cin, wide_row] padded input, gow: [Cout, N * Hp * Wp] grad_out with zeros in the
// dropped columns (both from the helpers below, in the accumulation dtype). In the
// wide layout every tap of one plane is a single unit-stride axpy of length Ho * Wp,
// so the loops run at vector speed even for depthwise filters.

template <typename acc_t>
void direct_forward(const Geometry& g, const acc_t* xw, const acc_t* w, const acc_t* bias, acc_t* out) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t L = g.Ho * g.Wp(), plane = g.image_cols(), row = g.wide_row();
  parallel_for(0, g.N * g.Cout, grain_for(L * cin_g * g.Kh * g.Kw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(L);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t co = task % g.Cout, n = task / g.Cout, grp = co / cout_g;
      std::fill(acc.begin(), acc.end(), bias ? bias[co] : acc_t(0));
      for (int64_t ci_l = 0; ci_l < cin_g; ++ci_l) {
        const acc_t* src = xw + (grp * cin_g + ci_l) * row + n * plane;
        for (int64_t kh = 0; kh < g.Kh; ++kh)
          axpy_taps(acc.data(), src + g.tap_shift(kh, 0), w + g.w_index(co, ci_l, kh, 0), g.Kw, 0, g.rw, L, 1, 0);
      }
      for (int64_t i = 0; i < g.Ho; ++i)
        std::copy_n(acc.data() + i * g.Wp(), g.Wo, out + g.out_index(n, co, i, 0));
    }
  });
}

// grad_x: the transposed (scatter) form of the forward, into a private padded plane per
// (n, ci) task, then cropped: the correlation with the flipped rarefied filter. The dropped
// columns' zeros are no terms of the op: times finite weights they add zeros, so one axpy spans
// the plane; a non-finite weight would make them NaN (0 * Inf), so then each row's real columns.
template <typename acc_t>
void direct_backward_input(const Geometry& g, const acc_t* gow, const acc_t* w, acc_t* gx, bool finite_weight) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t L = g.Ho * g.Wp(), plane = g.image_cols(), grow = g.N * plane;
  const int64_t rows = finite_weight ? 1 : g.Ho, cols = finite_weight ? L : g.Wo;
  parallel_for(0, g.N * g.Cin, grain_for(L * cout_g * g.Kh * g.Kw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(plane + g.slack());
    for (int64_t task = begin; task < end; ++task) {
      const int64_t ci = task % g.Cin, n = task / g.Cin, grp = ci / cin_g, ci_l = ci % cin_g;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
        const int64_t co = grp * cout_g + co_l;
        const acc_t* src = gow + co * grow + n * plane;
        for (int64_t kh = 0; kh < g.Kh; ++kh)
          axpy_taps(acc.data() + g.tap_shift(kh, 0), src, w + g.w_index(co, ci_l, kh, 0), g.Kw, g.rw, 0, cols,
                    rows, g.Wp());
      }
      for (int64_t i = 0; i < g.H; ++i)
        std::copy_n(acc.data() + (i + g.ph) * g.Wp() + g.pw, g.W, gx + g.x_index(n, ci, i, 0));
    }
  });
}

// grad_w[co, ci_l, kh, kw] = sum over n of <grad_out plane, input plane shifted by the
// tap>: one weight element per task, fixed order (kLanes partial sums, then in order). One
// dot spans each plane, dropped columns too; their zeros times a non-finite input are NaN
// (0 * Inf), so an element that comes out non-finite is redone over the real columns alone.
template <typename acc_t>
void direct_backward_weight(const Geometry& g, const acc_t* gow, const acc_t* xw, acc_t* gw) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t L = g.Ho * g.Wp(), plane = g.image_cols(), grow = g.N * plane, row = g.wide_row();
  const int64_t elems = g.Cout * cin_g * g.Kh * g.Kw;
  parallel_for(0, elems, grain_for(g.N * L), [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t kw = e % g.Kw, kh = (e / g.Kw) % g.Kh;
      const int64_t ci_l = (e / (g.Kw * g.Kh)) % cin_g, co = e / (g.Kw * g.Kh * cin_g);
      const int64_t ci = (co / cout_g) * cin_g + ci_l;
      const acc_t* a = gow + co * grow;
      const acc_t* b = xw + ci * row + g.tap_shift(kh, kw);
      const auto dot = [&](int64_t cols, int64_t rows) {
        acc_t lanes[kLanes] = {};
        for (int64_t n = 0; n < g.N; ++n) dot_lanes(lanes, a + n * plane, b + n * plane, cols, rows, g.Wp());
        acc_t acc = 0;
        for (int l = 0; l < kLanes; ++l) acc += lanes[l];
        return acc;
      };
      const acc_t v = dot(L, 1);
      gw[e] = is_finite(v) ? v : dot(g.Wo, g.Ho);
    }
  });
}

// ---- GEMM path ------------------------------------------------------------------

// Weight as [Kh, Kw, Cout, Cin/groups]: tap (kh, kw) of group grp is a contiguous block.
at::Tensor taps_first(const at::Tensor& weight, at::ScalarType acc) {
  return weight.to(acc).permute({2, 3, 0, 1}).contiguous();
}

void gemm_forward(const Geometry& g, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  const at::Tensor& out, at::ScalarType acc) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group(), L = g.wide_cols();
  const auto xw = to_wide_input(x, g, acc);
  const auto wt = taps_first(weight, acc);
  auto ow = at::empty({g.Cout, g.N * g.image_cols()}, x.options().dtype(acc));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    auto o = ow.narrow(0, grp * cout_g, cout_g).narrow(1, 0, L);
    if (bias.defined())
      o.copy_(bias.narrow(0, grp * cout_g, cout_g).unsqueeze(1));
    else
      o.zero_();
    const auto xg = xw.narrow(0, grp * cin_g, cin_g);
    for (int64_t kh = 0; kh < g.Kh; ++kh)
      for (int64_t kw = 0; kw < g.Kw; ++kw)
        o.addmm_(wt[kh][kw].narrow(0, grp * cout_g, cout_g), xg.narrow(1, g.tap_shift(kh, kw), L));
  }
  out.copy_(ow.view({g.Cout, g.N, g.Hp(), g.Wp()}).narrow(2, 0, g.Ho).narrow(3, 0, g.Wo).transpose(0, 1));
}

void gemm_backward_input(const Geometry& g, const at::Tensor& go, const at::Tensor& weight, const at::Tensor& gx,
                         at::ScalarType acc) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group(), L = g.wide_cols();
  const auto gow = to_wide_output(go, g, acc);
  const auto wt = taps_first(weight, acc);
  auto gxw = at::zeros({g.Cin, g.wide_row()}, go.options().dtype(acc));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    const auto gog = gow.narrow(0, grp * cout_g, cout_g).narrow(1, 0, L);
    const auto gxg = gxw.narrow(0, grp * cin_g, cin_g);
    for (int64_t kh = 0; kh < g.Kh; ++kh)
      for (int64_t kw = 0; kw < g.Kw; ++kw)
        gxg.narrow(1, g.tap_shift(kh, kw), L).addmm_(wt[kh][kw].narrow(0, grp * cout_g, cout_g).t(), gog);
  }
  gx.copy_(gxw.narrow(1, 0, g.N * g.image_cols())
               .view({g.Cin, g.N, g.Hp(), g.Wp()})
               .narrow(2, g.ph, g.H)
               .narrow(3, g.pw, g.W)
               .transpose(0, 1));
}

void gemm_backward_weight(const Geometry& g, const at::Tensor& go, const at::Tensor& x, const at::Tensor& gw,
                          at::ScalarType acc) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group(), L = g.wide_cols();
  const auto gow = to_wide_output(go, g, acc);
  const auto xw = to_wide_input(x, g, acc);
  auto gwt = at::empty({g.Kh, g.Kw, g.Cout, cin_g}, go.options().dtype(acc));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    const auto gog = gow.narrow(0, grp * cout_g, cout_g).narrow(1, 0, L);
    const auto xg = xw.narrow(0, grp * cin_g, cin_g);
    for (int64_t kh = 0; kh < g.Kh; ++kh)
      for (int64_t kw = 0; kw < g.Kw; ++kw) {
        auto dst = gwt[kh][kw].narrow(0, grp * cout_g, cout_g);
        at::mm_out(dst, gog, xg.narrow(1, g.tap_shift(kh, kw), L).t());
      }
  }
  gw.copy_(gwt.permute({2, 3, 0, 1}));
}

// ---- path choice and glue ---------------------------------------------------------

bool use_gemm(const Geometry& g) {
  const char* forced = std::getenv("FCN_KERNELS_RAREFIED_CONV_PATH");
  if (forced && std::strcmp(forced, "gemm") == 0) return true;
  if (forced && std::strcmp(forced, "direct") == 0) return false;
  // Thin groups or tiny maps (mostly dropped wide columns): per-tap GEMMs too small to pay off.
  const double useful = double(g.N * g.Ho * g.Wo) / double(std::max<int64_t>(1, g.wide_cols()));
  return g.cin_per_group() >= 8 && g.cout_per_group() >= 8 && useful >= 0.4;
}

at::ScalarType acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;  // opmath_type of every dispatched dtype
}

// The CPU kernels behind the op's entry points (csrc/host/rarefied_conv2d.h). They read the inputs as
// given: both paths copy them into the wide layout, in the accumulation dtype, anyway.
struct CpuKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;
  static constexpr Layout kLayout = Layout::kAsGiven;

  static void forward(const Forward& p) {
    const auto acc = acc_type(p.x.scalar_type());
    if (use_gemm(p.g)) {
      gemm_forward(p.g, p.x, p.weight, p.bias.defined() ? p.bias.to(acc) : at::Tensor(), p.out, acc);
      return;
    }
    const auto xw = to_wide_input(p.x, p.g, acc), wa = p.weight.to(acc).contiguous();
    const auto ba = p.bias.defined() ? p.bias.to(acc).contiguous() : at::Tensor();
    auto oa = p.x.scalar_type() == acc ? p.out : at::empty(p.out.sizes(), p.out.options().dtype(acc));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "rarefied_conv2d_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      direct_forward<acc_t>(p.g, xw.const_data_ptr<acc_t>(), wa.const_data_ptr<acc_t>(), data_or_null<acc_t>(ba),
                            oa.mutable_data_ptr<acc_t>());
    });
    if (!oa.is_same(p.out)) p.out.copy_(oa);
  }

  static void backward_input(const BackwardInput& p) {
    const auto acc = acc_type(p.grad_out.scalar_type());
    // Both paths' fast forms span the dropped columns (the GEMMs the dropped rows too), exact for
    // finite weights only: a non-finite one takes the direct path's exact form.
    const bool finite_weight = all_finite(p.weight);
    if (finite_weight && use_gemm(p.g)) {
      gemm_backward_input(p.g, p.grad_out, p.weight, p.grad_x, acc);
      return;
    }
    const auto gow = to_wide_output(p.grad_out, p.g, acc), wa = p.weight.to(acc).contiguous();
    auto gxa = p.grad_out.scalar_type() == acc ? p.grad_x : at::empty(p.grad_x.sizes(), p.grad_x.options().dtype(acc));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.grad_out.scalar_type(), "rarefied_conv2d_bwd_x", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      direct_backward_input<acc_t>(p.g, gow.const_data_ptr<acc_t>(), wa.const_data_ptr<acc_t>(),
                                   gxa.mutable_data_ptr<acc_t>(), finite_weight);
    });
    if (!gxa.is_same(p.grad_x)) p.grad_x.copy_(gxa);
  }

  static void backward_weight(const BackwardWeight& p) {
    const auto acc = acc_type(p.grad_out.scalar_type());
    if (use_gemm(p.g)) {
      gemm_backward_weight(p.g, p.grad_out, p.x, p.grad_w, acc);
      // The GEMMs span the dropped columns and rows, whose zeros a non-finite x makes NaN: a result
      // that is not finite (small, cheap to check) is redone by the direct path, which is exact.
      if (all_finite(p.grad_w)) return;
    }
    const auto gow = to_wide_output(p.grad_out, p.g, acc), xw = to_wide_input(p.x, p.g, acc);
    auto gwa = p.grad_out.scalar_type() == acc ? p.grad_w : at::empty(p.grad_w.sizes(), p.grad_w.options().dtype(acc));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.grad_out.scalar_type(), "rarefied_conv2d_bwd_w", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      direct_backward_weight<acc_t>(p.g, gow.const_data_ptr<acc_t>(), xw.const_data_ptr<acc_t>(),
                                    gwa.mutable_data_ptr<acc_t>());
    });
    if (!gwa.is_same(p.grad_w)) p.grad_w.copy_(gwa);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) { register_kernels<CpuKernels>(m); }

}  // namespace rarefied_conv2d
}  // namespace fcn_kernels
