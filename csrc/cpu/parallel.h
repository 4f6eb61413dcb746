// Shared OpenMP helpers of the memory-bound kernels (pooling, batch norm, activations, softmax).
//
// kParallelGrain: below this many elements a kernel runs on one thread. Waking a team costs
// microseconds, and on a loaded machine a preempted team member stalls the whole loop for a
// scheduler tick (4 ms measured on a shared 2-core box), which dwarfs a 0.1 ms softmax.
//
// column_reduce: per-channel sums over the rows of an (m, c) array, the shared shape of the
// batch-norm and bias-gradient reductions. Each OpenMP thread takes a contiguous block of rows and adds into
// its own double accumulators (vectorised over c, no sharing, no atomics); the partials are
// then summed in thread order, so the result is deterministic for a given thread count.
#pragma once
#include <omp.h>

#include <cstdint>
#include <vector>

namespace fastconv::cpu {

constexpr int64_t kParallelGrain = 1 << 15;

// out[0 .. k*c) = sum over rows r of the values row_fn(r, acc) adds into acc[0 .. k*c).
template <typename RowFn>
void column_reduce(int64_t m, int64_t c, int k, double* out, RowFn row_fn) {
  const int64_t width = (int64_t)k * c;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)max_threads * width, 0.0);
  int used = 1;
#pragma omp parallel if (m * c >= kParallelGrain)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    double* acc = part.data() + (int64_t)t * width;
    const int64_t r0 = m * t / nt, r1 = m * (t + 1) / nt;
    for (int64_t r = r0; r < r1; ++r) row_fn(r, acc);
  }
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0;
  for (int t = 0; t < used; ++t)
    for (int64_t j = 0; j < width; ++j) out[j] += part[(size_t)t * width + j];
}

}  // namespace fastconv::cpu
