// upsample_skip on CPU: transposed conv + crop + skip add in one pass over the
// cropped output, and its two backward passes. Deterministic: every output
// element is written by one thread with a fixed summation order.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../upsample_skip_host.h"

namespace fcn_kernels {
namespace upsample_skip {
namespace {

// Aim for chunks of roughly this many multiply-adds per parallel task.
constexpr int64_t kGrainWork = 1 << 15;

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
}

// One output row (n, co, i) at a time. Output columns are accumulated by phase
// (q mod sw): all columns of a phase see the same taps kw = phase + t * sw, and
// consecutive columns of a phase read consecutive inputs, so the innermost loop
// is a unit-stride axpy the compiler vectorizes. A final pass interleaves the
// phases, adds bias and skip, and stores each output element once.
template <typename scalar_t>
void forward_kernel(const Geometry& g, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                    const scalar_t* skip, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  std::vector<Range> phase(g.sw);
  std::vector<int64_t> base(g.sw + 1, 0);
  for (int64_t r = 0; r < g.sw; ++r) {
    phase[r] = window_positions(r, g.sw, g.ox, g.Wo);
    base[r + 1] = base[r] + phase[r].size();
  }
  const int64_t taps = ceil_div(g.Kh, g.sh) * ceil_div(g.Kw, g.sw);
  const int64_t rows = g.N * g.Cout * g.Ho;
  at::parallel_for(0, rows, grain_for(g.Wo * cin_g * taps), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.Wo);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row % g.Ho, co = (row / g.Ho) % g.Cout, n = row / (g.Ho * g.Cout);
      const int64_t grp = co / cout_g, co_l = co % cout_g;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const int64_t p = i + g.oy;
      const Range ih = inputs_for_output(p, g.sh, g.Kh, g.H);
      for (int64_t ci = grp * cin_g; ci < (grp + 1) * cin_g; ++ci) {
        for (int64_t in_row = ih.begin; in_row < ih.end; ++in_row) {
          const int64_t kh = p - in_row * g.sh;
          const scalar_t* xrow = x + g.x_index(n, ci, in_row, 0);
          const scalar_t* wrow = w + g.w_index(ci, co_l, kh, 0);
          for (int64_t r = 0; r < g.sw; ++r) {
            acc_t* a = acc.data() + base[r] - phase[r].begin;  // a[m], m in phase[r]
            for (int64_t kw = r, t = 0; kw < g.Kw; kw += g.sw, ++t) {
              const int64_t m0 = std::max(phase[r].begin, t), m1 = std::min(phase[r].end, g.W + t);
              const acc_t wv = static_cast<acc_t>(wrow[kw]);
              for (int64_t m = m0; m < m1; ++m) a[m] += wv * static_cast<acc_t>(xrow[m - t]);
            }
          }
        }
      }
      const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
      const scalar_t* srow = skip ? skip + g.skip_index(n, co, i, 0) : nullptr;
      scalar_t* orow = out + g.out_index(n, co, i, 0);
      int64_t r = g.ox % g.sw, m = g.ox / g.sw;
      for (int64_t j = 0; j < g.Wo; ++j) {
        acc_t v = acc[base[r] + m - phase[r].begin] + b;
        if (srow) v += static_cast<acc_t>(srow[j]);
        orow[j] = static_cast<scalar_t>(v);
        if (++r == g.sw) { r = 0; ++m; }
      }
    }
  });
}

// grad_x[n, ci, ih, iw] = sum over the taps that land in the crop window of
// grad_out * w: a strided correlation, one input row per task.
template <typename scalar_t>
void backward_input_kernel(const Geometry& g, const scalar_t* go, const scalar_t* w, scalar_t* gx) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t rows = g.N * g.Cin * g.H;
  at::parallel_for(0, rows, grain_for(g.W * cout_g * g.Kh * g.Kw / (g.sh * g.sw)),
                   [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t ih = row % g.H, ci = (row / g.H) % g.Cin, n = row / (g.H * g.Cin);
      const int64_t grp = ci / cin_g;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const Range kh_r = taps_in_window(ih, g.sh, g.Kh, g.oy, g.Ho);
      for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
        const int64_t co = grp * cout_g + co_l;
        for (int64_t kh = kh_r.begin; kh < kh_r.end; ++kh) {
          const scalar_t* grow = go + g.out_index(n, co, ih * g.sh + kh - g.oy, 0);
          const scalar_t* wrow = w + g.w_index(ci, co_l, kh, 0);
          for (int64_t kw = 0; kw < g.Kw; ++kw) {
            const Range iw = inputs_in_window(kw, g.sw, g.ox, g.Wo, g.W);
            const acc_t wv = static_cast<acc_t>(wrow[kw]);
            const int64_t shift = kw - g.ox;
            for (int64_t j = iw.begin; j < iw.end; ++j)
              acc[j] += wv * static_cast<acc_t>(grow[j * g.sw + shift]);
          }
        }
      }
      scalar_t* out_row = gx + g.x_index(n, ci, ih, 0);
      for (int64_t j = 0; j < g.W; ++j) out_row[j] = static_cast<scalar_t>(acc[j]);
    }
  });
}

// grad_w[ci, co_l, kh, kw] = sum over n and the inputs that tap (kh, kw) carries
// into the crop window of x * grad_out. One weight element per task, reduced in
// a fixed order: no atomics, the same bits every run.
template <typename scalar_t>
void backward_weight_kernel(const Geometry& g, const scalar_t* go, const scalar_t* x, scalar_t* gw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t elems = g.Cin * cout_g * g.Kh * g.Kw;
  at::parallel_for(0, elems, grain_for(g.N * g.H * g.W), [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t kw = e % g.Kw, kh = (e / g.Kw) % g.Kh;
      const int64_t co_l = (e / (g.Kw * g.Kh)) % cout_g, ci = e / (g.Kw * g.Kh * cout_g);
      const int64_t co = (ci / cin_g) * cout_g + co_l;
      const Range ih = inputs_in_window(kh, g.sh, g.oy, g.Ho, g.H);
      const Range iw = inputs_in_window(kw, g.sw, g.ox, g.Wo, g.W);
      const int64_t shift = kw - g.ox;
      acc_t acc = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        for (int64_t i = ih.begin; i < ih.end; ++i) {
          const scalar_t* xrow = x + g.x_index(n, ci, i, 0);
          const scalar_t* grow = go + g.out_index(n, co, i * g.sh + kh - g.oy, 0);
          for (int64_t j = iw.begin; j < iw.end; ++j)
            acc += static_cast<acc_t>(xrow[j]) * static_cast<acc_t>(grow[j * g.sw + shift]);
        }
      }
      gw[e] = static_cast<scalar_t>(acc);
    }
  });
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "upsample_skip (cpu kernel): ", name, " must be a CPU tensor, got ",
              t.device());
}

at::Tensor forward_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& skip, at::IntArrayRef stride, int64_t groups,
                       at::IntArrayRef out_offset, at::IntArrayRef out_size, at::IntArrayRef skip_offset) {
  check_cpu(x, "x");
  const Geometry g = forward_geometry(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset);
  auto out = at::empty({g.N, g.Cout, g.Ho, g.Wo}, x.options());
  if (out.numel() == 0) return out;
  const auto xc = x.contiguous(), wc = weight.contiguous();
  const auto bc = bias.has_value() ? bias->contiguous() : at::Tensor();
  const auto sc = skip.has_value() ? skip->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upsample_skip_cpu", [&] {
    forward_kernel<scalar_t>(g, xc.const_data_ptr<scalar_t>(), wc.const_data_ptr<scalar_t>(),
                             bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr,
                             sc.defined() ? sc.const_data_ptr<scalar_t>() : nullptr,
                             out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor backward_input_cpu(const at::Tensor& grad_out, const at::Tensor& weight, at::IntArrayRef input_size,
                              at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset) {
  check_cpu(grad_out, "grad_out");
  check_same(weight, grad_out, "weight");
  const Geometry g = backward_geometry(grad_out, input_size, weight.sizes(), stride, groups, out_offset);
  auto gx = at::empty(input_size, grad_out.options());
  if (gx.numel() == 0) return gx;
  const auto goc = grad_out.contiguous(), wc = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "upsample_skip_bwd_x", [&] {
    backward_input_kernel<scalar_t>(g, goc.const_data_ptr<scalar_t>(), wc.const_data_ptr<scalar_t>(),
                                    gx.mutable_data_ptr<scalar_t>());
  });
  return gx;
}

at::Tensor backward_weight_cpu(const at::Tensor& grad_out, const at::Tensor& x, at::IntArrayRef weight_size,
                               at::IntArrayRef stride, int64_t groups, at::IntArrayRef out_offset) {
  check_cpu(grad_out, "grad_out");
  check_same(x, grad_out, "x");
  const Geometry g = backward_geometry(grad_out, x.sizes(), weight_size, stride, groups, out_offset);
  auto gw = at::empty(weight_size, grad_out.options());
  if (gw.numel() == 0) return gw;
  const auto goc = grad_out.contiguous(), xc = x.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "upsample_skip_bwd_w", [&] {
    backward_weight_kernel<scalar_t>(g, goc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(),
                                     gw.mutable_data_ptr<scalar_t>());
  });
  return gw;
}

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) {
  m.impl("upsample_skip", &forward_cpu);
  m.impl("upsample_skip_backward_input", &backward_input_cpu);
  m.impl("upsample_skip_backward_weight", &backward_weight_cpu);
}

}  // namespace upsample_skip
}  // namespace fcn_kernels
