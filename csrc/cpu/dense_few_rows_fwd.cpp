// The dense forward with few rows (2 <= n <= 8) at avx2: y = b + x @ w in register blocks of
// 4 rows x 24 columns (12 ymm accumulators, 3 of w, 1 broadcast of x), w's rows streamed once
// per block of rows, nothing packed.
//
// Why: at n = 7, k = m = 512 (the sweep's dense fwd N=1 7x7 C=512: a classifier over one
// image's rows) OpenBLAS's sgemm packed all of w (1 MB, sgemm_itcopy: a fifth of the call)
// and ran its M = 7 product at 0.27 of the FMA ceiling (perf, Zen 3 avx2, 2026-12-07i). Here
// each output's sum runs from the bias over k in order (as gemv_rows at n = 1), so the result
// does not depend on the thread count. AVX-512 keeps the GEMM (not measured
// there); the baseline too.
#include <omp.h>

#include <algorithm>
#include <cstring>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu {
#if defined(__AVX2__) && !defined(__AVX512F__)
namespace {

constexpr int64_t kMaxRows = 8;
// Below k * m = 128 * 128 the GEMM's packing costs little (as dense_few_rows.cpp's backward).
constexpr int64_t kMinWeights = 128 * 128;

// Columns [j, j + V * 8) of rows [0, R) of y = b + x @ w (x: R rows of k, y: R rows of m).
template <int R, int V>
inline void block(int64_t k, int64_t m, const float* x, const float* w, const float* b, int64_t j, float* y) {
  f32xR acc[R][V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const f32xR bv = b ? loadR(b + j + v * 8) : f32xR{};
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r][v] = bv;
  }
  const float* row = w + j;
  for (int64_t t = 0; t < k; ++t, row += m) {
    f32xR wv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) wv[v] = loadR(row + v * 8);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const f32xR xv = (f32xR)_mm256_broadcast_ss(x + r * k + t);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] += xv * wv[v];
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) storeR(y + r * m + j + v * 8, acc[r][v]);
}

// Columns [j0, j1) (multiples of 8, or j1 = m) of all n rows: blocks of 24 columns, then 8,
// each over the rows in blocks of 4 (then the 1..3 left); the last m % 8 columns one by one.
template <int V>
inline void rows_block(int64_t n, int64_t k, int64_t m, const float* x, const float* w, const float* b,
                       int64_t j, float* y) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) block<4, V>(k, m, x + i * k, w, b, j, y + i * m);
  switch (n - i) {
    case 3: return block<3, V>(k, m, x + i * k, w, b, j, y + i * m);
    case 2: return block<2, V>(k, m, x + i * k, w, b, j, y + i * m);
    case 1: return block<1, V>(k, m, x + i * k, w, b, j, y + i * m);
    default: return;
  }
}

void columns(int64_t j0, int64_t j1, int64_t n, int64_t k, int64_t m, const float* x, const float* w,
             const float* b, float* y) {
  int64_t j = j0;
  for (; j + 24 <= j1; j += 24) rows_block<3>(n, k, m, x, w, b, j, y);
  for (; j + 8 <= j1; j += 8) rows_block<1>(n, k, m, x, w, b, j, y);
  for (int64_t i = 0; i < n && j < j1; ++i)  // the last m % 8 columns, in the same order
    for (int64_t c = j; c < j1; ++c) {
      float s = b ? b[c] : 0.f;
      for (int64_t t = 0; t < k; ++t) s += x[i * k + t] * w[t * m + c];
      y[i * m + c] = s;
    }
}

}  // namespace
#endif

namespace detail {

bool dense_forward_few_rows(int64_t n, int64_t k, int64_t m, const float* x, const float* w, const float* b,
                            float* y) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (n < 2 || n > kMaxRows || m < 8 || k * m < kMinWeights) return false;
  // Work: column units of 8 (the last one m % 8 wider), split across the threads.
  const int64_t units = m / 8;
  const bool parallel = !omp_in_parallel() && get_num_threads() > 1 && n * k * m >= kParallelGrain * 8;
  split_lines(1, units, parallel, [&](int64_t u0, int64_t u1) {
    columns(u0 * 8, u1 == units ? m : u1 * 8, n, k, m, x, w, b, y);
  });
  return true;
#else
  (void)n, (void)k, (void)m, (void)x, (void)w, (void)b, (void)y;
  return false;
#endif
}

}  // namespace detail
}  // namespace fastconv::cpu
