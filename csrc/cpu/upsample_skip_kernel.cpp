// upsample_skip on CPU: transposed conv + crop + skip add in one pass over the
// cropped output, and its two backward passes, over the row machinery of
// upsample_rows.h. Deterministic: every output element is written by one thread
// with a fixed summation order.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../host/upsample_skip.h"
#include "finite.h"
#include "parallel_chunks.h"
#include "upsample_rows.h"

namespace fcn_kernels {
namespace upsample_skip {
namespace {

// A cropped grad_out row put back in full-output coordinates, zero outside the crop window:
// goz[m * sw + r] = grad_out[m * sw + r - ox] for blocks m in [0, blocks).
template <typename scalar_t, typename acc_t>
void full_row(const Geometry& g, const scalar_t* grow, acc_t* goz, int64_t blocks) {
  const int64_t len = blocks * g.sw;
  const int64_t lo = std::min(g.ox, len), hi = std::min(g.ox + g.Wo, len);
  std::fill(goz, goz + lo, acc_t(0));
  for (int64_t q = lo; q < hi; ++q) goz[q] = static_cast<acc_t>(grow[q - g.ox]);
  std::fill(goz + std::max(hi, lo), goz + len, acc_t(0));
}

// Aligned rows: each output row of FCN's bilinear upscore8 and upscore16 (the separable form with 2 tap blocks,
// in float, with AVX-512 compiled in) written in 16-lane stores at the row's 64-byte boundaries, masked at its
// two ends, each lane built from the combined row by a permute, instead of the register blocks' stores wherever
// the crop puts them. Measured in one process against the blocks at upscore8, batch 1, 500x500 (2-core AMD EPYC
// with AVX-512, interleaved calls): 0.92x-0.93x of their time at 1 thread, 0.95x-0.96x at 2. Session 12's
// 32-byte version was 20% slower. Session 19 (Zen 4, both versions in one build, calls interleaved): the combined
// row computed in registers from the input rows rather than stored, and the layout kept per alignment, took
// 0.86x-0.93x of the time before at 1 thread (batch 1 and 4), 0.96x-1.02x at 2. Each lane adds the same terms in the same order and the same expressions as
// the block it belongs to (0, then the terms inside x, the bias, the skip), so that the scores are the blocks'
// to the bit (and so upsample_argmax's, which sums through the blocks), signs of zero included, whether or not
// the compiler contracts them to FMAs (it does not at -O1, the sanitizers' build).
template <int SW, typename scalar_t>
constexpr bool kAlignedRows =
#if defined(__AVX512F__)
    (SW == 8 || SW == 16) && std::is_same_v<scalar_t, float>;
#else
    false;
#endif

#if defined(__AVX512F__)
// The combined row's padding before and after its W elements (AlignedRows' buffer, read through YFromBuffer, is
// kYPad + W + kYPad), so that every 4-element load lies inside it: a vector's lanes reach up to 2 blocks before the
// row's first block and after its last, and its load starts one before its first lane's block. The values there
// are never used.
constexpr int64_t kYPad = 4;

// v's lanes idx (vpermps). The masked forms here and below, with every lane set: the plain intrinsics start from
// an undefined vector, which GCC 12 warns of as used uninitialized.
FCN_BLOCK_INLINE __m512 permute(__m512i idx, __m512 v) { return _mm512_mask_permutexvar_ps(v, __mmask16(0xFFFF), idx, v); }

// Where an output row's vectors fall, for rows whose column 0 lies j0 floats (-15 .. 0) after a 64-byte boundary:
// the same for every such row of the plan, so computed once per alignment on each thread rather than per row (at
// upscore8, outside the row's inner loop, its setup, its two masked ends and its combined row took a third of its
// time in perf, session 19).
struct AlignedLayout {
  // lane l's index s = a + l: y[m] is element s / SW + 1 of a 4-element load from y[m_j - 1], y[m - 1] element
  // s / SW, its weights element s % SW of b0 and b1. Computed in registers (a table filled lane by lane per row
  // became gathers, a fifth of the op), in GNU vectors where the intrinsics start from an undefined vector
  // (GCC 12 warns of those).
  __m512i I0, I1, P;
  // Vector k: columns j0 + 16 k .., its lane 0 in block mj0 + k * step, its load from y[mj0 + k * step - 1]. The
  // inner ones [k_lo, k_hi), whole and every term inside x (blocks 1 .. W - 1); the others (a few at each end)
  // masked, and checked lane by lane only where a lane's block may lie outside 1 .. W - 1 (plain_lo .. plain_hi
  // is where none does: upscore8's crop leaves both ends of every row there).
  int64_t mj0 = 0, K = 0, k_lo = 0, k_hi = 0, plain_lo = 0, plain_hi = 0;
  bool set = false;
};

template <int SW, typename Plan>
AlignedLayout aligned_layout(const Plan& plan, int64_t j0) {
  AlignedLayout L;
  const int64_t Wo = plan.g.Wo, Wx = plan.g.W;
  // lane l of the vector at column j: block m_lo + (j + first + l) / SW (floored), phase (j + first + l) % SW,
  // the same for every vector (16 is a multiple of SW); its terms y[m] * b0 and y[m - 1] * b1
  const int64_t q0 = j0 + plan.first + 16 * SW;  // kept positive for the divisions: 16 * SW is a whole block count
  using Lanes = Block<int32_t, 16>;
  const Lanes S = Lanes{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} + int32_t(q0 % SW);
  L.I1 = (__m512i)(S / SW), L.I0 = (__m512i)(S / SW + 1), L.P = (__m512i)(S % SW);
  constexpr int64_t step = 16 / SW;
  L.mj0 = plan.m_lo + q0 / SW - 16, L.K = ceil_div(Wo - j0, int64_t(16));
  // vector k's lanes lie in blocks mj0 + k * step + (0 .. (15 + q0 % SW) / SW)
  const int64_t reach = (15 + q0 % SW) / SW;
  L.plain_lo = ceil_div(1 - L.mj0, step), L.plain_hi = floor_div(Wx - 1 - reach - L.mj0, step) + 1;
  L.k_lo = std::max<int64_t>(j0 < 0 ? 1 : 0, L.plain_lo);
  L.k_hi = std::max(L.k_lo, std::min({L.K, floor_div(Wo - 16 - j0, int64_t(16)) + 1, floor_div(Wx - 3 - L.mj0, step) + 1}));
  L.set = true;
  return L;
}

// The combined row y's elements [c, c + 4) in a vector's low lanes (its others unused): from a buffer (RowPlan::sep_row's
// y) or computed from the row's two input rows, as sep_row computes them (fma(x1, a1, x0 * a0)), where a row has two
// (every row of FCN's stages). Computed, y is never stored: its stores had been a seventh of a row's, in an op bound
// by its stores (at upscore8, 5 a row beside the row's 32).
struct YFromBuffer {
  const float* y;  // y[0] (kYPad elements before it and after y[W - 1] readable)
  template <bool kMasked>
  FCN_BLOCK_INLINE __m512 at(int64_t c) const {
    return _mm512_maskz_broadcast_f32x4(__mmask16(0xFFFF), _mm_loadu_ps(y + c));
  }
};

struct YFromPair {
  const float *x0, *x1;  // the input rows
  float s0, s1;          // their factors
  int64_t W;
  __m128 a0 = _mm_set1_ps(s0), a1 = _mm_set1_ps(s1);
  // kMasked: elements outside [0, W) (a vector at a row's end) as 0, never read from x (their terms are not used)
  template <bool kMasked>
  FCN_BLOCK_INLINE __m512 at(int64_t c) const {
    if constexpr (kMasked) {  // (in 512 bits: the 128-bit masked loads need AVX512VL)
      const int64_t lo = std::clamp<int64_t>(-c, 0, 4), hi = std::clamp<int64_t>(W - c, 0, 4);
      const __mmask16 m = __mmask16(((1u << hi) - 1u) & ~((1u << lo) - 1u));  // masked lanes are not read
      const __m512 v0 = _mm512_maskz_loadu_ps(m, x0 + c), v1 = _mm512_maskz_loadu_ps(m, x1 + c);
      return _mm512_fmadd_ps(v1, _mm512_set1_ps(s1), _mm512_mul_ps(v0, _mm512_set1_ps(s0)));
    }
    return _mm512_zextps128_ps512(_mm_fmadd_ps(_mm_loadu_ps(x1 + c), a1, _mm_mul_ps(_mm_loadu_ps(x0 + c), a0)));
  }
};

// An output row of channel c of a separable plan with T == 2 from its combined row (Y: YFromBuffer or YFromPair),
// laid out as L says (L's j0: orow's offset from its 64-byte boundary).
template <int SW, typename Plan, typename Y>
FCN_BLOCK_INLINE void aligned_row(const Plan& plan, const AlignedLayout& L, int64_t j0, int64_t c, const Y& ysrc,
                                  float* orow, const float* srow, float b) {
  // b's two tap blocks (sep_put's), read from the plan: a copy just stored (Taps) and loaded in 64 bytes
  // stalls the load until the store retires, which cost a quarter of the row
  const float* taps = plan.factors.data() + c * (plan.g.Kh + plan.g.Kw) + plan.g.Kh;
  const int64_t Wo = plan.g.Wo;
  const __m512i I0 = L.I0, I1 = L.I1, P = L.P;
  const auto weights = [&](int t) FCN_BLOCK_INLINE_LAMBDA {  // tap block t's SW weights in lanes P
    return permute(P, _mm512_maskz_loadu_ps(__mmask16((1u << SW) - 1u), taps + t * SW));
  };
  const __m512 B0 = weights(0), B1 = weights(1), bias = _mm512_set1_ps(b);
  const __m512i W = _mm512_set1_epi32(int32_t(plan.g.W));
  // Taps::at's sums, in the same expressions (so that the compiler contracts them to FMAs exactly where it does
  // the blocks'): 0, then each term whose element of y lies inside x (0 <= m < W for y[m], 1 <= m <= W for
  // y[m - 1]) added as v += y * b; then the bias. edge: lane by lane, for the vectors that may reach block 0 or
  // W (elsewhere every term is inside, and both forms add the same terms). y: y[mj - 1 .. mj + 2] in lanes 0 .. 3.
  const auto vec = [&](__m512 y, int64_t mj, auto edge) FCN_BLOCK_INLINE_LAMBDA {
    const __m512 y0 = permute(I0, y), y1 = permute(I1, y);
    __m512 v = _mm512_setzero_ps();
    if constexpr (decltype(edge)::value) {
      const __m512i m = _mm512_add_epi32(I1, _mm512_set1_epi32(int32_t(mj)));  // each lane's block
      const __mmask16 in0 = _mm512_cmpge_epi32_mask(m, _mm512_setzero_si512()) & _mm512_cmplt_epi32_mask(m, W);
      const __mmask16 in1 = _mm512_cmpge_epi32_mask(m, _mm512_set1_epi32(1)) & _mm512_cmple_epi32_mask(m, W);
      v = _mm512_mask_mov_ps(v, in0, v + y0 * B0);
      v = _mm512_mask_mov_ps(v, in1, v + y1 * B1);
    } else {
      v += y0 * B0;
      v += y1 * B1;
    }
    return v + bias;
  };
  constexpr int64_t step = 16 / SW;
  const int64_t mj0 = L.mj0, K = L.K, k_lo = L.k_lo, k_hi = L.k_hi;
  const auto masked = [&](int64_t k) FCN_BLOCK_INLINE_LAMBDA {
    const int64_t j = j0 + 16 * k, mj = mj0 + k * step;
    const __mmask16 lanes = __mmask16(((1u << std::min<int64_t>(16, Wo - j)) - 1u) & ~((1u << std::max<int64_t>(0, -j)) - 1u));
    const __m512 y = ysrc.template at<true>(mj - 1);
    __m512 v = k >= L.plain_lo && k < L.plain_hi ? vec(y, 0, std::false_type{}) : vec(y, mj, std::true_type{});
    if (srow) v += _mm512_maskz_loadu_ps(lanes, srow + j);
    _mm512_mask_store_ps(orow + j, lanes, v);
  };
  for (int64_t k = 0; k < k_lo && k < K; ++k) masked(k);
  float* o = orow + j0 + 16 * k_lo;
  int64_t ym = mj0 - 1 + k_lo * step;
  if (srow) {
    const float* sp = srow + j0 + 16 * k_lo;
    for (int64_t k = k_lo; k < k_hi; ++k, o += 16, ym += step, sp += 16)
      _mm512_store_ps(o, vec(ysrc.template at<false>(ym), 0, std::false_type{}) + _mm512_loadu_ps(sp));
  } else {
    for (int64_t k = k_lo; k < k_hi; ++k, o += 16, ym += step)
      _mm512_store_ps(o, vec(ysrc.template at<false>(ym), 0, std::false_type{}));
  }
  for (int64_t k = k_hi; k < K; ++k) masked(k);
}

// One thread's rows of a separable plan with T == 2, over its chunks: the layouts met so far, and a buffer for the
// combined row of a row with other than two input rows.
template <int SW, typename Plan>
class AlignedRows {
 public:
  explicit AlignedRows(const Plan& plan) : plan_(plan), ybuf_(kYPad + plan.g.W + kYPad, 0.0f) {}

  // Rows [begin, end).
  void run(const float* x, const float* bias, const float* skip, float* out, int64_t begin, int64_t end) {
    const Geometry& g = plan_.g;
    // (n, co, i) of row, counted along rather than divided out per row
    int64_t i = begin % g.Ho, co = (begin / g.Ho) % g.Cout, n = begin / (g.Ho * g.Cout);
    for (int64_t row = begin; row < end; ++row) {
      float* orow = out + g.out_index(n, co, i, 0);
      // j0: the 64-byte boundary at or before column 0 (orow is float-aligned: a float tensor's data)
      const int64_t j0 = -int64_t(reinterpret_cast<uintptr_t>(orow) / sizeof(float) % 16);
      AlignedLayout& L = layouts_[-j0];
      if (!L.set) L = aligned_layout<SW>(plan_, j0);
      const float* srow = skip ? skip + g.skip_index(n, co, i, 0) : nullptr;
      const float b = bias ? bias[co] : 0.0f;
      const Range ih = plan_.inputs[i];
      if (ih.size() == 2) {
        const float* a = plan_.factors.data() + co * (g.Kh + g.Kw);
        const int64_t p = i + g.oy;
        const YFromPair y{x + g.x_index(n, co, ih.begin, 0), x + g.x_index(n, co, ih.begin + 1, 0),
                          a[p - ih.begin * g.sh], a[p - (ih.begin + 1) * g.sh], g.W};
        aligned_row<SW>(plan_, L, j0, co, y, orow, srow, b);
      } else {
        plan_.sep_row(x, n, co, i, ybuf_.data() + kYPad, 0, g.W);
        aligned_row<SW>(plan_, L, j0, co, YFromBuffer{ybuf_.data() + kYPad}, orow, srow, b);
      }
      if (++i == g.Ho && (i = 0, ++co == g.Cout)) co = 0, ++n;
    }
  }

 private:
  const Plan& plan_;
  std::vector<float> ybuf_;
  AlignedLayout layouts_[16];
};
#endif

// One output row (n, co, i) per step: accumulate the blocks covering the crop window, then
// store the window with bias and skip added, each output element written once.
// scores_finite(): scores_stay_finite, for RowPlan::use_separable.
template <int SW, typename scalar_t, typename Finite>
void forward_kernel(Stride<SW> sw, const Geometry& g, const scalar_t* x, const scalar_t* w,
                    const scalar_t* bias, const scalar_t* skip, scalar_t* out, Finite&& scores_finite) {
  using acc_t = at::opmath_type<scalar_t>;
  RowPlan<SW, scalar_t> plan_(sw, g, w);
  plan_.use_separable(w, scores_finite);
  const RowPlan<SW, scalar_t>& plan = plan_;
  const int64_t rows = g.N * g.Cout * g.Ho;
  parallel_chunks(rows, grain_for(plan.work()), [&](auto next) {
#if defined(__AVX512F__)
    if constexpr (kAlignedRows<SW, scalar_t>) {
      // (block indices in 32-bit lanes)
      if (plan.separable() && plan.T == 2 && g.W < (int64_t(1) << 30)) {
        AlignedRows<SW, RowPlan<SW, scalar_t>> rows(plan);
        for (int64_t begin, end; next(begin, end);) rows.run(x, bias, skip, out, begin, end);
        return;
      }
    }
#endif
    const YRows yrows(plan);
    std::vector<acc_t> acc, ybuf = yrows.template buffer<acc_t>(plan.separable() ? 1 : 0);
    for (int64_t begin, end; next(begin, end);) {
      // (n, co, i) of row, counted along rather than divided out per row
      int64_t i = begin % g.Ho, co = (begin / g.Ho) % g.Cout, n = begin / (g.Ho * g.Cout);
      const auto advance = [&] {
        if (++i == g.Ho && (i = 0, ++co == g.Cout)) co = 0, ++n;
      };
      for (int64_t row = begin; row < end; ++row, advance()) {
        const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
        scalar_t* orow = out + g.out_index(n, co, i, 0);
        const scalar_t* srow = skip ? skip + g.skip_index(n, co, i, 0) : nullptr;
        // each block from registers straight into the output row
        const auto store = [&](auto with_skip) FCN_BLOCK_INLINE_LAMBDA {
          // By value, not by reference: the block loop then keeps them in registers; captured by
          // reference they were re-read after every store (upscore8, 500x500: 2.0 ms -> 1.4 ms).
          const int64_t off = plan.column_offset();
          const auto put = [&plan, orow, srow, b, off, with_skip](int64_t m, auto v, auto core) FCN_BLOCK_INLINE_LAMBDA {
            using Vec = decltype(v);
            const int64_t j0 = m * plan.sw() - off;  // plan.column(m)
            int64_t r0 = 0, r1 = SW;
            if constexpr (!core) plan.window(m, r0, r1);
            v += b;
            if constexpr (with_skip) v += load_block<Vec>(srow + j0, r0, r1);
            store_block(orow + j0, v, r0, r1);
          };
          return plan.with_taps(x, n, co, i, yrows.row(ybuf, 0), put);
        };
        if (srow ? store(std::true_type{}) : store(std::false_type{})) continue;
        acc.resize(plan.acc_size());
        const acc_t* a = plan.row(x, n, co, i, acc.data());
        if (skip) {
          for (int64_t j = 0; j < g.Wo; ++j) orow[j] = static_cast<scalar_t>(a[j] + b + static_cast<acc_t>(srow[j]));
        } else {
          for (int64_t j = 0; j < g.Wo; ++j) orow[j] = static_cast<scalar_t>(a[j] + b);
        }
      }
    }
  });
}

// Dense and grouped weights with many channels: per output block row, a GEMM. Full-output
// position (bi * sh + rh, bj * sw + rw) receives x[ci, bi - th, bj - tw] * w[ci, co, rh + th * sh,
// rw + tw * sw], so for one block row bi and group
//   C[bj, (co_l, rh, rw)] = A[bj, (ci_l, th, tw)] @ B[(ci_l, th, tw), (co_l, rh, rw)]
// with A a small gather of x and B the weight regrouped once. Each tile C (a few hundred KB) goes
// straight into the cropped output with bias and skip added: still one pass, no uncropped output.
template <typename scalar_t>
void forward_gemm_kernel(const Geometry& g, const scalar_t* x, const scalar_t* w, const scalar_t* bias,
                         const scalar_t* skip, scalar_t* out, const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t Th = ceil_div(g.Kh, g.sh), Tw = ceil_div(g.Kw, g.sw);
  const int64_t kdim = cin_g * Th * Tw, cols = cout_g * g.sh * g.sw;
  const auto B = weight_blocks(g, w, acc_options);
  const int64_t bi_lo = floor_div(g.oy, g.sh), bi_hi = ceil_div(g.oy + g.Ho, g.sh);
  const int64_t bj_lo = floor_div(g.ox, g.sw), bj_hi = ceil_div(g.ox + g.Wo, g.sw), nb = bj_hi - bj_lo;
  const int64_t tasks = g.N * g.groups * (bi_hi - bi_lo);
  parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    auto A = at::empty({nb, kdim}, acc_options), C = at::empty({nb, cols}, acc_options);
    acc_t* a = A.mutable_data_ptr<acc_t>();
    const acc_t* c = C.const_data_ptr<acc_t>();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = bi_lo + task % (bi_hi - bi_lo), grp = (task / (bi_hi - bi_lo)) % g.groups;
      const int64_t n = task / ((bi_hi - bi_lo) * g.groups);
      gather_block_row(g, x, n, grp, bi, bj_lo, bj_hi, a);
      at::mm_out(C, A, B[grp]);
      for (int64_t co_l = 0; co_l < cout_g; ++co_l) {
        const int64_t co = grp * cout_g + co_l;
        const acc_t b = bias ? static_cast<acc_t>(bias[co]) : acc_t(0);
        for (int64_t rh = 0; rh < g.sh; ++rh) {
          const int64_t i = bi * g.sh + rh - g.oy;
          if (i < 0 || i >= g.Ho) continue;
          scalar_t* orow = out + g.out_index(n, co, i, 0);
          const scalar_t* srow = skip ? skip + g.skip_index(n, co, i, 0) : nullptr;
          for (int64_t bj = bj_lo; bj < bj_hi; ++bj) {
            const acc_t* cb = c + (bj - bj_lo) * cols + (co_l * g.sh + rh) * g.sw;
            const int64_t j0 = bj * g.sw - g.ox;
            const int64_t r0 = std::max<int64_t>(0, -j0), r1 = std::min<int64_t>(g.sw, g.Wo - j0);
            for (int64_t r = r0; r < r1; ++r) {
              acc_t v = cb[r] + b;
              if (srow) v += static_cast<acc_t>(srow[j0 + r]);
              orow[j0 + r] = static_cast<scalar_t>(v);
            }
          }
        }
      }
    }
  });
}

// The input gradient of the GEMM path. With grad_out in block form, G[(bi, bj), (co_l, rh, rw)] =
// grad_out[co, bi * sh + rh - oy, bj * sw + rw - ox] (zero outside the crop window),
//   grad_x[ci, ih, iw] = sum over (th, tw) of G[(ih + th, iw + tw), :] . B[grp, (ci_l, th, tw), :]
// so each input row is Th * Tw GEMMs (W x cols) @ (cols x cin_g) over a tile of G built per task.
template <typename scalar_t>
void backward_input_gemm_kernel(const Geometry& g, const scalar_t* go, const scalar_t* w, scalar_t* gx,
                                const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t Th = ceil_div(g.Kh, g.sh), Tw = ceil_div(g.Kw, g.sw);
  const int64_t cols = cout_g * g.sh * g.sw, nbw = g.W + Tw - 1;
  const auto B = weight_blocks(g, w, acc_options).view({g.groups, cin_g, Th, Tw, cols});
  const int64_t tasks = g.N * g.groups * g.H;
  parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    auto G = at::empty({Th, nbw, cols}, acc_options), C = at::empty({g.W, cin_g}, acc_options);
    acc_t* gp = G.mutable_data_ptr<acc_t>();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t ih = task % g.H, grp = (task / g.H) % g.groups, n = task / (g.H * g.groups);
      for (int64_t th = 0; th < Th; ++th)
        for (int64_t co_l = 0; co_l < cout_g; ++co_l)
          for (int64_t rh = 0; rh < g.sh; ++rh) {
            const int64_t i = (ih + th) * g.sh + rh - g.oy;
            const scalar_t* grow = (i >= 0 && i < g.Ho) ? go + g.out_index(n, grp * cout_g + co_l, i, 0) : nullptr;
            acc_t* dst = gp + th * nbw * cols + (co_l * g.sh + rh) * g.sw;
            for (int64_t bj = 0; bj < nbw; ++bj)
              for (int64_t rw = 0; rw < g.sw; ++rw) {
                const int64_t j = bj * g.sw + rw - g.ox;
                dst[bj * cols + rw] = (grow && j >= 0 && j < g.Wo) ? static_cast<acc_t>(grow[j]) : acc_t(0);
              }
          }
      C.zero_();
      for (int64_t th = 0; th < Th; ++th)
        for (int64_t tw = 0; tw < Tw; ++tw)
          C.addmm_(G[th].narrow(0, tw, g.W), B[grp].select(1, th).select(1, tw).t());
      const acc_t* c = C.const_data_ptr<acc_t>();
      for (int64_t ci_l = 0; ci_l < cin_g; ++ci_l) {
        scalar_t* out_row = gx + g.x_index(n, grp * cin_g + ci_l, ih, 0);
        for (int64_t iw = 0; iw < g.W; ++iw) out_row[iw] = static_cast<scalar_t>(c[iw * cin_g + ci_l]);
      }
    }
  });
}

// The input gradient's GEMMs choose as forward_uses_gemm does (upsample_rows.h), checking grad_out where
// weight_blocks' zeros meet it. (Its zeros outside the crop window are the stock composition's too.)
bool backward_input_uses_gemm(const Geometry& g, const at::Tensor& grad_out) {
  return use_gemm(g) && (whole_tap_blocks(g) || all_finite(grad_out));
}

// Input columns whose lanes backward_input_blocks keeps in registers at once: 256 bytes of sums (8
// columns of float at stride 8, 4 at stride 16), at most 16 columns. Only for column blocks of at most 64
// bytes: at stride 32 (FCN-32s, kernel 64) the expanded rows outgrow the L1 cache and the path measured
// slower than the row-at-a-time loop (input gradient at 500x500, 1 thread: 6.7-7.8 against 3.9-5.4 ms;
// stride 16: 3.3-4.3 against 8.7-11.7 ms; stride 8: 3.2-4.0 against 7.6-9.1 ms, over this session's runs).
template <int SW, typename acc_t>
constexpr bool kInputGradRegisters = SW > 0 && SW * sizeof(acc_t) <= 64;

template <int SW, typename acc_t>
constexpr int kInputGradColumns = SW > 0 ? std::clamp<int>(256 / (SW * int(sizeof(acc_t))), 1, 16) : 1;

// The lanes of input columns [iw0, iw0 + B) (acc, sw per column) plus one output channel's terms: every
// kh row of goz (full_row's, `stride` apart) times its tap blocks wrow (T blocks of sw a row, Kh rows
// `wstride` apart), accumulated in registers over (kh, t) in the loops' order and stored once.
template <int SW, int B, typename acc_t>
FCN_BLOCK_INLINE void backward_input_blocks(acc_t* __restrict__ acc, const acc_t* goz, int64_t stride,
                                            const acc_t* wrow, int64_t wstride, int64_t kh_count, int64_t T,
                                            int64_t iw0) {
  using Vec = Block<acc_t, SW>;
  Vec a[B];
  for (int b = 0; b < B; ++b) std::memcpy(&a[b], acc + (iw0 + b) * SW, sizeof(Vec));
  for (int64_t k = 0; k < kh_count; ++k) {
    const acc_t* gz = goz + k * stride;
    for (int64_t t = 0; t < T; ++t) {
      Vec wv;
      std::memcpy(&wv, wrow + k * wstride + t * SW, sizeof(Vec));
      for (int b = 0; b < B; ++b) {
        Vec v;
        std::memcpy(&v, gz + (iw0 + b + t) * SW, sizeof(Vec));
        a[b] += v * wv;
      }
    }
  }
  for (int b = 0; b < B; ++b) std::memcpy(acc + (iw0 + b) * SW, &a[b], sizeof(Vec));
}

// grad_x[n, ci, ih, iw] = sum over co, kh, t, r of goz[(iw + t) * sw + r] * wt[t * sw + r]: per input
// row, blocks of sw partial sums (unit stride), reduced across the block at the end. Where the stride
// is fixed at compile time, divides the kernel width (every FCN stage) and kInputGradRegisters holds,
// each output channel's kh rows are put back in full coordinates first, then a few columns' lanes at a
// time stay in registers over all of them (backward_input_blocks; they went through memory for every
// term). The same terms in the same order either way.
template <int SW, typename scalar_t>
void backward_input_kernel(Stride<SW> sw, const Geometry& g, const scalar_t* go, const scalar_t* w,
                           scalar_t* gx) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t T = ceil_div(g.Kw, sw());
  const std::vector<acc_t> wt = tap_blocks<scalar_t, acc_t>(g, w, T);
  const int64_t blocks = g.W + T - 1;
  const int64_t rows = g.N * g.Cin * g.H;
  const bool in_registers = kInputGradRegisters<SW, acc_t> && g.Kw % sw() == 0;
  const int64_t kh_rows = std::min(g.Kh, g.Ho);  // the most kh rows a window holds
  parallel_for(0, rows, grain_for(g.W * cout_g * g.Kh * T * sw() / g.sh), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.W * sw()), goz((in_registers ? kh_rows : 1) * blocks * sw());
    for (int64_t row = begin; row < end; ++row) {
      const int64_t ih = row % g.H, ci = (row / g.H) % g.Cin, n = row / (g.H * g.Cin);
      const int64_t grp = ci / cin_g;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const Range kh_r = taps_in_window(ih, g.sh, g.Kh, g.oy, g.Ho);
      for (int64_t co_l = 0; co_l < (kh_r.size() > 0 ? cout_g : 0); ++co_l) {  // no taps in the window: 0
        const int64_t co = grp * cout_g + co_l;
        const acc_t* wrow = wt.data() + ((ci * cout_g + co_l) * g.Kh + kh_r.begin) * T * sw();
        if constexpr (kInputGradRegisters<SW, acc_t>) {
          if (in_registers) {
            for (int64_t kh = kh_r.begin; kh < kh_r.end; ++kh)
              full_row(g, go + g.out_index(n, co, ih * g.sh + kh - g.oy, 0),
                       goz.data() + (kh - kh_r.begin) * blocks * SW, blocks);
            const auto run = [&](auto b, int64_t iw0) FCN_BLOCK_INLINE_LAMBDA {
              backward_input_blocks<SW, decltype(b)::value>(acc.data(), goz.data(), blocks * SW, wrow, T * SW,
                                                            kh_r.size(), T, iw0);
            };
            constexpr int B = kInputGradColumns<SW, acc_t>;
            int64_t iw = 0;
            for (; iw + B <= g.W; iw += B) run(std::integral_constant<int, B>{}, iw);
            for (; iw < g.W; ++iw) run(std::integral_constant<int, 1>{}, iw);
            continue;
          }
        }
        for (int64_t kh = kh_r.begin; kh < kh_r.end; ++kh, wrow += T * sw()) {
          full_row(g, go + g.out_index(n, co, ih * g.sh + kh - g.oy, 0), goz.data(), blocks);
          for (int64_t t = 0; t < T; ++t) {
            const acc_t* wv = wrow + t * sw();
            with_phases(sw, g.Kw, t, [&](auto phases) {
              for (int64_t iw = 0; iw < g.W; ++iw) {
                acc_t* __restrict__ a = acc.data() + iw * sw();
                const acc_t* __restrict__ gz = goz.data() + (iw + t) * sw();
                for (int64_t r = 0; r < phases(); ++r) a[r] += gz[r] * wv[r];
              }
            });
          }
        }
      }
      scalar_t* out_row = gx + g.x_index(n, ci, ih, 0);
      for (int64_t iw = 0; iw < g.W; ++iw) {
        acc_t v = 0;
        for (int64_t r = 0; r < sw(); ++r) v += acc[iw * sw() + r];
        out_row[iw] = static_cast<scalar_t>(v);
      }
    }
  });
}

// grad_w[ci, co_l, kh, t * sw + r] = sum over n, ih, iw of x[iw] * goz[(iw + t) * sw + r]: one
// (ci, co_l, kh) weight row per task, reduced in a fixed order (no atomics, same bits every run).
template <int SW, typename scalar_t>
void backward_weight_kernel(Stride<SW> sw, const Geometry& g, const scalar_t* go, const scalar_t* x,
                            scalar_t* gw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t T = ceil_div(g.Kw, sw());
  const int64_t blocks = g.W + T - 1;
  const int64_t tasks = g.Cin * cout_g * g.Kh;
  parallel_for(0, tasks, grain_for(g.N * g.H * g.W * T * sw() / g.sh), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(T * sw()), goz(blocks * sw());
    for (int64_t task = begin; task < end; ++task) {
      const int64_t kh = task % g.Kh, co_l = (task / g.Kh) % cout_g, ci = task / (g.Kh * cout_g);
      const int64_t co = (ci / cin_g) * cout_g + co_l;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      const Range ih = inputs_in_window(kh, g.sh, g.oy, g.Ho, g.H);
      for (int64_t n = 0; n < g.N; ++n) {
        for (int64_t i = ih.begin; i < ih.end; ++i) {
          full_row(g, go + g.out_index(n, co, i * g.sh + kh - g.oy, 0), goz.data(), blocks);
          const scalar_t* xrow = x + g.x_index(n, ci, i, 0);
          for (int64_t t = 0; t < T; ++t) {
            acc_t* __restrict__ a = acc.data() + t * sw();
            for (int64_t iw = 0; iw < g.W; ++iw) {
              const acc_t xv = static_cast<acc_t>(xrow[iw]);
              const acc_t* __restrict__ gz = goz.data() + (iw + t) * sw();
              for (int64_t r = 0; r < sw(); ++r) a[r] += xv * gz[r];
            }
          }
        }
      }
      scalar_t* out = gw + g.w_index(ci, co_l, kh, 0);
      for (int64_t kw = 0; kw < g.Kw; ++kw) out[kw] = static_cast<scalar_t>(acc[(kw / sw()) * sw() + kw % sw()]);
    }
  });
}

// The CPU kernels behind the op's entry points (csrc/host/upsample_skip.h).
struct CpuKernels {
  static constexpr c10::DeviceType kDevice = c10::DeviceType::CPU;

  static void forward(const Forward& p) {
    run_forward<Result::kScores>(p, p.out, [](const auto&... a) { forward_gemm_kernel(a...); },
                                 [&](const auto&... a) { forward_kernel(a..., [&] { return scores_stay_finite(p); }); });
  }

  static void backward_input(const BackwardInput& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.grad_out.scalar_type(), "upsample_skip_bwd_x", [&] {
      const scalar_t *gop = p.grad_out.const_data_ptr<scalar_t>(), *wp = p.weight.const_data_ptr<scalar_t>();
      scalar_t* gxp = p.grad_x.mutable_data_ptr<scalar_t>();
      if (backward_input_uses_gemm(p.g, p.grad_out)) {
        backward_input_gemm_kernel(p.g, gop, wp, gxp, p.grad_out.options().dtype(acc_scalar_type<scalar_t>()));
      } else {
        with_stride(p.g.sw, [&](auto sw) { backward_input_kernel(sw, p.g, gop, wp, gxp); });
      }
    });
  }

  static void backward_weight(const BackwardWeight& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.grad_out.scalar_type(), "upsample_skip_bwd_w", [&] {
      with_stride(p.g.sw, [&](auto sw) {
        backward_weight_kernel(sw, p.g, p.grad_out.const_data_ptr<scalar_t>(), p.x.const_data_ptr<scalar_t>(),
                               p.grad_w.mutable_data_ptr<scalar_t>());
      });
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fcn_kernels, CPU, m) { register_kernels<CpuKernels>(m); }

}  // namespace upsample_skip
}  // namespace fcn_kernels
