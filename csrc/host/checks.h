// Argument checks shared by every op's host layer (csrc/host/<op>.h), which the glue of every
// backend calls (the CPU kernel files, csrc/cuda/*_glue.cpp), and the layer's small shared steps (the
// inputs' layout, a prepared call's run). Messages start with the op's name, and name the argument and
// its sizes.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace fcn_kernels {

// The kernels' index arithmetic is int64 (int32 where a CUDA plane's span() fits). Every extent,
// and every extent times a stride, rarefaction or channel count, is kept at most 2**60, so that
// the few sums of such terms in csrc/index/ (the spans, the tap ranges) cannot overflow, and an
// absurd geometry is refused before anything is allocated. fcn_kernels/_args.py: the same limit.
constexpr int64_t kMaxExtent = int64_t(1) << 60;
// Columns of slack the spans add to a plane's row (a run of V <= 64 columns).
constexpr int64_t kRowSlack = 64;

// a * b for a, b >= 0; refused, naming `what`, past kMaxExtent (before it could overflow).
inline int64_t checked_mul(const char* op, const char* what, int64_t a, int64_t b) {
  int64_t r = 0;
  TORCH_CHECK(!__builtin_mul_overflow(a, b, &r) && r <= kMaxExtent, op, ": ", what, " is too large (", a,
              " * ", b, " exceeds 2**60, the kernels' index range)");
  return r;
}

inline int64_t checked_add(const char* op, const char* what, int64_t a, int64_t b) {
  TORCH_CHECK(a <= kMaxExtent && b <= kMaxExtent && a + b <= kMaxExtent, op, ": ", what, " is too large (", a,
              " + ", b, " exceeds 2**60, the kernels' index range)");
  return a + b;
}

inline void check_extent(const char* op, const char* what, int64_t v) {
  TORCH_CHECK(v <= kMaxExtent, op, ": ", what, " is too large (", v, " exceeds 2**60, the kernels' index range)");
}

// `channels` planes of rows x cols, with the row slack and one spare row that the spans count.
inline void check_planes(const char* op, const char* what, int64_t channels, int64_t rows, int64_t cols) {
  checked_mul(op, what, checked_mul(op, what, std::max<int64_t>(channels, 1), rows + 1),
              checked_add(op, what, cols, kRowSlack));
}

// The product of a tensor's sizes (all >= 0).
inline void check_numel(const char* op, const char* what, at::IntArrayRef sizes) {
  int64_t n = 1;
  for (const int64_t s : sizes) {
    TORCH_CHECK(s >= 0, op, ": ", what, " has a negative size: ", sizes);
    n = checked_mul(op, what, n, s);
  }
}

inline void check_pair(const char* op, at::IntArrayRef v, const char* name, int64_t min_value) {
  TORCH_CHECK(v.size() == 2, op, ": ", name, " must have 2 elements, got ", v);
  TORCH_CHECK(v[0] >= min_value && v[1] >= min_value, op, ": ", name, " must be >= ", min_value, ", got ", v);
  TORCH_CHECK(v[0] <= kMaxExtent && v[1] <= kMaxExtent, op, ": ", name,
              " is too large (exceeds 2**60, the kernels' index range), got ", v);
}

// t is on x's device with x's dtype.
inline void check_same(const char* op, const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " is on ", t.device(), " but x is on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
              " but x has dtype ", x.scalar_type());
}

// t is a tensor of the kernel's device type (the dispatcher picks a kernel by any argument's device).
inline void check_device_type(const char* op, const at::Tensor& t, const char* name, c10::DeviceType type) {
  TORCH_CHECK(t.device().type() == type, op, ": ", name, " must be a ", c10::DeviceTypeName(type, true),
              " tensor for this kernel, got ", t.device());
}

// How a kernel reads its inputs: contiguous (NCHW; a copy only where they are not), or as given, for
// kernels that copy them into a layout of their own anyway.
enum class Layout { kContiguous, kAsGiven };

inline at::Tensor laid_out(const at::Tensor& t, Layout layout) {
  return layout == Layout::kContiguous ? t.contiguous() : t;
}

// An optional input: undefined where absent.
inline at::Tensor laid_out(const std::optional<at::Tensor>& t, Layout layout) {
  return t.has_value() ? laid_out(*t, layout) : at::Tensor();
}

// An optional input's data, or null where it is absent (undefined).
inline const void* data_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

template <typename T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

// A backend's Kernels::forward (backward) on the prepared call p, unless it has nothing to write; p, whose
// results the op's entry point returns.
template <typename Kernels, typename P>
const P& forward_with(const P& p) {
  if (!p.done()) Kernels::forward(p);
  return p;
}

template <typename Kernels, typename P>
const P& backward_with(const P& p) {
  if (!p.done()) Kernels::backward(p);
  return p;
}

// The argmax ops' labels (N, Ho, Wo) int64 for g's pixels and `classes` classes, allocated, not yet written.
template <typename Geometry>
at::Tensor argmax_labels(const char* op, const Geometry& g, int64_t classes, const at::Tensor& x) {
  // The CPU kernels keep labels as int32 (the running maxima's width, so that their update vectorizes).
  TORCH_CHECK(classes <= INT32_MAX, op, ": ", classes, " classes exceed 2**31 - 1");
  return at::empty({g.N, g.Ho, g.Wo}, x.options().dtype(at::kLong));
}

}  // namespace fcn_kernels
