// The dense backward with few rows (n <= kFewRows, 8 or 16: a classifier over one image's few
// rows, the sweep's N=1 7x7 cases, a small training batch) without GEMMs. At n = 7, k = m = 512 the two
// GEMMs took 0.19 ms (1 thread, Zen 4): OpenBLAS packs all of w (1 MB) for dx = dy @ w^T, an
// M = 7 product that then runs a few steps per packed line, and dw = x^T @ dy has inner size 7.
// Here nothing is packed:
// - dx: w's rows stream once; a row t gives the n sums dx[., t] in the n lanes of one register
//   (256-bit to 8 rows, 512-bit to 16): w[t][j] broadcast times row j of dy^T (an L1-resident
//   copy), summed over j in blocks of kSumBlock. Eight rows of w in flight: eight FMA chains.
// - dw: row t of dw = sum over i (in order) of x[i][t] * dy[i], x's n floats broadcast once a
//   row, dy's n rows from an L1 copy of a column block (see dw_rows), four register blocks of
//   dw's row in flight, each stored once.
// - db: the column sums in row order (detail::column_sums' float sums of up to 64 rows).
// Every output is computed by one thread, so the results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {
#if defined(__AVX2__)
namespace {

#if defined(__AVX512F__)
constexpr int64_t kFewRows = 16;  // dy^T's rows are one register: 256-bit to 8 rows, 512-bit to 16
#else
constexpr int64_t kFewRows = 8;
#endif
constexpr int64_t kMaxOutputs = 4096;  // bounds dy^T's copy: m * 16 floats (256 KB)
// Below k * m = 128 * 128 the GEMMs are as fast (a few us; n = 7, paired in one process, 1
// thread, Zen 4, GEMMs / here: k = m = 512 0.157 / 0.096 ms, 256 0.034 / 0.032, 128 0.0100 /
// 0.0093, 64 0.0043 / 0.0046, 24 0.0027 / 0.0030; n = 1, 1024 x 1000: 1.01 / 0.44).
constexpr int64_t kMinWeights = 128 * 128;
// 9..16 rows (512-bit dy^T rows, AVX-512) gain only on large w, GEMMs / here (same scheme):
// n = 14, k = m = 512 0.220 / 0.178 ms, n = 16 0.244 / 0.206, n = 9 0.176 / 0.167, n = 16 and
// 1024 x 1000 1.40 / 1.25; slower at n = 14, k = m = 256 0.052 / 0.058 and 128 0.014 / 0.017.
constexpr int64_t kMinWeightsWide = 512 * 512;
constexpr int kRowsInFlight = 8;
// dx's sums over j run in float blocks of kSumBlock terms, the block sums added: one chain of
// 4096 terms erred 1.4e-4 relative (k = 1000, m = 4096, against float64), as a GEMM's blocked
// sums do not.
constexpr int64_t kSumBlock = 256;

// One row of dy^T (L floats, lanes past n zero) as a register: 256-bit to 8 rows, 512-bit to
// 16 (AVX-512; on Zen 4 a 512-bit FMA costs two 256-bit ones, so 8 rows stay 256-bit).
template <int L>
struct ColumnReg;
template <>
struct ColumnReg<8> {
  using V = __m256;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V fma(float a, V b, V c) { return _mm256_fmadd_ps(_mm256_set1_ps(a), b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
};
#if defined(__AVX512F__)
template <>
struct ColumnReg<16> {
  using V = __m512;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V fma(float a, V b, V c) { return _mm512_fmadd_ps(_mm512_set1_ps(a), b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
};
#endif

// dx[., t] for t in [t0, t1): dyt is m rows of L floats (dy^T, lanes past n zero).
template <int L>
void dx_rows(int64_t t0, int64_t t1, int64_t n, int64_t k, int64_t m, const float* dyt, const float* w,
             float* dx) {
  using C = ColumnReg<L>;
  using V = typename C::V;
  alignas(64) float out[kRowsInFlight][L];
  int64_t t = t0;
  for (; t < t1; t += kRowsInFlight) {
    const int R = (int)std::min<int64_t>(kRowsInFlight, t1 - t);
    V acc[kRowsInFlight];
    for (int r = 0; r < kRowsInFlight; ++r) acc[r] = C::zero();
    for (int64_t j0 = 0; j0 < m; j0 += kSumBlock) {  // block sums added: see kSumBlock
      const int64_t j1 = std::min(m, j0 + kSumBlock);
      V part[kRowsInFlight];
      for (int r = 0; r < kRowsInFlight; ++r) part[r] = C::zero();
      if (R == kRowsInFlight) {
        const float* wr = w + t * m;
        for (int64_t j = j0; j < j1; ++j) {
          const V d = C::load(dyt + j * L);
          for (int r = 0; r < kRowsInFlight; ++r) part[r] = C::fma(wr[r * m + j], d, part[r]);
        }
      } else {
        for (int r = 0; r < R; ++r) {
          const float* wr = w + (t + r) * m;
          for (int64_t j = j0; j < j1; ++j) part[r] = C::fma(wr[j], C::load(dyt + j * L), part[r]);
        }
      }
      for (int r = 0; r < kRowsInFlight; ++r) acc[r] = C::add(acc[r], part[r]);
    }
    for (int r = 0; r < R; ++r) C::store(out[r], acc[r]);
    for (int64_t i = 0; i < n; ++i)
      for (int r = 0; r < R; ++r) dx[i * k + t + r] = out[r][i];
  }
}

// Rows [t0, t1) of dw = x^T @ dy (x: n x k, dy: n x m), each element summed over i in order.
// dy's columns in blocks of kDwColumns, copied to rows kDwStride floats apart, and x's columns
// for kDwRows rows of dw transposed to one line each: read in place, the n rows of x and of dy
// (a power-of-two k or m floats apart) fell into two L1 sets (2 KB apart at 512, 64 sets of 64
// bytes), and at n = 16 those sets held more lines than their 8 ways. n = 16, k = m = 512:
// 0.29 ms in place (in 3 of 6 processes; 0.20 in the others), 0.20-0.23 copied; n = 7 0.120
// -> 0.106 (1 thread, Zen 4, processes alternated).
constexpr int64_t kDwColumns = 256, kDwStride = kDwColumns + 16, kDwRows = 64;
void dw_rows(int64_t t0, int64_t t1, int64_t n, int64_t k, int64_t m, const float* x, const float* dy,
             float* dw) {
  constexpr int B = 4;  // register blocks of a row in flight: B chains of n FMAs
  alignas(64) float dyb[kFewRows * kDwStride];
  alignas(64) float xt[kDwRows * kFewRows];
  for (int64_t j0 = 0; j0 < m; j0 += kDwColumns) {
    const int64_t w = std::min(kDwColumns, m - j0);
    for (int64_t i = 0; i < n; ++i) std::memcpy(dyb + i * kDwStride, dy + i * m + j0, sizeof(float) * w);
    for (int64_t tb = t0; tb < t1; tb += kDwRows) {
      const int64_t rows = std::min(kDwRows, t1 - tb);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < rows; ++r) xt[r * kFewRows + i] = x[i * k + tb + r];
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = xt + r * kFewRows;
        f32xR xb[kFewRows];  // (at most 16 of the 32 registers: below 8 at n <= 8)
        for (int64_t i = 0; i < n; ++i) xb[i] = f32xR{} + xr[i];
        float* row = dw + (tb + r) * m + j0;
        int64_t j = 0;
        for (; j + B * kRegLanes <= w; j += B * kRegLanes) {
          f32xR acc[B];
          for (int b = 0; b < B; ++b) acc[b] = xb[0] * loadR(dyb + j + b * kRegLanes);
          for (int64_t i = 1; i < n; ++i)
            for (int b = 0; b < B; ++b) acc[b] += xb[i] * loadR(dyb + i * kDwStride + j + b * kRegLanes);
          for (int b = 0; b < B; ++b) storeR(row + j + b * kRegLanes, acc[b]);
        }
        for (; j + kRegLanes <= w; j += kRegLanes) {
          f32xR acc = xb[0] * loadR(dyb + j);
          for (int64_t i = 1; i < n; ++i) acc += xb[i] * loadR(dyb + i * kDwStride + j);
          storeR(row + j, acc);
        }
        for (; j < w; ++j) {
          float sum = xr[0] * dyb[j];
          for (int64_t i = 1; i < n; ++i) sum += xr[i] * dyb[i * kDwStride + j];
          row[j] = sum;
        }
      }
    }
  }
}

}  // namespace
#endif

namespace detail {

// False (nothing done) outside its shapes: n in [1, kFewRows], m <= kMaxOutputs, k * m at
// least kMinWeights (kMinWeightsWide above 8 rows), AVX2 or above.
bool dense_backward_few_rows(int64_t n, int64_t k, int64_t m, const float* dy, const float* x, const float* w,
                             float* dx, float* dw, float* db) {
#if defined(__AVX2__)
  if (n < 1 || n > kFewRows || m > kMaxOutputs || k * m < (n <= 8 ? kMinWeights : kMinWeightsWide)) return false;
  const int64_t lanes = n <= 8 ? 8 : 16;
  std::vector<float> dyt;
  if (dx) {
    dyt.assign((size_t)(m * lanes), 0.f);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j) dyt[(size_t)(j * lanes + i)] = dy[i * m + j];
  }
  const bool parallel = !omp_in_parallel() && get_num_threads() > 1 && n * k * m >= kParallelGrain * 8;
  split_lines(1, k, parallel, [&](int64_t t0, int64_t t1) {
    if (dx) {
#if defined(__AVX512F__)
      if (lanes == 16)
        dx_rows<16>(t0, t1, n, k, m, dyt.data(), w, dx);
      else
#endif
        dx_rows<8>(t0, t1, n, k, m, dyt.data(), w, dx);
    }
    if (dw) dw_rows(t0, t1, n, k, m, x, dy, dw);
  });
  if (db)  // in row order, in float: column_sums' result on one thread, on any thread count
    for (int64_t j = 0; j < m; ++j) {
      float sum = dy[j];
      for (int64_t i = 1; i < n; ++i) sum += dy[i * m + j];
      db[j] = sum;
    }
  return true;
#else
  (void)n, (void)k, (void)m, (void)dy, (void)x, (void)w, (void)dx, (void)dw, (void)db;
  return false;
#endif
}

}  // namespace detail
}  // namespace fastconv::cpu
