// Dense (fully connected) layer on sgemm: x (n, k), w (k, m), y (n, m), all row-major.
// The products are split across OpenMP threads by parallel_sgemm (OpenBLAS itself stays
// single-threaded, see threads.cpp).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/im2col.h"
#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {
constexpr int64_t kNarrowBias = 64;
}  // namespace

namespace detail {

void column_sums(int64_t rows, int64_t cols, const float* a, float* out) {
  // parallel.h's column reduction: float accumulators folded into double every kReduceRows
  // rows, deterministic for a thread count, rows grouped so few columns still vectorise (a
  // loop per row of 3 columns ran the dense bias gradient at scalar speed).
  std::vector<double> sums((size_t)cols);
  column_reduce(rows, cols, 1, sums.data(), nullptr,
                [&](int64_t r0, int64_t n, float* acc, int64_t, float*) {
    const float* __restrict src = a + r0 * cols;
    float* __restrict s = acc;
    for (int64_t e = 0; e < n * cols; ++e) s[e] += src[e];
  });
  for (int64_t j = 0; j < cols; ++j) out[j] = (float)sums[(size_t)j];
}

}  // namespace detail

void dense_forward(int64_t n, int64_t k, int64_t m, const float* x, const float* w,
                   const float* b, float* y) {
  if (b && m < kNarrowBias) {
    // Few outputs: the product first, then the bias over flat runs of rows (for_each_run, a
    // tiled bias). Seeding y with the bias and accumulating (beta = 1) made OpenBLAS's sgemm
    // 5-10x slower at m = 1..3 (m = 1: 21 ms against 2.2 without a bias, 1M rows).
    parallel_sgemm(false, false, n, m, k, 1.f, x, k, w, m, 0.f, y, m);
    const std::vector<float> tiled = tile(b, m, row_group(m));
    for_each_run(n, m, y, [&](int64_t r0, int64_t rows, float* out) {
      const float* src = y + r0 * m;  // out may be src itself (no __restrict): same index
      const float* __restrict bias = tiled.data();
      for (int64_t e = 0; e < rows * m; ++e) out[e] = src[e] + bias[e];
    });
    return;
  }
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
