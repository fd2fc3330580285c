// The direct forward's row machinery and the GEMM path's gathers, shared by the CPU kernels of
// upsample_skip (upsample_skip_kernel.cpp: the forward and its two backward passes) and upsample_argmax
// (upsample_argmax_kernel.cpp: the same forward reduced to labels), and the forward's skeleton that both
// run, so that upsample_argmax's scores are the forward's to the bit. upsample_logsumexp_kernel.cpp (the
// fused loss) computes its scores, forward and backward, with the direct row machinery.
//
// Internal linkage (an anonymous namespace): each kernel file compiles its own copy, as private to it
// as its kernels, so that the compiler inlines and vectorizes them as it would within one file.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "../host/upsample_skip.h"
#include "finite.h"

namespace fcn_kernels {
namespace upsample_skip {
namespace {

// Aim for chunks of roughly this many multiply-adds per parallel task.
constexpr int64_t kGrainWork = 1 << 15;

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
}

// Column blocks. Along the width, full-output column q = m * sw + r (phase r) receives
// x[m - t] through tap kw = r + t * sw, t = 0 .. T-1 with T = ceil(Kw / sw). So a block of sw
// consecutive output columns is  sum_t x[m - t] * wt[t][0 .. sw)  with wt the weight row
// regrouped per tap (zero where r + t * sw >= Kw): a broadcast times a vector, unit stride,
// the same for every phase. The direct kernels (upsample_skip's three passes, upsample_argmax's
// forward) all work on such blocks.

// wt[((ci * cout_g + co_l) * Kh + kh) * T * sw + t * sw + r] = w[ci, co_l, kh, r + t * sw] or 0.
template <typename scalar_t, typename acc_t>
std::vector<acc_t> tap_blocks(const Geometry& g, const scalar_t* w, int64_t T) {
  const int64_t rows = g.Cin * g.cout_per_group() * g.Kh;
  std::vector<acc_t> wt(rows * T * g.sw, acc_t(0));
  // kw = t * sw + r: wt's index is row * T * sw + kw, the zeros past Kw at the end of the row (no
  // division per element: a third of a small call's time)
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t kw = 0; kw < g.Kw; ++kw) wt[row * T * g.sw + kw] = static_cast<acc_t>(w[row * g.Kw + kw]);
  return wt;
}

// SW > 0 fixes the stride at compile time so that the r loops unroll into vector code.
template <int SW>
struct Stride {
  int64_t dyn;
  constexpr int64_t operator()() const { return SW > 0 ? SW : dyn; }
};

// Runs fn(phases) with the phases r of tap block t that are taps (r + t * sw < Kw): all sw of them
// (fixed at compile time), but in the last block where the stride does not divide the kernel. The
// others are tap_blocks' zeros, no terms of the op, and 0 * Inf would be NaN: they are skipped.
template <int SW, typename Fn>
void with_phases(Stride<SW> sw, int64_t Kw, int64_t t, Fn&& fn) {
  const int64_t n = Kw - t * sw();
  if (n >= sw()) return fn(sw);
  fn(Stride<0>{n});
}

// acc[(m - m_lo) * sw + r] += sum_t x[m - t] * wt[t * sw + r] for blocks m in [m_lo, m_hi).
template <int SW, typename scalar_t, typename acc_t>
void forward_row(Stride<SW> sw, acc_t* __restrict__ acc, const scalar_t* __restrict__ xrow,
                 const acc_t* __restrict__ wt, int64_t m_lo,
                 int64_t m_hi, int64_t W, int64_t Kw, int64_t T) {
  for (int64_t t = 0; t < T; ++t) {
    const acc_t* wv = wt + t * sw();
    const int64_t m0 = std::max(m_lo, t), m1 = std::min(m_hi, W + t);
    with_phases(sw, Kw, t, [&](auto phases) {
      for (int64_t m = m0; m < m1; ++m) {
        const acc_t xv = static_cast<acc_t>(xrow[m - t]);
        acc_t* __restrict__ a = acc + (m - m_lo) * sw();
        for (int64_t r = 0; r < phases(); ++r) a[r] += xv * wv[r];
      }
    });
  }
}

// Register blocks. With the stride fixed at compile time, a column block's sw sums fit a GCC/Clang
// vector (Block), and an output row whose tap block list is short (Taps: at most kMaxTaps input rows
// times taps, 4 for every FCN stage) is computed block by block in registers and stored once, instead
// of forward_row's passes over a row buffer. Each block adds the same terms in the same order as
// forward_row (0, then x * w term by term, the same expression, so contracted to FMA alike), skipping
// the same terms outside x: the sums are forward_row's to the bit.
template <typename T, int N>
using Block [[gnu::vector_size(N * sizeof(T))]] = T;

// Blocks of at least 32 bytes (8 floats); narrower ones (stride 2 and 4) stay on forward_row, whose
// loops the compiler vectorizes across blocks.
template <int SW, typename acc_t>
constexpr bool kRegisterBlocks = SW > 0 && SW * sizeof(acc_t) >= 32;

constexpr int kMaxTaps = 4;

// The block code must inline into its loops (a call per block, its vectors through memory, costs more
// than the block). Not forced in the sanitizers' build (scripts/sanitize.sh: -O1 with ASan), which checks
// the same code, not its speed: forced, GCC 12 took over 30 minutes and 12 GB on upsample_argmax_kernel.cpp
// alone (killed unfinished); not forced, 14 minutes and 6.6 GB (setup.py's -g1 there takes off more).
#if defined(__SANITIZE_ADDRESS__)
#define FCN_BLOCK_INLINE inline
#define FCN_BLOCK_INLINE_LAMBDA
#else
#define FCN_BLOCK_INLINE __attribute__((always_inline)) inline
#define FCN_BLOCK_INLINE_LAMBDA __attribute__((always_inline))
#endif

// in_t: the rows' element type, x's (scalar_t), or acc_t for the separable blocks' combined rows.
template <int SW, typename scalar_t, typename in_t = scalar_t>
struct Taps {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = Block<acc_t, (SW > 0 ? SW : 1)>;
  Vec w[kMaxTaps] = {};
  const in_t* x[kMaxTaps] = {};
  int64_t t[kMaxTaps] = {};
  int64_t n = 0, W = 0;

  // Term k: weight block wk (sw elements) times row xk shifted by tk blocks.
  FCN_BLOCK_INLINE void put(int64_t k, const acc_t* wk, const in_t* xk, int64_t tk) {
    std::memcpy(&w[k], wk, sizeof w[0]);
    x[k] = xk;
    t[k] = tk;
  }

  // Block m's sums; kCheck: skip the terms whose x[m - t] lies outside x (as forward_row's ranges do).
  template <int NT, bool kCheck>
  FCN_BLOCK_INLINE Vec at(int64_t m) const {
    Vec v = {};
    for (int k = 0; k < NT; ++k) {
      const int64_t c = m - t[k];
      if (kCheck && (c < 0 || c >= W)) continue;
      v += static_cast<acc_t>(x[k][c]) * w[k];
    }
    return v;
  }

  // at<NT, false>(m + b) for the B blocks from m, all their terms inside x: the same terms, order and
  // expression, each term's input row offset by its tap once for the B blocks rather than per block (9%
  // of upsample_argmax's time, which calls this per class).
  template <int NT, int B>
  FCN_BLOCK_INLINE void inner_blocks(int64_t m, Vec* v) const {
    const in_t* p[NT > 0 ? NT : 1];
    for (int k = 0; k < NT; ++k) p[k] = x[k] + (m - t[k]);
    for (int b = 0; b < B; ++b) {
      v[b] = Vec{};
      for (int k = 0; k < NT; ++k) v[b] += static_cast<acc_t>(p[k][b]) * w[k];
    }
  }
};

// Runs fn(std::integral_constant<int, n>) for 0 <= n <= kMaxTaps (0: a row no input reaches).
template <typename Fn>
void with_tap_count(int64_t n, Fn&& fn) {
  switch (n) {
    case 0: return fn(std::integral_constant<int, 0>{});
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    default: return fn(std::integral_constant<int, 4>{});
  }
}

// Runs fn(std::true_type{}) or fn(std::false_type{}) as f says: a test made once, outside a block loop.
template <typename Fn>
FCN_BLOCK_INLINE void with_flag(bool f, Fn&& fn) {
  f ? fn(std::true_type{}) : fn(std::false_type{});
}

// A block's element type.
template <typename V>
using elem_t = std::remove_cvref_t<decltype(std::declval<V>()[0])>;

// The number of elements of a block.
template <typename V>
constexpr int kLanes = int(sizeof(V) / sizeof(elem_t<V>));

// Whether blocks of V round to scalar_t as bfloat16 from float, which bfloat16_bits does in vector code.
template <typename scalar_t, typename V>
constexpr bool kBFloat16Block = std::is_same_v<scalar_t, c10::BFloat16> && std::is_same_v<elem_t<V>, float>;

// c10::BFloat16(v) of every element, as its bits in the low half of each lane: the same rounding (to
// nearest even; NaN to 0x7FC0) in integer vector code, where the conversion lane by lane does not vectorize.
template <typename V>
FCN_BLOCK_INLINE Block<uint32_t, kLanes<V>> bfloat16_bits(const V& v) {
  using U = Block<uint32_t, kLanes<V>>;
  U u;
  std::memcpy(&u, &v, sizeof u);
  const U nan = reinterpret_cast<U>(v != v);
  u = (u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16;
  return (u & ~nan) | (nan & 0x7FC0u);
}

// Whether blocks of V convert to and from scalar_t as float16 in vector code: F16C's conversions, the ones
// c10::Half is built on where F16C is compiled in (_cvtss_sh, to nearest even; _cvtsh_ss), so the bits are
// c10's. Lane by lane, GCC extracted and inserted every element: upscore8's labels took 11x float's time.
#if defined(__F16C__)
template <typename scalar_t, typename V>
constexpr bool kHalfBlock =
    std::is_same_v<scalar_t, c10::Half> && std::is_same_v<elem_t<V>, float> && kLanes<V> % 8 == 0;
#else
template <typename scalar_t, typename V>
constexpr bool kHalfBlock = false;
#endif

#if defined(__F16C__)
// c10::Half(v) of every element, as its bits. (The maskz forms with every lane set: GCC 12's unmasked 512-bit
// ones start from _mm512_undefined_*, which -Wmaybe-uninitialized reported thousands of times.)
template <typename V>
FCN_BLOCK_INLINE Block<uint16_t, kLanes<V>> half_bits(const V& v) {
  Block<uint16_t, kLanes<V>> h;
#if defined(__AVX512F__)
  if constexpr (kLanes<V> % 16 == 0) {
    for (int i = 0; i < kLanes<V>; i += 16) {
      __m512 f;
      std::memcpy(&f, reinterpret_cast<const float*>(&v) + i, sizeof f);
      const __m256i b = _mm512_maskz_cvtps_ph(0xFFFF, f, _MM_FROUND_TO_NEAREST_INT);
      std::memcpy(reinterpret_cast<uint16_t*>(&h) + i, &b, sizeof b);
    }
    return h;
  }
#endif
  for (int i = 0; i < kLanes<V>; i += 8) {
    __m256 f;
    std::memcpy(&f, reinterpret_cast<const float*>(&v) + i, sizeof f);
    const __m128i b = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT);
    std::memcpy(reinterpret_cast<uint16_t*>(&h) + i, &b, sizeof b);
  }
  return h;
}

// float(c10::Half) of kLanes<V> halves from p.
template <typename V>
FCN_BLOCK_INLINE V from_half_bits(const void* p) {
  V v;
#if defined(__AVX512F__)
  if constexpr (kLanes<V> % 16 == 0) {
    for (int i = 0; i < kLanes<V>; i += 16) {
      __m256i b;
      std::memcpy(&b, static_cast<const uint16_t*>(p) + i, sizeof b);
      const __m512 f = _mm512_maskz_cvtph_ps(0xFFFF, b);
      std::memcpy(reinterpret_cast<float*>(&v) + i, &f, sizeof f);
    }
    return v;
  }
#endif
  for (int i = 0; i < kLanes<V>; i += 8) {
    __m128i b;
    std::memcpy(&b, static_cast<const uint16_t*>(p) + i, sizeof b);
    const __m256 f = _mm256_cvtph_ps(b);
    std::memcpy(reinterpret_cast<float*>(&v) + i, &f, sizeof f);
  }
  return v;
}
#endif

// Blocks of floats wider than a register (32 at stride 32) converted to bfloat16 or float16 in parts of one
// register each: whole, GCC 12 built their bits lane by lane through the stack (bfloat16 at stride 32 took 3x
// float's time in upsample_skip, 5x in upsample_argmax).
constexpr int kPartLanes = 16;
template <typename scalar_t, typename V>
constexpr bool kSplitBlock = (kBFloat16Block<scalar_t, V> || kHalfBlock<scalar_t, V>) && kLanes<V> > kPartLanes &&
                             kLanes<V> % kPartLanes == 0;

// Lanes [Off, Off + kLanes<Part>) of v (Off a multiple of that count): a register's part of a wider block.
template <typename Part, int Off, typename Vec, std::size_t... I>
FCN_BLOCK_INLINE Part part_of(const Vec& v, std::index_sequence<I...>) {
  if constexpr (sizeof(Part) == sizeof(Vec)) {
    return v;
  } else {
    return __builtin_shufflevector(v, v, (Off + int(I))...);
  }
}

// Whole blocks wider than a register (float at stride 32, double at 16 and 32) stored a register's part at a
// time, from registers. As one memcpy, GCC 12 (which moves 256 bits at a time where AVX-512 CPUs prefer it)
// stored each 512-bit part to the stack and read it back in 256-bit halves, loads that the store cannot
// forward to: about half of upsample_skip's kernel samples at upscore32 (perf, session 26).
template <typename V>
FCN_BLOCK_INLINE void store_parts(elem_t<V>* o, const V& v) {
  constexpr int PL = 64 / sizeof(elem_t<V>);
  using Part = Block<elem_t<V>, PL>;
  using Unaligned [[gnu::aligned(alignof(elem_t<V>)), gnu::may_alias]] = Part;
  [&]<int... p>(std::integer_sequence<int, p...>) FCN_BLOCK_INLINE_LAMBDA {
    ((*reinterpret_cast<Unaligned*>(o + p * PL) = part_of<Part, p * PL>(v, std::make_index_sequence<PL>{})), ...);
  }(std::make_integer_sequence<int, kLanes<V> / PL>{});
}

#if defined(__AVX512F__)
// store_parts of v's elements [r0, r1) only (a block that the crop window cuts), float or double, in masked
// stores: the loop over every lane with a test (store_block's last) was about 14% of upsample_skip's kernel
// samples at upscore32, whose crop cuts the block at each end of every row (perf, session 26).
template <typename V>
FCN_BLOCK_INLINE void store_parts_masked(elem_t<V>* o, const V& v, int64_t r0, int64_t r1) {
  using E = elem_t<V>;
  constexpr int PL = 64 / sizeof(E);
  using Part = Block<E, PL>;
  [&]<int... p>(std::integer_sequence<int, p...>) FCN_BLOCK_INLINE_LAMBDA {
    (
        [&] {
          const int64_t lo = std::clamp<int64_t>(r0 - p * PL, 0, PL), hi = std::clamp<int64_t>(r1 - p * PL, 0, PL);
          if (lo >= hi) return;
          const unsigned mask = ((1u << hi) - 1u) & ~((1u << lo) - 1u);
          const Part part = part_of<Part, p * PL>(v, std::make_index_sequence<PL>{});
          if constexpr (std::is_same_v<E, float>) {
            _mm512_mask_storeu_ps(o + p * PL, __mmask16(mask), (__m512)part);
          } else {
            _mm512_mask_storeu_pd(o + p * PL, __mmask8(mask), (__m512d)part);
          }
        }(),
        ...);
  }(std::make_integer_sequence<int, kLanes<V> / PL>{});
}
#endif

// v's elements [r0, r1) into o[r0 ..], each rounded to scalar_t. The partial case loops over every lane
// with a test: a loop over [r0, r1) became a call to memmove per edge block (7% of upscore8's time).
template <typename scalar_t, typename V>
FCN_BLOCK_INLINE void store_block(scalar_t* __restrict__ o, const V& v, int64_t r0, int64_t r1) {
  if constexpr (kSplitBlock<scalar_t, V>) {
    for (int i = 0; i < kLanes<V>; i += kPartLanes) {
      if (r1 <= i || r0 >= i + kPartLanes) continue;
      Block<float, kPartLanes> part;
      std::memcpy(&part, reinterpret_cast<const float*>(&v) + i, sizeof part);
      store_block(o + i, part, std::max<int64_t>(r0 - i, 0), std::min<int64_t>(r1 - i, kPartLanes));
    }
    return;
  }
  if constexpr (std::is_same_v<scalar_t, elem_t<V>> && sizeof(V) > 64 && sizeof(V) % 64 == 0) {
    if (r0 == 0 && r1 == kLanes<V>) return store_parts(o, v);
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>)
      return store_parts_masked(o, v, r0, r1);
#endif
  } else if constexpr (std::is_same_v<scalar_t, elem_t<V>>) {
    if (r0 == 0 && r1 == kLanes<V>) return void(std::memcpy(o, &v, sizeof(V)));
  } else if constexpr (kBFloat16Block<scalar_t, V>) {  // partial blocks: the loop below, the same rounding
    const auto bits = __builtin_convertvector(bfloat16_bits(v), Block<uint16_t, kLanes<V>>);
    if (r0 == 0 && r1 == kLanes<V>) return void(std::memcpy(o, &bits, sizeof bits));
  } else if constexpr (kHalfBlock<scalar_t, V>) {
    const auto bits = half_bits(v);
    if (r0 == 0 && r1 == kLanes<V>) return void(std::memcpy(o, &bits, sizeof bits));
  }
#pragma GCC unroll 32
  for (int r = 0; r < kLanes<V>; ++r)
    if (r >= r0 && r < r1) o[r] = static_cast<scalar_t>(v[r]);
}

// p[r0 .. r1) as elements [r0, r1) of a block, zero elsewhere.
template <typename V, typename scalar_t>
FCN_BLOCK_INLINE V load_block(const scalar_t* __restrict__ p, int64_t r0, int64_t r1) {
  V v = {};
  if constexpr (std::is_same_v<scalar_t, elem_t<V>>) {
    if (r0 == 0 && r1 == kLanes<V>) return std::memcpy(&v, p, sizeof(V)), v;
  } else if constexpr (kHalfBlock<scalar_t, V>) {
    if (r0 == 0 && r1 == kLanes<V>) return from_half_bits<V>(p);
  } else if constexpr (kBFloat16Block<scalar_t, V>) {
    // a bfloat16 is a float's high half: widened and shifted in vector code (element by element, GCC
    // converted them one at a time: upsample_argmax's block groups took 1.3x the class pairs' time)
    if (r0 == 0 && r1 == kLanes<V>) {
      Block<uint16_t, kLanes<V>> h;
      std::memcpy(&h, p, sizeof h);
      const auto u = __builtin_convertvector(h, Block<uint32_t, kLanes<V>>) << 16;
      return std::memcpy(&v, &u, sizeof v), v;
    }
  }
  for (int64_t r = r0; r < r1; ++r) v[r] = static_cast<elem_t<V>>(p[r]);
  return v;
}

// rounded() of every element.
template <typename scalar_t, typename V>
FCN_BLOCK_INLINE V rounded_block(V v) {
  if constexpr (kSplitBlock<scalar_t, V>) {
    for (int i = 0; i < kLanes<V>; i += kPartLanes) {
      Block<float, kPartLanes> part;
      std::memcpy(&part, reinterpret_cast<const float*>(&v) + i, sizeof part);
      part = rounded_block<scalar_t>(part);
      std::memcpy(reinterpret_cast<float*>(&v) + i, &part, sizeof part);
    }
  } else if constexpr (kBFloat16Block<scalar_t, V>) {
    const auto bits = bfloat16_bits(v) << 16;
    std::memcpy(&v, &bits, sizeof v);
  } else if constexpr (kHalfBlock<scalar_t, V>) {
    const auto bits = half_bits(v);
    v = from_half_bits<V>(&bits);
  } else if constexpr (!std::is_same_v<scalar_t, elem_t<V>>) {
    for (size_t r = 0; r < sizeof(V) / sizeof(elem_t<V>); ++r) v[r] = static_cast<elem_t<V>>(static_cast<scalar_t>(v[r]));
  }
  return v;
}

// fn(col) for col in [0, W), in whole vectors of columns, the last one overlapping the one before where the
// vector's width does not divide W: no scalar tail (70 columns at 500x500: 5 vectors instead of 4 and 6 scalar
// steps; upsample_argmax, 21 combined rows an output row, measured about 4% faster at 1 thread). fn must give
// the same result when run twice for a column (it writes a function of the inputs only), so the rows of three
// or more inputs, which accumulate, keep the plain loop.
template <typename acc_t, typename Fn>
FCN_BLOCK_INLINE void overlapping_chunks(int64_t W, Fn&& fn) {
  constexpr int kChunk = 64 / sizeof(acc_t);
  if (W < kChunk) {
    for (int64_t col = 0; col < W; ++col) fn(col);
    return;
  }
  int64_t c = 0;
  for (; c + kChunk <= W; c += kChunk) {
    _Pragma("omp simd") for (int k = 0; k < kChunk; ++k) fn(c + k);
  }
  if (c < W) {
    c = W - kChunk;
    _Pragma("omp simd") for (int k = 0; k < kChunk; ++k) fn(c + k);
  }
}

// The direct forward's plan: the regrouped weight and the column blocks covering the crop window.
template <int SW, typename scalar_t>
struct RowPlan {
  using acc_t = at::opmath_type<scalar_t>;
  Stride<SW> sw;
  const Geometry& g;
  int64_t T, m_lo, m_hi, first;  // output column j is block element first + j
  int64_t cin_g, cout_g;          // per group, divided once here, not per row
  bool register_blocks;           // whether taps() applies
  std::vector<acc_t> wt;
  Range core, in_window;      // core_blocks() and window_blocks(), computed once
  std::vector<Range> inputs;  // inputs[i]: the input rows output row i receives (computed once: per row,
                              // its divisions cost as much as a row's register blocks)

  RowPlan(Stride<SW> s, const Geometry& geo, const scalar_t* w)
      : sw(s), g(geo), T(ceil_div(geo.Kw, s())), m_lo(floor_div(geo.ox, s())), m_hi(ceil_div(geo.ox + geo.Wo, s())),
        first(geo.ox - m_lo * s()), cin_g(geo.cin_per_group()), cout_g(geo.cout_per_group()),
        register_blocks(kRegisterBlocks<SW, acc_t> && geo.Kw % s() == 0 && cin_g * ceil_div(geo.Kh, geo.sh) * T <= kMaxTaps),
        wt(tap_blocks<scalar_t, acc_t>(geo, w, T)), inputs(geo.Ho) {
    for (int64_t i = 0; i < g.Ho; ++i) inputs[i] = inputs_for_output(i + g.oy, g.sh, g.Kh, g.H);
    in_window = window_blocks();
    core = core_blocks();
  }

  int64_t acc_size() const { return (m_hi - m_lo) * sw(); }
  int64_t work() const { return g.Wo * g.cin_per_group() * ceil_div(g.Kh, g.sh) * T + g.Wo; }

  // acc (acc_size()) = output row (n, co, i) before bias and skip; returns its column 0.
  const acc_t* row(const scalar_t* x, int64_t n, int64_t co, int64_t i, acc_t* acc) const {
    Taps<SW, scalar_t> tp;
    if (taps(x, n, co, i, tp)) {
      sweep(tp, [&](int64_t m, const auto& v, auto) FCN_BLOCK_INLINE_LAMBDA { std::memcpy(acc + (m - m_lo) * sw(), &v, sizeof v); });
      return acc + first;
    }
    std::fill(acc, acc + acc_size(), acc_t(0));
    for_inputs(n, co, i, [&](int64_t ci, int64_t in_row, const acc_t* wrow) {
      forward_row(sw, acc, x + g.x_index(n, ci, in_row, 0), wrow, m_lo, m_hi, g.W, g.Kw, T);
    });
    return acc + first;
  }

  // fn(ci, in_row, weight row) for the input rows output row (n, co, i) receives, in forward_row's order.
  template <typename Fn>
  FCN_BLOCK_INLINE void for_inputs(int64_t n, int64_t co, int64_t i, Fn&& fn) const {
    const int64_t grp = cout_g == 1 ? co : co / cout_g, co_l = cout_g == 1 ? 0 : co % cout_g;  // depthwise: no division
    const int64_t p = i + g.oy;
    const Range ih = inputs[i];
    for (int64_t ci = grp * cin_g; ci < (grp + 1) * cin_g; ++ci)
      for (int64_t in_row = ih.begin; in_row < ih.end; ++in_row) fn(ci, in_row, weight_row(ci, co_l, p, in_row));
  }

  // wt's T tap blocks joining input row in_row of channel ci to full-output row p of channel co_l in its group.
  FCN_BLOCK_INLINE const acc_t* weight_row(int64_t ci, int64_t co_l, int64_t p, int64_t in_row) const {
    return wt.data() + ((ci * cout_g + co_l) * g.Kh + p - in_row * g.sh) * T * sw();
  }

  // Output row (n, co, i)'s terms as register blocks, in forward_row's order; false where register
  // blocks do not apply (then row()'s buffer does it).
  bool taps(const scalar_t* x, int64_t n, int64_t co, int64_t i, Taps<SW, scalar_t>& tp) const {
    if constexpr (kRegisterBlocks<SW, acc_t>) {
      if (!register_blocks) return false;
      int nt = 0;  // a local, not tp.n: the stores through tp would make it a round trip through memory
      for_inputs(n, co, i, [&](int64_t ci, int64_t in_row, const acc_t* wrow) FCN_BLOCK_INLINE_LAMBDA {
        const scalar_t* xrow = x + g.x_index(n, ci, in_row, 0);
        for (int64_t t = 0; t < T; ++t, ++nt) tp.put(nt, wrow + t * sw(), xrow, t);
      });
      tp.n = nt, tp.W = g.W;
      return true;
    }
    return false;
  }

  // The core blocks [begin, end): all their terms inside x (no checks) and all their sw columns inside
  // the crop window. Others (a few at the row's ends) are edge blocks.
  Range core_blocks() const {
    const Range w = window_blocks();
    const int64_t lo = std::max(w.begin, T - 1), hi = std::min(w.end, g.W);
    return {std::min(lo, hi), hi};
  }

  // The blocks all of whose sw columns lie inside the crop window (the core blocks, less the test on x).
  Range window_blocks() const {
    const int64_t lo = std::max(m_lo, m_lo + ceil_div(first, sw())), hi = std::min(m_hi, m_lo + (g.Wo + first) / sw());
    return {std::min(lo, hi), hi};
  }

  // Output column of block m's element 0; its elements [r0, r1) fall inside the crop window. Equal to
  // m * sw - column_offset(), the form for a loop that keeps the offset in a register (written this way,
  // column() measured 7% slower in upsample_argmax, which calls it through the plan).
  int64_t column(int64_t m) const { return (m - m_lo) * sw() - first; }
  int64_t column_offset() const { return m_lo * sw() + first; }
  FCN_BLOCK_INLINE void window(int64_t m, int64_t& r0, int64_t& r1) const {
    r0 = std::max<int64_t>(0, -column(m)), r1 = std::min<int64_t>(sw(), g.Wo - column(m));
  }

  // fn(m, block m's sums, core) for the blocks m_lo .. m_hi - 1, core (std::true_type or std::false_type)
  // saying whether m is a core block. The taps are copied here, so that they stay in registers through
  // the core blocks' loop whatever fn stores.
  template <typename TapsT, typename Fn>
  FCN_BLOCK_INLINE void sweep(const TapsT& taps, Fn&& fn) const {
    if constexpr (kRegisterBlocks<SW, acc_t>) {
      with_tap_count(taps.n, [&](auto nt) {
        const TapsT tp = taps;
        blocks<decltype(nt)::value>(tp, fn);
      });
    }
  }

  // sweep's loops over the blocks, for taps whose count NT is known, in a local whose address does not
  // escape (sweep's copy, or with_taps'). kPadded: the taps read padded combined rows (YRows), so that no
  // block needs at()'s checks, and `core` is then said of the crop window only (in_window).
  template <int NT, bool kPadded = false, typename TapsT, typename Fn>
  FCN_BLOCK_INLINE void blocks(const TapsT& tp, Fn&& fn) const {
    // fn copied too: a local whose address does not escape, so that its captures stay in registers
    // (through the caller's reference, every store could alias them: re-read per block).
    std::decay_t<Fn> f = fn;
    const Range c = kPadded ? in_window : core;  // locals, likewise: members would be re-read after every store
    const int64_t lo = m_lo, hi = m_hi;
    for (int64_t m = lo; m < c.begin; ++m) f(m, tp.template at<NT, !kPadded>(m), std::false_type{});
    for (int64_t m = c.begin; m < c.end; ++m) f(m, tp.template at<NT, false>(m), std::true_type{});
    for (int64_t m = c.end; m < hi; ++m) f(m, tp.template at<NT, !kPadded>(m), std::false_type{});
  }

  // sweep(taps of output row (n, co, i), fn); false where register blocks do not apply. With one input
  // channel per group and 1 or 2 tap blocks a row (every FCN stage), the taps are built by loops of fixed
  // counts, in registers: through taps()' memory and sweep's copy they cost a third of upscore8's time.
  // Separable filters (use_separable) go through sep_taps, with ybuf for its combined row: column 0 of a row
  // padded as YRows says.
  template <typename Fn>
  FCN_BLOCK_INLINE bool with_taps(const scalar_t* x, int64_t n, int64_t co, int64_t i, acc_t* ybuf, Fn&& fn) const {
    if constexpr (kRegisterBlocks<SW, acc_t>) {
      if (!register_blocks) return false;
      if (separable()) {
        if (T == 2) {  // a local of its own: one captured by a lambda below would live in memory
          Taps<SW, scalar_t, acc_t> tp;
          return sep_taps<2>(x, n, co, i, ybuf, tp), blocks<2, true>(tp, fn), true;
        }
        Taps<SW, scalar_t, acc_t> tp;
        sep_taps(x, n, co, i, ybuf, tp);
        sweep(tp, fn);
        return true;
      }
      const int64_t rows = inputs[i].size();
      if (cin_g == 1 && T == 2 && rows <= 2) {
        if (rows == 2) return fixed_taps<2, 2>(x, n, co, i, fn), true;
        if (rows == 1) return fixed_taps<1, 2>(x, n, co, i, fn), true;
      } else if (cin_g == 1 && T == 1 && rows <= 2) {
        if (rows == 2) return fixed_taps<2, 1>(x, n, co, i, fn), true;
        if (rows == 1) return fixed_taps<1, 1>(x, n, co, i, fn), true;
      }
      Taps<SW, scalar_t> tp;
      taps(x, n, co, i, tp);
      sweep(tp, fn);
      return true;
    }
    return false;
  }

  // taps() and blocks() for R input rows of TT tap blocks each (one input channel per group).
  template <int R, int TT, typename Fn>
  FCN_BLOCK_INLINE void fixed_taps(const scalar_t* x, int64_t n, int64_t co, int64_t i, Fn&& fn) const {
    Taps<SW, scalar_t> tp;
    const int64_t ci = cout_g == 1 ? co : co / cout_g, co_l = cout_g == 1 ? 0 : co % cout_g;
    const int64_t p = i + g.oy, begin = inputs[i].begin;
    for (int r = 0; r < R; ++r) {
      const int64_t in_row = begin + r;
      const acc_t* wrow = weight_row(ci, co_l, p, in_row);  // T == TT here
      const scalar_t* xrow = x + g.x_index(n, ci, in_row, 0);
      for (int t = 0; t < TT; ++t) tp.put(r * TT + t, wrow + t * sw(), xrow, t);
    }
    tp.n = R * TT, tp.W = g.W;
    blocks<R * TT>(tp, fn);
  }

  // Separable filters. Where every channel's filter is an outer product a (Kh) x b (Kw), exactly (FCN's
  // fixed bilinear upsampling: a = b = (1, 3, .., 2s - 1) / 2s), output row (n, c, i)'s block m is
  //   sum over tap blocks t of  y[m - t] * b[t * sw .. t * sw + sw),  y[col] = sum over its input rows r
  //   of a[kh_r] * x[r][col],
  // y (one row of input width, per output row) shared by the row's blocks: 2 multiply-adds an output
  // element instead of 4 (FCN's strides), the same terms in another grouping. upsample_skip's forward and
  // upsample_argmax both take this form or both do not (the same use_separable), so that the labels are
  // the argmax of the forward's scores to the bit; the loss (upsample_logsumexp) keeps row()'s form.
  std::vector<acc_t> factors;  // per channel: a (Kh), then b (Kw); empty: not separable

  bool separable() const { return !factors.empty(); }

  // Takes the separable form where it applies: register blocks, one input and one output channel per
  // group, every filter an exact outer product (separable_factors), and finite(), asked last (a pass
  // over the inputs): scores_stay_finite, so that no sum of either grouping overflows, and the two
  // groupings then differ by roundings only (non-finite inputs keep the direct form's NaN and Inf rules).
  template <typename Finite>
  void use_separable(const scalar_t* w, Finite&& finite) {
    if (!register_blocks || cin_g != 1 || cout_g != 1) return;
    std::vector<acc_t> f = separable_factors(w);
    if (!f.empty() && finite()) factors = std::move(f);
  }

  // factors' layout, or empty where a filter is not an outer product to the bit, or has a NaN or infinite
  // element: with (p, q) its first largest element and s = sqrt(|w[p][q]|), b = w[p][:] / s and a = w[:][q] /
  // (w[p][q] / s) (bilinear: s, a and b exact), then every a[kh] * b[kw] checked equal to w[kh][kw] with no
  // rounding (an FMA's residual). The maximum and the check in loops without a branch an element, which
  // vectorize: scalar, they were a third of a small call's C++ time (perf, session 18).
  std::vector<acc_t> separable_factors(const scalar_t* w) const {
    using bits_t = std::conditional_t<sizeof(acc_t) == 8, uint64_t, uint32_t>;
    constexpr bits_t kAbs = ~bits_t(0) >> 1, kInf = std::bit_cast<bits_t>(std::numeric_limits<acc_t>::infinity());
    const auto abs_bits = [](scalar_t v) { return bits_t(std::bit_cast<bits_t>(static_cast<acc_t>(v)) & kAbs); };
    const int64_t Kh = g.Kh, Kw = g.Kw, K = Kh * Kw;
    std::vector<acc_t> f(g.Cout * (Kh + Kw));
    for (int64_t c = 0; c < g.Cout; ++c) {
      const scalar_t* wc = w + c * K;
      acc_t* a = f.data() + c * (Kh + Kw);
      acc_t* b = a + Kh;
      // A filter the same bits as the one before (FCN's: one bilinear filter for every class) has its factors.
      if (c > 0 && std::memcmp(wc, wc - K, K * sizeof(scalar_t)) == 0) {
        std::copy(a - (Kh + Kw), a, a);
        continue;
      }
      // |v|'s bits order as the magnitudes do, NaNs and infinities above every finite value
      bits_t top_bits = 0;
      for (int64_t k = 0; k < K; ++k) top_bits = std::max(top_bits, abs_bits(wc[k]));
      if (top_bits >= kInf) return {};  // NaN or infinite weights
      int64_t pq = 0;  // the first largest (a scan that stops there: a select an element did not vectorize)
      while (abs_bits(wc[pq]) != top_bits) ++pq;
      const acc_t top = static_cast<acc_t>(wc[pq]);
      const acc_t s = top == 0 ? acc_t(1) : std::sqrt(std::abs(top)), r = top == 0 ? acc_t(1) : top / s;
      for (int64_t kw = 0; kw < Kw; ++kw) b[kw] = static_cast<acc_t>(wc[(pq / Kw) * Kw + kw]) / s;
      for (int64_t kh = 0; kh < Kh; ++kh) a[kh] = static_cast<acc_t>(wc[kh * Kw + pq % Kw]) / r;
      bits_t residuals = 0;  // their |bits| ORed: 0 where every one is 0 (NaN is not)
      for (int64_t kh = 0; kh < Kh; ++kh)
        for (int64_t kw = 0; kw < Kw; ++kw)
          residuals |= std::bit_cast<bits_t>(std::fma(a[kh], b[kw], -static_cast<acc_t>(wc[kh * Kw + kw]))) & kAbs;
      if (residuals) return {};
    }
    return f;
  }

  // Output row (n, c, i)'s separable taps: y (ybuf, g.W elements) and the T tap blocks of b. TT > 0: T,
  // fixed at compile time, so that a local tp stays in registers.
  template <int TT = 0>
  FCN_BLOCK_INLINE void sep_taps(const scalar_t* x, int64_t n, int64_t c, int64_t i, acc_t* __restrict__ ybuf,
                                 Taps<SW, scalar_t, acc_t>& tp) const {
    sep_row(x, n, c, i, ybuf, 0, g.W);
    sep_put<TT>(c, ybuf, tp);
  }

  // Columns [c0, c1) of output row (n, c, i)'s combined row y, into ybuf (each column's sums the same
  // whatever the range).
  FCN_BLOCK_INLINE void sep_row(const scalar_t* x, int64_t n, int64_t c, int64_t i, acc_t* __restrict__ ybuf,
                                int64_t c0, int64_t c1) const {
    const acc_t* a = factors.data() + c * (g.Kh + g.Kw);
    const Range ih = inputs[i];
    const int64_t p = i + g.oy;
    if (ih.size() == 0) {
      std::fill(ybuf + c0, ybuf + c1, acc_t(0));
      return;
    }
    const acc_t a0 = a[p - ih.begin * g.sh];
    const scalar_t* x0 = x + g.x_index(n, c, ih.begin, 0);
    int64_t r = ih.begin + 1;
    if (ih.size() >= 2) {  // one pass for the first two rows (every FCN stride): the same sums
      const acc_t a1 = a[p - r * g.sh];
      const scalar_t* x1 = x + g.x_index(n, c, r, 0);
      overlapping_chunks<acc_t>(c1 - c0, [&](int64_t k) FCN_BLOCK_INLINE_LAMBDA {
        const int64_t col = c0 + k;
        ybuf[col] = std::fma(static_cast<acc_t>(x1[col]), a1, static_cast<acc_t>(x0[col]) * a0);
      });
      ++r;
    } else {
      for (int64_t col = c0; col < c1; ++col) ybuf[col] = static_cast<acc_t>(x0[col]) * a0;
    }
    for (; r < ih.end; ++r) {
      const acc_t ar = a[p - r * g.sh];
      const scalar_t* xr = x + g.x_index(n, c, r, 0);
      for (int64_t col = c0; col < c1; ++col) ybuf[col] = std::fma(static_cast<acc_t>(xr[col]), ar, ybuf[col]);
    }
  }

  // The T tap blocks of channel c's b over the combined row ybuf.
  template <int TT = 0>
  FCN_BLOCK_INLINE void sep_put(int64_t c, const acc_t* ybuf, Taps<SW, scalar_t, acc_t>& tp) const {
    const acc_t* b = factors.data() + c * (g.Kh + g.Kw) + g.Kh;
    const int64_t taps = TT > 0 ? TT : T;
    for (int64_t t = 0; t < taps; ++t) tp.put(t, b + t * sw(), ybuf, t);
    tp.n = taps, tp.W = g.W;
  }
};

// Combined rows (RowPlan::sep_row's y) with zero columns around each: `before` (T - 1) ahead of column 0 and
// `after` past column W - 1, so that every block's terms (columns m - t, t < T, for m in [m_lo, m_hi)) read
// inside the buffer. A term on a zero column adds 0 * b (b finite: separable_factors) to a sum that started at
// +0, which leaves the sum as it was, its sign of zero too (under round to nearest a sum from +0 is never -0): a
// block at a row's end computed without at()'s checks gets at<NT, true>'s sums, which leave those terms out, to
// the bit. With the checks, at stride 32 (a block of two registers) GCC 12 built the sums of the two blocks at
// each end of a row through the stack, two 32-byte stores read back as one 64-byte load that cannot be
// forwarded: about 45% of upsample_skip's kernel samples at upscore32 in perf (session 26); in
// upsample_argmax, whose edge blocks also picked their lanes out through the stack, about a quarter of
// label_row's.
template <typename Plan>
struct YRows {
  int64_t before, after, stride;
  explicit YRows(const Plan& p)
      : before(p.T - 1), after(std::max<int64_t>(0, p.m_hi - p.g.W)), stride(before + p.g.W + after) {}
  // A buffer of `rows` padded rows, zero (sep_row writes columns [0, W) only: the padding stays zero), and
  // row r's column 0 in it (nullptr in an empty buffer).
  template <typename acc_t>
  std::vector<acc_t> buffer(int64_t rows) const {
    return std::vector<acc_t>(rows * stride, acc_t(0));
  }
  template <typename acc_t>
  acc_t* row(std::vector<acc_t>& buf, int64_t r) const {
    return buf.empty() ? nullptr : buf.data() + r * stride + before;
  }
};

// B[grp, (ci_l, th, tw), (co_l, rh, rw)] = w[ci, co_l, rh + th * sh, rw + tw * sw] (0 past the kernel):
// the weight regrouped by output phase, shared by the forward and input-gradient GEMMs.
template <typename scalar_t>
at::Tensor weight_blocks(const Geometry& g, const scalar_t* w, const at::TensorOptions& acc_options) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t Th = ceil_div(g.Kh, g.sh), Tw = ceil_div(g.Kw, g.sw);
  const int64_t kdim = cin_g * Th * Tw, cols = cout_g * g.sh * g.sw;
  auto B = at::zeros({g.groups, kdim, cols}, acc_options);
  acc_t* b = B.mutable_data_ptr<acc_t>();
  for (int64_t ci = 0; ci < g.Cin; ++ci)
    for (int64_t co_l = 0; co_l < cout_g; ++co_l)
      for (int64_t kh = 0; kh < g.Kh; ++kh)
        for (int64_t kw = 0; kw < g.Kw; ++kw) {
          const int64_t k = ((ci % cin_g) * Th + kh / g.sh) * Tw + kw / g.sw;
          const int64_t c = (co_l * g.sh + kh % g.sh) * g.sw + kw % g.sw;
          b[((ci / cin_g) * kdim + k) * cols + c] = static_cast<acc_t>(w[g.w_index(ci, co_l, kh, kw)]);
        }
  return B;
}

// A[bj - bj_lo, (ci_l, th, tw)] = x[n, grp * cin_g + ci_l, bi - th, bj - tw] (0 outside x), the left
// operand of block row bi's GEMM below.
template <typename scalar_t, typename acc_t>
void gather_block_row(const Geometry& g, const scalar_t* x, int64_t n, int64_t grp, int64_t bi, int64_t bj_lo,
                      int64_t bj_hi, acc_t* a) {
  const int64_t cin_g = g.cin_per_group();
  const int64_t Th = ceil_div(g.Kh, g.sh), Tw = ceil_div(g.Kw, g.sw), kdim = cin_g * Th * Tw;
  for (int64_t ci_l = 0; ci_l < cin_g; ++ci_l)
    for (int64_t th = 0; th < Th; ++th) {
      const int64_t ih = bi - th;
      const scalar_t* xrow = (ih >= 0 && ih < g.H) ? x + g.x_index(n, grp * cin_g + ci_l, ih, 0) : nullptr;
      for (int64_t tw = 0; tw < Tw; ++tw) {
        const int64_t k = (ci_l * Th + th) * Tw + tw;
        for (int64_t bj = bj_lo; bj < bj_hi; ++bj) {
          const int64_t iw = bj - tw;
          a[(bj - bj_lo) * kdim + k] = (xrow && iw >= 0 && iw < g.W) ? static_cast<acc_t>(xrow[iw]) : acc_t(0);
        }
      }
    }
}

// The GEMM pays off once both channel counts per group are wide; depthwise stays direct.
bool use_gemm(const Geometry& g) { return g.cin_per_group() >= 4 && g.cout_per_group() >= 4; }

// The GEMMs multiply zeros that are no terms of the op, and 0 * Inf is NaN; where they could, the
// direct path (which multiplies real terms only) takes over. weight_blocks' zeros past the kernel
// (a stride that does not divide it) meet every element of x or grad_out: then those are checked,
// a pass over them cheaper than the GEMM's own gather. The forward's gathered zeros outside x meet
// every weight: checked always (the weight is small). upsample_argmax chooses as the forward does,
// so that its scores are the forward's.
bool whole_tap_blocks(const Geometry& g) { return g.Kh % g.sh == 0 && g.Kw % g.sw == 0; }

bool forward_uses_gemm(const Geometry& g, const at::Tensor& x, const at::Tensor& weight) {
  return use_gemm(g) && all_finite(weight) && (whole_tap_blocks(g) || all_finite(x));
}

// v rounded to scalar_t, as the forward stores a score (upsample_argmax and the loss compare and use
// the scores so rounded).
template <typename scalar_t, typename acc_t>
inline acc_t rounded(acc_t v) {
  return static_cast<acc_t>(static_cast<scalar_t>(v));
}

// Runs fn(Stride<SW>{sw}) with SW fixed for the strides FCN uses (2, 8, 16, 32 and small ones).
template <typename Fn>
void with_stride(int64_t sw, Fn&& fn) {
  switch (sw) {
    case 1: return fn(Stride<1>{1});
    case 2: return fn(Stride<2>{2});
    case 4: return fn(Stride<4>{4});
    case 8: return fn(Stride<8>{8});
    case 16: return fn(Stride<16>{16});
    case 32: return fn(Stride<32>{32});
    default: return fn(Stride<0>{sw});
  }
}

template <typename scalar_t>
constexpr at::ScalarType acc_scalar_type() {
  return c10::CppTypeToScalarType<at::opmath_type<scalar_t>>::value;
}

// Whether every score is finite, so that none is NaN: all inputs finite and |score| <= max|x| * sum|w| +
// max|bias| + max|skip| (a bound on each sum's terms, with room to spare for its roundings) under half the
// accumulation type's largest value. sum|w| is at least kMaxTaps * sqrt(max|w|) here, a bound on the terms
// of RowPlan::sep_taps' combined rows too (at most kMaxTaps input rows, each |a| <= sqrt(max|w|)), which may
// exceed the scores' where max|w| < 1. One pass over the inputs, which are a small part of the op's bytes.
inline bool scores_stay_finite(const upsample_skip::ForwardInputs& in) {
  // the accumulation type: double for double, float for float and the 16-bit types (at::opmath_type)
  const double largest = in.x.scalar_type() == at::kDouble ? std::numeric_limits<double>::max()
                                                           : std::numeric_limits<float>::max();
  const double w = std::max(sum_abs(in.weight), kMaxTaps * std::sqrt(max_abs(in.weight)));
  const double bound = max_abs(in.x) * w + (in.bias.defined() ? max_abs(in.bias) : 0.0) +
                       (in.skip.defined() ? max_abs(in.skip) : 0.0);
  return bound < 0.5 * largest;
}

// What the forward's skeleton writes: upsample_skip's scores (the input's dtype), or upsample_argmax's
// int64 labels.
enum class Result { kScores, kLabels };

// The forward's skeleton: dtype dispatch, then gemm(g, x, w, bias, skip, out, acc_options) or
// direct(Stride<SW>, g, x, w, bias, skip, out), with the stride fixed at compile time where with_stride
// can, as forward_uses_gemm chooses.
template <Result R, typename Gemm, typename Direct>
void run_forward(const ForwardInputs& in, const at::Tensor& out, Gemm&& gemm, Direct&& direct) {
  // The dispatch's name (in its errors) is a constant expression.
  constexpr const char* name = R == Result::kLabels ? "upsample_argmax_cpu" : "upsample_skip_cpu";
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.x.scalar_type(), name, [&] {
    using out_t = std::conditional_t<R == Result::kLabels, int64_t, scalar_t>;
    const scalar_t *xp = in.x.const_data_ptr<scalar_t>(), *wp = in.weight.const_data_ptr<scalar_t>();
    const scalar_t *bp = data_or_null<scalar_t>(in.bias), *sp = data_or_null<scalar_t>(in.skip);
    out_t* op = out.mutable_data_ptr<out_t>();
    if (forward_uses_gemm(in.g, in.x, in.weight)) {
      gemm(in.g, xp, wp, bp, sp, op, in.x.options().dtype(acc_scalar_type<scalar_t>()));
    } else {
      with_stride(in.g.sw, [&](auto sw) { direct(sw, in.g, xp, wp, bp, sp, op); });
    }
  });
}

}  // namespace
}  // namespace upsample_skip
}  // namespace fcn_kernels
