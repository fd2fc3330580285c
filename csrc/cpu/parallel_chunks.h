// The CPU kernels' parallel loops, every item computed under the calling thread's denormal flags: rows handed
// to the threads as each comes free (parallel_chunks, for the forwards whose rows are independent: upsample_skip's,
// upsample_argmax's), or equal shares fixed up front (parallel_for, every other loop).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "../index/host_device.h"

namespace fcn_kernels {

// Chunks a thread, about: enough that a slow core's share shrinks, few enough that taking one (a shared
// counter's cache line) stays negligible.
constexpr int64_t kChunksPerThread = 16;

// The calling thread's denormal flags (x86's MXCSR: flush-to-zero and denormals-are-zero) on a thread for a
// guard's life. torch.set_flush_denormal sets them on the calling thread only, not on the OpenMP workers (a
// torch op's second half, run there, is not flushed): with rows handed out as threads come free, a row's
// bits would then depend on the thread that ran it. With the flags copied, every row is computed as the
// caller would compute it, on any thread.
class DenormalFlagsOf {
 public:
#if defined(__SSE__)
  static constexpr unsigned kFlags = 0x8040;  // FTZ (bit 15) and DAZ (bit 6)
  DenormalFlagsOf() : flags_(_mm_getcsr() & kFlags) {}
  // On this thread until the returned guard is destroyed.
  struct Guard {
    explicit Guard(unsigned flags) : saved(_mm_getcsr()) { _mm_setcsr((saved & ~kFlags) | flags); }
    ~Guard() { _mm_setcsr(saved); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    unsigned saved;
  };
  Guard here() const { return Guard(flags_); }

 private:
  unsigned flags_;
#else
  struct Guard {};
  Guard here() const { return {}; }
#endif
};

// at::parallel_for(begin, end, grain, fn), each share run under the calling thread's denormal flags
// (DenormalFlagsOf): without them, under torch.set_flush_denormal, the workers' shares were not flushed and the
// caller's were, so that a result's bits depended on the thread count (session 19). Every CPU kernel's loop
// that is not parallel_chunks goes through here.
template <typename Fn>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const Fn& fn) {
  const DenormalFlagsOf caller;
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    [[maybe_unused]] const auto flags = caller.here();
    fn(b, e);
  });
}

// fn(next) once on each thread, where next(begin, end) gives the thread its next chunk of [0, n) (false once
// none is left): chunks of at least `grain` items, taken from a counter by whichever thread is free, where
// at::parallel_for fixes equal shares up front. On the shared 2-core VMs the project is measured on, one core
// ran the same rows 10% to 28% slower than the other, which one changing from run to run, and the op waited for
// it at the join (perf, docs/performance.md, session 18). fn sets up its buffers once, and keeps what it learns
// from one chunk for the next (upsample_argmax's backoff: reset per chunk, it cost 10%). Which thread runs a
// chunk never changes a bit of the results: each item is written by one thread, its sums in an order fixed in
// the source, under the calling thread's denormal flags (parallel_for). The counter hands out work; it adds
// up no results. Inside a parallel region, or with one thread, fn runs once on the calling thread and next
// gives it all of [0, n), as at::parallel_for would.
template <typename Fn>
void parallel_chunks(int64_t n, int64_t grain, const Fn& fn) {
  if (n <= 0) return;
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t chunk = std::max({grain, int64_t(1), ceil_div(n, threads * kChunksPerThread)});
  const int64_t chunks = ceil_div(n, chunk);
  if (threads == 1 || chunks == 1) {
    bool given = false;
    return fn([&](int64_t& begin, int64_t& end) { return !given && (begin = 0, end = n, given = true); });
  }
  std::atomic<int64_t> counter{0};
  parallel_for(0, std::min(threads, chunks), 1, [&](int64_t, int64_t) {
    fn([&](int64_t& begin, int64_t& end) {
      const int64_t c = counter.fetch_add(1, std::memory_order_relaxed);
      return c < chunks && (begin = c * chunk, end = std::min(n, begin + chunk), true);
    });
  });
}

}  // namespace fcn_kernels
