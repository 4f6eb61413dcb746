// Dense (fully connected) layer on sgemm: x (n, k), w (k, m), y (n, m), all row-major.
// The products are split across OpenMP threads by parallel_sgemm (OpenBLAS itself stays
// single-threaded, see threads.cpp).
#include <omp.h>

#include <algorithm>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cstring>
#include <vector>

#include "cpu/im2col.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {
constexpr int64_t kNarrowBias = 64;

// One row of x is a matrix-vector product: the GEMM packs w (all k*m floats) on every call,
// which cost more than the product (LeNet-5's 400x120 dense at batch 1: 3.5 us through the
// GEMM). Up to kGemvWeights floats of w (1 MiB, the L2) each row streams w once, column
// blocks of kGemvVecs registers accumulating over k; above that the GEMM's threads and
// blocking win (a 2048x1000 classifier is read from memory either way).
constexpr int64_t kGemvWeights = 1 << 18;
constexpr int kGemvVecs = 4;  // below AVX-512: registers per column block

// Columns [j, j + V * kRegLanes) of y = b + x @ w for one row (xi: k floats), in registers;
// the sums run over k in order, from the bias. `last` lanes of the last vector are real
// (AVX-512: a masked load and store; elsewhere last is always kRegLanes).
template <int V>
inline void gemv_block(int64_t k, int64_t m, const float* xi, const float* w, const float* b, int64_t j,
                       int last, float* yi) {
#if defined(__AVX512F__)
  const __mmask16 tail = (__mmask16)((1u << last) - 1u);
  __m512 acc[V];
  for (int v = 0; v < V; ++v) {
    const __mmask16 mk = v == V - 1 ? tail : (__mmask16)0xFFFF;
    acc[v] = b ? _mm512_maskz_loadu_ps(mk, b + j + v * 16) : _mm512_setzero_ps();
  }
  for (int64_t t = 0; t < k; ++t) {
    const __m512 xv = _mm512_set1_ps(xi[t]);
    const float* row = w + t * m + j;
    for (int v = 0; v < V - 1; ++v) acc[v] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(row + v * 16), acc[v]);
    acc[V - 1] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, row + (V - 1) * 16), acc[V - 1]);
  }
  for (int v = 0; v < V; ++v)
    _mm512_mask_storeu_ps(yi + j + v * 16, v == V - 1 ? tail : (__mmask16)0xFFFF, acc[v]);
#else
  (void)last;
  f32xR acc[V];
  for (int v = 0; v < V; ++v) {
    if (b)
      std::memcpy(&acc[v], b + j + v * kRegLanes, sizeof acc[v]);
    else
      acc[v] = f32xR{};
  }
  for (int64_t t = 0; t < k; ++t) {
    const float xv = xi[t];
    const float* row = w + t * m + j;
    for (int v = 0; v < V; ++v) {
      f32xR piece;
      std::memcpy(&piece, row + v * kRegLanes, sizeof piece);
      acc[v] += xv * piece;
    }
  }
  for (int v = 0; v < V; ++v) std::memcpy(yi + j + v * kRegLanes, &acc[v], sizeof acc[v]);
#endif
}

// Up to 8 registers of columns per pass over k: 8 independent FMA chains keep the FMA units
// busy (one chain per register waits out the FMA latency on every step of k).
constexpr int kGemvMaxVecs = 8;

template <int V = kGemvMaxVecs>
inline void gemv_chunk(int v, int64_t k, int64_t m, const float* xi, const float* w, const float* b, int64_t j,
                       int last, float* yi) {
  if constexpr (V > 1) {
    if (v < V) return gemv_chunk<V - 1>(v, k, m, xi, w, b, j, last, yi);
  }
  gemv_block<V>(k, m, xi, w, b, j, last, yi);
}

void gemv_rows(int64_t n, int64_t k, int64_t m, const float* x, const float* w, const float* b, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * k;
    float* yi = y + i * m;
    int64_t j = 0;
#if defined(__AVX512F__)
    for (; j < m; j += kGemvMaxVecs * 16) {  // the last vector of the last chunk masked
      const int64_t cols = std::min<int64_t>(kGemvMaxVecs * 16, m - j);
      const int vecs = (int)((cols + 15) / 16), last = (int)(cols - (vecs - 1) * 16);
      gemv_chunk(vecs, k, m, xi, w, b, j, last, yi);
    }
#else
    for (; j + kGemvVecs * kRegLanes <= m; j += kGemvVecs * kRegLanes)
      gemv_block<kGemvVecs>(k, m, xi, w, b, j, kRegLanes, yi);
    for (; j + kRegLanes <= m; j += kRegLanes) gemv_block<1>(k, m, xi, w, b, j, kRegLanes, yi);
#endif
    if (j < m) {  // the last m % kRegLanes columns, summed in the same order
      for (int64_t c = j; c < m; ++c) yi[c] = b ? b[c] : 0.f;
      for (int64_t t = 0; t < k; ++t)
        for (int64_t c = j; c < m; ++c) yi[c] += xi[t] * w[t * m + c];
    }
  }
}
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
  if (n == 1 && k * m <= kGemvWeights) return gemv_rows(n, k, m, x, w, b, y);
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
