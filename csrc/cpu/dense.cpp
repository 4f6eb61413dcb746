// Dense (fully connected) layer on sgemm: x (n, k), w (k, m), y (n, m), all row-major.
// The products are split across OpenMP threads by parallel_sgemm (OpenBLAS itself stays
// single-threaded, see threads.cpp).
#include <omp.h>

#include <cstring>
#include <vector>

#include "cpu/im2col.h"
#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace detail {

void column_sums(int64_t rows, int64_t cols, const float* a, float* out) {
  // Row blocks per thread into private partials, summed in thread order (deterministic).
  const int nthreads = omp_get_max_threads();
  std::vector<float> part((size_t)(nthreads * cols), 0.f);
  int used = 1;
#pragma omp parallel num_threads(rows * cols >= kParallelGrain ? nthreads : 1)
  {
    note_team();
    float* p = part.data() + omp_get_thread_num() * cols;
#pragma omp single
    used = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = a + r * cols;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) p[j] += row[j];
    }
  }
  std::memcpy(out, part.data(), sizeof(float) * cols);
  for (int t = 1; t < used; ++t)
    for (int64_t j = 0; j < cols; ++j) out[j] += part[t * cols + j];
}

}  // namespace detail

void dense_forward(int64_t n, int64_t k, int64_t m, const float* x, const float* w,
                   const float* b, float* y) {
  float beta = 0.f;
  if (b) {  // bias first, then the GEMM accumulates onto it
    for (int64_t i = 0; i < n; ++i) std::memcpy(y + i * m, b, sizeof(float) * m);
    beta = 1.f;
  }
  parallel_sgemm(false, false, n, m, k, 1.f, x, k, w, m, beta, y, m);
}

void dense_backward(int64_t n, int64_t k, int64_t m, const float* dy, const float* x,
                    const float* w, float* dx, float* dw, float* db) {
  // dx (n, k) = dy (n, m) @ w^T;  dw (k, m) = x^T @ dy;  db = column sums of dy.
  if (dx) parallel_sgemm(false, true, n, k, m, 1.f, dy, m, w, m, 0.f, dx, k);
  if (dw) parallel_sgemm(true, false, k, m, n, 1.f, x, k, dy, m, 0.f, dw, m);
  if (db) detail::column_sums(n, m, dy, db);
}

}  // namespace fastconv::cpu
