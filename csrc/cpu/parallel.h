// Shared OpenMP helpers of the memory-bound kernels (pooling, batch norm, activations, softmax).
//
// kParallelGrain: below this many elements a kernel runs on one thread. Waking a team costs
// microseconds, and on a loaded machine a preempted team member stalls the whole loop for a
// scheduler tick (4 ms measured on a shared 2-core box), which dwarfs a 0.1 ms softmax.
//
// column_reduce: per-channel sums over the rows of an (m, c) array, the shared shape of the
// batch-norm and bias-gradient reductions. Each OpenMP thread takes a contiguous block of rows;
// row_fn adds each row into FLOAT accumulators (vectorised over c at the full float width),
// which are folded into the thread's double totals once each has summed kReduceRows rows, so
// the float error is that of a 64-term sum however large m is (a double add per element halved the speed:
// bias+relu backward ran at 34% of copy bandwidth). No sharing, no atomics; the partials are
// summed in thread order, so the result is deterministic for a given thread count.
//
// ExceptionCaptor, note_team: see below.
//
// Row groups: with short rows (c = 64 is typical) a loop per row spends as long on its setup
// as on its 4 vectors of work (bias+relu backward ran at 38% of copy bandwidth). So rows are
// handled `row_group(c)` at a time as one flat run of group*c contiguous elements, with the
// per-channel parameters and accumulators tiled group times (tile()): element e of a run
// belongs to channel e % c, and is at position e of every tiled array.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <vector>

#include "cpu/item_team.h"
#include "cpu/simd.h"

namespace fastconv::cpu {

constexpr int64_t kParallelGrain = 1 << 15;

// kTeamGrain: below this many elements a memory-bound kernel's OpenMP region runs on one
// thread (kParallelGrain stays the bound of the join-free item team, which never waits for a
// helper). libgomp's worker spins GOMP_SPINCOUNT (~250 us here) after a region, then sleeps on
// a futex; on the 2-vCPU Zen 3 KVM guest (idle vCPUs halt: guest_halt_poll_ns 0) the next
// region then waits for it: an empty region cost 1.7 us back to back, 45-90 us after 0.3-3 ms
// of one-thread work on a quiet machine, 0.5-1 ms when another process ran on the other vCPU
// (benchmarks/RESULTS.md, 2026-12-08, helper R). A region gains at most half its one-thread
// time, so it must hold ~100 us of work: 2^18 floats (~100-150 us at 1-2 ns an element).
// LeNet-5's average pools (b8-b32) and SGD on its 400x120 dense kernel sat between 2^15 and
// 2^18 and each paid a wake-up in every training step. Used by pool_tasks.h and optimizer.cpp
// (the other kernels' regions keep kParallelGrain: not measured here).
constexpr int64_t kTeamGrain = 1 << 18;

constexpr int64_t kReduceRows = 64;

// An exception that leaves an OpenMP parallel region, or a worksharing loop in one, calls
// std::terminate: a bad_alloc of a per-thread buffer would abort the interpreter instead of
// raising MemoryError. So every part of a region that can throw (allocations, vectors that
// grow, thread_local scratch, sgemm's checks) runs through a captor:
//   ExceptionCaptor errors;
//   parallel_region(threads, [&] { ... errors.run([&] { ...may throw... }); ... });
//   errors.rethrow();  // on the calling thread, after the region
// The first exception is kept and every later run() on any thread skips its body, so the team
// winds down quickly, yet every thread still reaches the region's barriers and worksharing
// loops as OpenMP requires (a thread that left early would hang the others). Outputs are
// unspecified once it failed; the caller raises. No cost on the normal path but a relaxed load.
class ExceptionCaptor {
 public:
  template <typename Fn>
  void run(Fn&& fn) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      fn();
    } catch (...) {
#pragma omp critical(fastconv_exception_captor)
      if (!error_) error_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

// Test hook (_C._threads_used): the largest team any region has run with since the hook
// was last read, so the tests can check that a "threaded" case really ran on several threads.
// Each region calls note_team() once per thread on entry; only the master records, with a
// relaxed load and (when it grows) a store: a cost per region, never per iteration.
inline std::atomic<int> g_team_high_water{0};

inline void note_team() {
  if (omp_get_thread_num() != 0) return;
  const int nt = omp_get_num_threads();
  if (nt > g_team_high_water.load(std::memory_order_relaxed))
    g_team_high_water.store(nt, std::memory_order_relaxed);
}

// 0 when no region ran since the last read.
inline int take_team_high_water() { return g_team_high_water.exchange(0); }

// A parallel region of `threads` threads (0: the runtime's default team), or body() called
// directly when the team would have one thread and no region is active. libgomp still wakes
// its thread pool for a team of one (two futex system calls per region, seen with strace,
// with OMP_NUM_THREADS=1 too): ~0.5 us, as much as a small kernel's whole work on one image
// (LeNet-5's predict at batch 1 ran 13 of them). Called directly, the body sees what a team
// of one sees (omp_get_thread_num() 0, omp_get_num_threads() 1; its worksharing loops run
// whole, its barriers are no-ops). Inside an active region the pragma stays: a nested team of
// one numbers its thread 0, which the outer team's numbering would not.
// `#pragma omp parallel if (cond)` is parallel_region(cond ? 0 : 1, ...).
template <typename Body>
inline void parallel_region(int threads, Body&& body) {
  if ((threads == 1 || (threads <= 0 && omp_get_max_threads() == 1)) && !omp_in_parallel()) {
    body();
    return;
  }
  if (threads > 0) {
#pragma omp parallel num_threads(threads)
    body();
  } else {
#pragma omp parallel
    body();
  }
}

// range(l0, l1) over the output lines [0, lines) of `images` images, on one thread unless
// `parallel`. One image (batch-1 inference): blocks shared out by the join-free item team
// (item_team.h), which never waits for a helper to wake or leave a barrier, a few per
// participant so that a helper joining late still takes a share. Several: one contiguous
// share per OpenMP thread. An exception from range reaches the caller either way.
template <typename Range>
inline void split_lines(int64_t images, int64_t lines, bool parallel, Range&& range) {
  const int slots = images == 1 && parallel && item_team_enabled() ? run_items_slots() : 1;
  if (slots > 1) {
    const int64_t items = std::min<int64_t>(lines, 4 * slots);
    return run_items(items, [&](int64_t i, int) { range(lines * i / items, lines * (i + 1) / items); });
  }
  ExceptionCaptor errors;
  parallel_region(parallel ? 0 : 1, [&] {
    note_team();
    errors.run([&] {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      range(lines * t / nt, lines * (t + 1) / nt);
    });
  });
  errors.rethrow();
}

// Rows per flat run: at least 256 elements, and a whole number of 16-float vectors where that
// at most doubles the run (c = 6: 48 rows, not 43, whose 258 floats left 2 to a scalar tail
// on every run; bias+relu backward (256*28*28, 6): see RESULTS.md 2026-12-07, helper S).
inline int64_t row_group(int64_t c) {
  if (c >= 256) return 1;
  const int64_t group = (256 + c - 1) / c;
  int64_t period = 16;  // rows per whole number of vectors: 16 / gcd(c, 16)
  for (int64_t v = c; v % 2 == 0 && period > 1; v /= 2) period /= 2;
  const int64_t aligned = (group + period - 1) / period * period;
  return aligned <= 2 * group ? aligned : group;
}

// v[0 .. c) repeated `group` times.
inline std::vector<float> tile(const float* v, int64_t c, int64_t group) {
  std::vector<float> out((size_t)(c * group));
  for (int64_t q = 0; q < group; ++q)
    for (int64_t j = 0; j < c; ++j) out[(size_t)(q * c + j)] = v[j];
  return out;
}

// fn(r0, rows, dst) for consecutive runs of at most row_group(c) rows covering [0, m), rows
// split across the OpenMP threads (contiguous share each) above kParallelGrain elements. fn
// writes the run's rows*c outputs to dst[0 ..): out + r0*c itself, or, when the (m, c) output
// is large (simd.h stream_output), a scratch buffer that is then streamed to out.
template <typename RunFn>
void for_each_run(int64_t m, int64_t c, float* out, RunFn fn) {
  const int64_t group = row_group(c);
  const bool stream = stream_output(m * c * (int64_t)sizeof(float));
  ExceptionCaptor errors;
  parallel_region((m * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
    errors.run([&] {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t r0 = m * t / nt, r1 = m * (t + 1) / nt;
      float* buf = stream ? scratch(group * c) : nullptr;
      for (int64_t r = r0; r < r1; r += group) {
        const int64_t rows = r + group < r1 ? group : r1 - r;
        fn(r, rows, stream ? buf : out + r * c);
        if (stream) stream_copy(out + r * c, buf, rows * c);
      }
      if (stream) stream_fence();
    });
  });
  errors.rethrow();
}

// out[s*c + j] (s < k, j < c) = the sums over rows of what run_fn(r0, rows, acc, stride, dst)
// adds into the float accumulators acc[s*stride + e] for the elements e < rows*c of the run of
// rows starting at r0 (stride = row_group(c) * c: the tiled layout above). A kernel that also
// writes an (m, c) array passes it as `written`: dst is then where the run's outputs go, as in
// for_each_run (null when written is null).
template <typename RunFn>
void column_reduce(int64_t m, int64_t c, int k, double* out, float* written, RunFn run_fn) {
  const int64_t group = row_group(c), stride = group * c, width = (int64_t)k * c;
  // Flush the float accumulators into double every `flush` rows: each accumulator takes one
  // row of every group, so it has summed kReduceRows terms by then. (Flushing every
  // kReduceRows rows instead folded each accumulator after 1 term at C = 1: a serial chain
  // of double adds per element, batch norm at 10 ns per element against 0.5 at C = 64.)
  const int64_t flush = group * kReduceRows;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)max_threads * width, 0.0);
  int used = 1;
  ExceptionCaptor errors;
  parallel_region((m * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    errors.run([&] {
      double* __restrict total = part.data() + (int64_t)t * width;
      std::vector<float> block((size_t)(k * stride));
      float* __restrict acc = block.data();
      const int64_t r0 = m * t / nt, r1 = m * (t + 1) / nt;
      const bool stream = written && stream_output(m * c * (int64_t)sizeof(float));
      float* buf = stream ? scratch(stride) : nullptr;
      for (int64_t b0 = r0; b0 < r1; b0 += flush) {
        const int64_t b1 = b0 + flush < r1 ? b0 + flush : r1;
        for (int64_t e = 0; e < k * stride; ++e) acc[e] = 0.f;
        for (int64_t r = b0; r < b1; r += group) {
          const int64_t rows = r + group < b1 ? group : b1 - r;
          float* dst = stream ? buf : written ? written + r * c : nullptr;
          run_fn(r, rows, acc, stride, dst);
          if (stream) stream_copy(written + r * c, buf, rows * c);
        }
        for (int s = 0; s < k; ++s)
          for (int64_t q = 0; q < group; ++q)
            for (int64_t j = 0; j < c; ++j) total[s * c + j] += (double)acc[s * stride + q * c + j];
      }
      if (stream) stream_fence();
    });
  });
  errors.rethrow();
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0;
  for (int t = 0; t < used; ++t)
    for (int64_t j = 0; j < width; ++j) out[j] += part[(size_t)t * width + j];
}

}  // namespace fastconv::cpu
