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
//
// Row groups: with short rows (c = 64 is typical) a loop per row spends as long on its setup
// as on its 4 vectors of work (bias+relu backward ran at 38% of copy bandwidth). So rows are
// handled `row_group(c)` at a time as one flat run of group*c contiguous elements, with the
// per-channel parameters and accumulators tiled group times (tile()): element e of a run
// belongs to channel e % c, and is at position e of every tiled array.
#pragma once
#include <omp.h>

#include <cstdint>
#include <vector>

#include "cpu/simd.h"

namespace fastconv::cpu {

constexpr int64_t kParallelGrain = 1 << 15;

constexpr int64_t kReduceRows = 64;

// Rows per flat run: at least 256 elements.
inline int64_t row_group(int64_t c) { return c >= 256 ? 1 : (256 + c - 1) / c; }

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
#pragma omp parallel if (m * c >= kParallelGrain)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t r0 = m * t / nt, r1 = m * (t + 1) / nt;
    float* buf = stream ? scratch(group * c) : nullptr;
    for (int64_t r = r0; r < r1; r += group) {
      const int64_t rows = r + group < r1 ? group : r1 - r;
      fn(r, rows, stream ? buf : out + r * c);
      if (stream) stream_copy(out + r * c, buf, rows * c);
    }
    if (stream) stream_fence();
  }
}

// out[s*c + j] (s < k, j < c) = the sums over rows of what run_fn(r0, rows, acc, stride, dst)
// adds into the float accumulators acc[s*stride + e] for the elements e < rows*c of the run of
// rows starting at r0 (stride = row_group(c) * c: the tiled layout above). A kernel that also
// writes an (m, c) array passes it as `written`: dst is then where the run's outputs go, as in
// for_each_run (null when written is null).
template <typename RunFn>
void column_reduce(int64_t m, int64_t c, int k, double* out, float* written, RunFn run_fn) {
  const int64_t group = row_group(c), stride = group * c, width = (int64_t)k * c;
  // Flush the float accumulators into double every `flush` rows (a multiple of group).
  const int64_t flush = (kReduceRows + group - 1) / group * group;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)max_threads * width, 0.0);
  int used = 1;
#pragma omp parallel if (m * c >= kParallelGrain)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
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
  }
  for (int64_t j = 0; j < width; ++j) out[j] = 0.0;
  for (int t = 0; t < used; ++t)
    for (int64_t j = 0; j < width; ++j) out[j] += part[(size_t)t * width + j];
}

}  // namespace fastconv::cpu
