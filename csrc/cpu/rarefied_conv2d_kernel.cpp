// rarefied_conv2d on CPU: F.conv2d(x, w, b, stride=1, padding, dilation=rarefaction,
// groups) without ever forming the rarefied (zero-inserted) filter, and its two
// backward passes. Two paths, same results up to rounding order:
//
//  * GEMM path (channels per group >= 8 on both sides): the "wide layout" of
//    index/rarefied_conv.h. Each rarefied tap (kh, kw) is one constant shift of
//    the flattened, padded input, so the convolution is Kh * Kw matrix products
//    per group, each over all N images and all r^2 phases at once, accumulated
//    in a fixed order into one buffer (BLAS via at::addmm_, ld = row length, no
//    im2col copy). This is the paper's "subsampled versions of the input"
//    (3.2) without de-interleaving them: in the wide layout the phases already
//    share one shifted view per tap.
//  * Direct path (depthwise, channel multipliers, small groups): one output row
//    per task, taps as unit-stride axpys over the row (vectorized; x86 builds
//    carry AVX2/AVX-512 clones picked at load time).
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

#include "../rarefied_conv_host.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FCN_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FCN_VEC_CLONES
#endif

namespace fcn_kernels {
namespace rarefied_conv {
namespace {

constexpr int64_t kGrainWork = 1 << 15;
constexpr int kLanes = 16;  // fixed partial-sum lanes of the weight-gradient dot products

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
}

// ---- vectorizable row primitives (float and double) ---------------------------

// acc[j] += w[k] * src[j + off + k * step] for j in cols[k], k = 0..K-1.
#define FCN_DEFINE_AXPY_TAPS(T)                                                                   \
  FCN_VEC_CLONES void axpy_taps(T* __restrict__ acc, const T* __restrict__ src,                  \
                                const T* __restrict__ w, int64_t K, int64_t step, int64_t off, \
                                const Range* cols) {                                            \
    for (int64_t k = 0; k < K; ++k) {                                                           \
      const T wv = w[k];                                                                        \
      const T* s = src + (off + k * step);                                                      \
      for (int64_t j = cols[k].begin; j < cols[k].end; ++j) acc[j] += wv * s[j];                \
    }                                                                                           \
  }
FCN_DEFINE_AXPY_TAPS(float)
FCN_DEFINE_AXPY_TAPS(double)

// lanes[l] += sum over j = l (mod kLanes) of a[j] * b[j]: a fixed association, so
// the result does not depend on the vector width the compiler picks.
#define FCN_DEFINE_DOT_LANES(T)                                                                    \
  FCN_VEC_CLONES void dot_lanes(T* __restrict__ lanes, const T* __restrict__ a,                   \
                                const T* __restrict__ b, int64_t n) {                            \
    int64_t j = 0;                                                                               \
    for (; j + kLanes <= n; j += kLanes)                                                         \
      for (int l = 0; l < kLanes; ++l) lanes[l] += a[j + l] * b[j + l];                          \
    for (int l = 0; j + l < n; ++l) lanes[l] += a[j + l] * b[j + l];                             \
  }
FCN_DEFINE_DOT_LANES(float)
FCN_DEFINE_DOT_LANES(double)

// ---- direct path ---------------------------------------------------------------

template <typename acc_t>
void direct_forward(const Geometry& g, const acc_t* x, const acc_t* w, const acc_t* bias, acc_t* out) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  std::vector<Range> cols(g.Kw);
  for (int64_t kw = 0; kw < g.Kw; ++kw) cols[kw] = outputs_for_tap(kw, g.rw, g.pw, g.W, g.Wo);
  const int64_t rows = g.N * g.Cout * g.Ho;
  at::parallel_for(0, rows, grain_for(g.Wo * cin_g * g.Kh * g.Kw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.Wo);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % g.Ho, co = (row / g.Ho) % g.Cout, n = row / (g.Ho * g.Cout);
      const int64_t grp = co / cout_g;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const Range kh_r = taps_for_output(i, g.rh, g.ph, g.H, g.Kh);
      for (int64_t ci_l = 0; ci_l < cin_g; ++ci_l) {
        const int64_t ci = grp * cin_g + ci_l;
        for (int64_t kh = kh_r.begin; kh < kh_r.end; ++kh) {
          const acc_t* xrow = x + g.x_index(n, ci, input_of(i, kh, g.rh, g.ph), 0);
          axpy_taps(acc.data(), xrow, w + g.w_index(co, ci_l, kh, 0), g.Kw, g.rw, -g.pw, cols.data());
        }
      }
      const acc_t b = bias ? bias[co] : acc_t(0);
      acc_t* orow = out + g.out_index(n, co, i, 0);
      for (int64_t j = 0; j < g.Wo; ++j) orow[j] = acc[j] + b;
    }
  });
}

// grad_x[n, ci, ih, iw] = sum over co of the group and the taps that carry (ih, iw)
// into the output of grad_out[n, co, ih + ph - kh r, iw + pw - kw r] * w: the
// correlation with the flipped rarefied filter, one input row per task.
template <typename acc_t>
void direct_backward_input(const Geometry& g, const acc_t* go, const acc_t* w, acc_t* gx) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  std::vector<Range> cols(g.Kw);
  for (int64_t kw = 0; kw < g.Kw; ++kw) cols[kw] = inputs_for_tap(kw, g.rw, g.pw, g.W, g.Wo);
  const int64_t rows = g.N * g.Cin * g.H;
  at::parallel_for(0, rows, grain_for(g.W * cout_g * g.Kh * g.Kw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t ih = row % g.H, ci = (row / g.H) % g.Cin, n = row / (g.H * g.Cin);
      const int64_t grp = ci / cin_g, ci_l = ci % cin_g;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const Range kh_r = taps_for_input(ih, g.rh, g.ph, g.Ho, g.Kh);
      for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
        const int64_t co = grp * cout_g + co_l;
        for (int64_t kh = kh_r.begin; kh < kh_r.end; ++kh) {
          const acc_t* grow = go + g.out_index(n, co, output_of(ih, kh, g.rh, g.ph), 0);
          axpy_taps(acc.data(), grow, w + g.w_index(co, ci_l, kh, 0), g.Kw, -g.rw, g.pw, cols.data());
        }
      }
      std::copy(acc.begin(), acc.end(), gx + g.x_index(n, ci, ih, 0));
    }
  });
}

// grad_w[co, ci_l, kh, kw] = sum over n and the outputs whose tap (kh, kw) reads a
// real input of grad_out * x. One weight element per task, fixed order.
template <typename acc_t>
void direct_backward_weight(const Geometry& g, const acc_t* go, const acc_t* x, acc_t* gw) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t elems = g.Cout * cin_g * g.Kh * g.Kw;
  at::parallel_for(0, elems, grain_for(g.N * g.Ho * g.Wo), [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t kw = e % g.Kw, kh = (e / g.Kw) % g.Kh;
      const int64_t ci_l = (e / (g.Kw * g.Kh)) % cin_g, co = e / (g.Kw * g.Kh * cin_g);
      const int64_t ci = (co / cout_g) * cin_g + ci_l;
      const Range rows = outputs_for_tap(kh, g.rh, g.ph, g.H, g.Ho);
      const Range cols = outputs_for_tap(kw, g.rw, g.pw, g.W, g.Wo);
      acc_t lanes[kLanes] = {};
      for (int64_t n = 0; n < g.N; ++n) {
        for (int64_t i = rows.begin; i < rows.end; ++i) {
          const acc_t* grow = go + g.out_index(n, co, i, cols.begin);
          const acc_t* xrow = x + g.x_index(n, ci, input_of(i, kh, g.rh, g.ph), input_of(cols.begin, kw, g.rw, g.pw));
          dot_lanes(lanes, grow, xrow, cols.size());
        }
      }
      acc_t acc = 0;
      for (int l = 0; l < kLanes; ++l) acc += lanes[l];
      gw[e] = acc;
    }
  });
}

// ---- GEMM path (wide layout), in the accumulation dtype -------------------------

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

// Weight as [Kh, Kw, Cout, Cin/groups]: tap (kh, kw) of group grp is a contiguous block.
at::Tensor taps_first(const at::Tensor& weight, at::ScalarType acc) {
  return weight.to(acc).permute({2, 3, 0, 1}).contiguous();
}

void gemm_forward(const Geometry& g, const at::Tensor& x, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::Tensor& out, at::ScalarType acc) {
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group(), L = g.wide_cols();
  const auto xw = to_wide_input(x, g, acc);
  const auto wt = taps_first(weight, acc);
  auto ow = at::empty({g.Cout, g.N * g.image_cols()}, x.options().dtype(acc));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    auto o = ow.narrow(0, grp * cout_g, cout_g).narrow(1, 0, L);
    if (bias.has_value())
      o.copy_(bias->narrow(0, grp * cout_g, cout_g).unsqueeze(1));
    else
      o.zero_();
    const auto xg = xw.narrow(0, grp * cin_g, cin_g);
    for (int64_t kh = 0; kh < g.Kh; ++kh)
      for (int64_t kw = 0; kw < g.Kw; ++kw)
        o.addmm_(wt[kh][kw].narrow(0, grp * cout_g, cout_g), xg.narrow(1, g.tap_shift(kh, kw), L));
  }
  out.copy_(ow.view({g.Cout, g.N, g.Hp(), g.Wp()}).narrow(2, 0, g.Ho).narrow(3, 0, g.Wo).transpose(0, 1));
}

void gemm_backward_input(const Geometry& g, const at::Tensor& go, const at::Tensor& weight, at::Tensor& gx,
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

void gemm_backward_weight(const Geometry& g, const at::Tensor& go, const at::Tensor& x, at::Tensor& gw,
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
  // The wide layout also computes the dropped columns; keep it where they are a minority.
  const double useful = double(g.N * g.Ho * g.Wo) / double(std::max<int64_t>(1, g.wide_cols()));
  return g.cin_per_group() >= 8 && g.cout_per_group() >= 8 && useful >= 0.4;
}

at::ScalarType acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;  // opmath_type of every dispatched dtype
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "rarefied_conv2d (cpu kernel): ", name, " must be a CPU tensor, got ",
              t.device());
}

at::Tensor forward_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_cpu(x, "x");
  const Geometry g = forward_geometry(x, weight, bias, rarefaction, padding, groups);
  auto out = at::empty({g.N, g.Cout, g.Ho, g.Wo}, x.options());
  if (out.numel() == 0) return out;
  const auto acc = acc_type(x.scalar_type());
  if (use_gemm(g)) {
    std::optional<at::Tensor> b;
    if (bias.has_value()) b = bias->to(acc);
    gemm_forward(g, x, weight, b, out, acc);
    return out;
  }
  const auto xa = x.to(acc).contiguous(), wa = weight.to(acc).contiguous();
  const auto ba = bias.has_value() ? bias->to(acc).contiguous() : at::Tensor();
  auto oa = x.scalar_type() == acc ? out : at::empty(out.sizes(), out.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rarefied_conv2d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    direct_forward<acc_t>(g, xa.const_data_ptr<acc_t>(), wa.const_data_ptr<acc_t>(),
                          ba.defined() ? ba.const_data_ptr<acc_t>() : nullptr, oa.mutable_data_ptr<acc_t>());
  });
  if (!oa.is_same(out)) out.copy_(oa);
  return out;
}

at::Tensor backward_input_cpu(const at::Tensor& grad_out, const at::Tensor& weight, at::IntArrayRef input_size,
                              at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_cpu(grad_out, "grad_out");
  check_same(weight, grad_out, "weight");
  const Geometry g = backward_geometry(grad_out, input_size, weight.sizes(), rarefaction, padding, groups);
  auto gx = at::empty(input_size, grad_out.options());
  if (gx.numel() == 0) return gx;
  const auto acc = acc_type(grad_out.scalar_type());
  if (use_gemm(g)) {
    gemm_backward_input(g, grad_out, weight, gx, acc);
    return gx;
  }
  const auto goa = grad_out.to(acc).contiguous(), wa = weight.to(acc).contiguous();
  auto gxa = grad_out.scalar_type() == acc ? gx : at::empty(gx.sizes(), gx.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "rarefied_conv2d_bwd_x", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    direct_backward_input<acc_t>(g, goa.const_data_ptr<acc_t>(), wa.const_data_ptr<acc_t>(),
                                 gxa.mutable_data_ptr<acc_t>());
  });
  if (!gxa.is_same(gx)) gx.copy_(gxa);
  return gx;
}

at::Tensor backward_weight_cpu(const at::Tensor& grad_out, const at::Tensor& x, at::IntArrayRef weight_size,
                               at::IntArrayRef rarefaction, at::IntArrayRef padding, int64_t groups) {
  check_cpu(grad_out, "grad_out");
  check_same(x, grad_out, "x");
  const Geometry g = backward_geometry(grad_out, x.sizes(), weight_size, rarefaction, padding, groups);
  if (g.N == 0) return at::zeros(weight_size, grad_out.options());
  auto gw = at::empty(weight_size, grad_out.options());
  const auto acc = acc_type(grad_out.scalar_type());
  if (use_gemm(g)) {
    gemm_backward_weight(g, grad_out, x, gw, acc);
    return gw;
  }
  const auto goa = grad_out.to(acc).contiguous(), xa = x.to(acc).contiguous();
  auto gwa = grad_out.scalar_type() == acc ? gw : at::empty(gw.sizes(), gw.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "rarefied_conv2d_bwd_w", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    direct_backward_weight<acc_t>(g, goa.const_data_ptr<acc_t>(), xa.const_data_ptr<acc_t>(),
                                  gwa.mutable_data_ptr<acc_t>());
  });
  if (!gwa.is_same(gw)) gw.copy_(gwa);
  return gw;
}

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) {
  m.impl("rarefied_conv2d", &forward_cpu);
  m.impl("rarefied_conv2d_backward_input", &backward_input_cpu);
  m.impl("rarefied_conv2d_backward_weight", &backward_weight_cpu);
}

}  // namespace rarefied_conv
}  // namespace fcn_kernels
