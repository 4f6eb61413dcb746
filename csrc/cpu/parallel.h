// Shared OpenMP helpers of the memory-bound kernels (pooling, batch norm, activations, softmax).
//
// kParallelGrain: below this many elements a kernel runs on one thread. Waking a team costs
// microseconds, and on a loaded machine a preempted team member stalls the whole loop for a
// scheduler tick (4 ms measured on a shared 2-core box), which dwarfs a 0.1 ms softmax.
//
// column_reduce: per-channel sums over the rows of an (m, c) array, the shared shape of the
// batch-norm and bias-gradient reductions. Each OpenMP thread takes a contiguous block of rows;
// row_fn adds each row into FLOAT accumulators (vectorised over c at the full float width),
// which are folded into the thread's double totals every kReduceRows rows, so the float error
// is that of a 64-term sum however large m is (a double add per element halved the speed:
// bias+relu backward ran at 34% of copy bandwidth). No sharing, no atomics; the partials are
// summed in thread order, so the result is deterministic for a given thread count.
#pragma once
#include <omp.h>

#include <cstdint>
#include <vector>

namespace fastconv::cpu {

constexpr int64_t kParallelGrain = 1 << 15;

constexpr int64_t kReduceRows = 64;

// out[0 .. k*c) = sum over rows r of the values row_fn(r, acc) adds into acc[0 .. k*c) (float).
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
    double* __restrict total = part.data() + (int64_t)t * width;
    std::vector<float> block((size_t)width);
    float* __restrict acc = block.data();
    const int64_t r0 = m * t / nt, r1 = m * (t + 1) / nt;
    for (int64_t b0 = r0; b0 < r1; b0 += kReduceRows) {
      const int64_t b1 = b0 + kReduceRows < r1 ? b0 + kReduceRows : r1;
      for (int64_t j = 0; j < width; ++j) acc[j] = 0.f;
      for (int64_t r = b0; r < b1; ++r) row_fn(r, acc);
      for (int64_t j = 0; j < width; ++j) total[j] += (double)acc[j];
    }
  }
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0;
  for (int t = 0; t < used; ++t)
    for (int64_t j = 0; j < width; ++j) out[j] += part[(size_t)t * width + j];
}

}  // namespace fastconv::cpu
