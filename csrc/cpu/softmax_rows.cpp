// Row softmax at the avx2 level: each row of c classes in K = ceil(c / 8) ymm registers (the
// last one masked), two horizontal reductions a row (max, sum).
//
// Why: below AVX-512 softmax.cpp sent 17..63 classes to its [c][16] tile at a runtime width
// (16-lane vectors, which GCC 12 splits into ymm halves through the stack, and scalar
// transposes each way) and 64..128 to the row loop (an omp-simd max, exp16 in halves, a
// second pass to scale). At 32 classes the tile ran at 1/15 of a copy's speed: (50176, 32)
// 9.5 ms against np.copyto's 0.5 ms of the same bytes (1 thread, Zen 3, avx2). AVX-512 keeps
// its own paths (softmax.cpp: transposed rows to 40, masked rows to 128), and the baseline
// level its tile (no masked loads; 4-float registers).
//
// Per element the tile's operations: the max by '>' (a NaN may be skipped by the max, but
// exp of it makes the row's sum and so the whole row NaN), exp_lanes of x - max, a float sum,
// y = e * (1 / sum). Only the order of the sum's additions differs (lanes, then a tree).
#include "cpu/softmax_rows.h"

#include <algorithm>
#include <cmath>

#include "cpu/fast_exp.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>

namespace fastconv::cpu::detail {

namespace {

constexpr int64_t kRowsMin = 9, kRowsMax = 128;

inline float hmax(__m256 v) {
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
}

inline float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// Rows of c = 8 (K - 1) + tail classes, 1 <= tail <= 8. The row's registers are a
// compile-time array (with a runtime count they were stack arrays, stored and reloaded:
// softmax.cpp's masked rows measured that at AVX-512); past 16 registers some spill to the
// stack. Two rows at a time in one loop body (independent chains for the out-of-order
// window) measured no faster: 1.08x at (100352, 32), 0.93-1.08x in cache (1 thread, paired).
template <int K>
void rows(int64_t n, int64_t c, const float* x, float* y) {
  const int tail = (int)(c - 8 * (K - 1));
  const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 keepf = _mm256_castsi256_ps(keep);
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* xr = x + i * c;
      f32xR v[K];
      for (int k = 0; k < K - 1; ++k) v[k] = loadR(xr + 8 * k);
      // lanes past c: -inf, which no max picks (exp gives 0 there; zeroed below all the same)
      v[K - 1] = (f32xR)_mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                         _mm256_maskload_ps(xr + 8 * (K - 1), keep), keepf);
      // (maxps(v, mx), the same for NaN in one operation where this is two, measured 1.02x)
      f32xR mx = v[0];
      for (int k = 1; k < K; ++k) mx = v[k] > mx ? v[k] : mx;
      const f32xR shift = (f32xR)_mm256_set1_ps(hmax((__m256)mx));
      f32xR sum{};
      for (int k = 0; k < K; ++k) {
        v[k] = exp_lanes(v[k] - shift);
        if (k == K - 1) v[k] = (f32xR)_mm256_and_ps((__m256)v[k], keepf);
        sum += v[k];
      }
      const f32xR inv = (f32xR)_mm256_set1_ps(1.f / hsum((__m256)sum));
      float* yr = y + i * c;
      for (int k = 0; k < K - 1; ++k) storeR(yr + 8 * k, v[k] * inv);
      _mm256_maskstore_ps(yr + 8 * (K - 1), keep, (__m256)(v[K - 1] * inv));
    }
  });
}

// Rows wider than kRowsMax: softmax.cpp's row loop (shifted_exp: an omp-simd max, exp16 on
// 16-lane vectors split into ymm halves through the stack, then a scaling pass) in ymm
// registers: the max in four accumulators, exp stored to y while four float accumulators sum
// it (blocks of kSumBlock floats, totals in double as shifted_exp's), then y scaled by
// 1 / total. The lanes past the last whole register: -inf (max), 0 (sum), masked store.
constexpr int64_t kSumBlock = 1024;

void wide_rows(int64_t n, int64_t c, const float* x, float* y) {
  const int64_t whole = c / 8 * 8;
  const int tail = (int)(c - whole);
  const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 keepf = _mm256_castsi256_ps(keep);
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* xr = x + i * c;
      float* yr = y + i * c;
      f32xR m[4];
      for (int a = 0; a < 4; ++a) m[a] = (f32xR)_mm256_set1_ps(-INFINITY);
      int64_t j = 0;
      for (; j + 32 <= whole; j += 32)
        for (int a = 0; a < 4; ++a) {
          const f32xR v = loadR(xr + j + 8 * a);
          m[a] = v > m[a] ? v : m[a];
        }
      for (; j < whole; j += 8) {
        const f32xR v = loadR(xr + j);
        m[0] = v > m[0] ? v : m[0];
      }
      if (tail) {
        const f32xR v = (f32xR)_mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(xr + whole, keep), keepf);
        m[1] = v > m[1] ? v : m[1];
      }
      m[0] = m[1] > m[0] ? m[1] : m[0];
      m[2] = m[3] > m[2] ? m[3] : m[2];
      const f32xR shift = (f32xR)_mm256_set1_ps(hmax((__m256)(m[2] > m[0] ? m[2] : m[0])));
      double total = 0.0;
      for (int64_t j0 = 0; j0 < whole; j0 += kSumBlock) {
        const int64_t j1 = std::min(whole, j0 + kSumBlock);
        f32xR s[4] = {};
        for (j = j0; j + 32 <= j1; j += 32)
          for (int a = 0; a < 4; ++a) {
            const f32xR e = exp_lanes(loadR(xr + j + 8 * a) - shift);
            storeR(yr + j + 8 * a, e);
            s[a] += e;
          }
        for (; j < j1; j += 8) {
          const f32xR e = exp_lanes(loadR(xr + j) - shift);
          storeR(yr + j, e);
          s[0] += e;
        }
        total += hsum((__m256)((s[0] + s[1]) + (s[2] + s[3])));
      }
      f32xR last{};
      if (tail) {
        last = (f32xR)_mm256_and_ps((__m256)exp_lanes((f32xR)_mm256_maskload_ps(xr + whole, keep) - shift), keepf);
        total += hsum((__m256)last);
      }
      const f32xR inv = (f32xR)_mm256_set1_ps((float)(1.0 / total));
      for (j = 0; j + 32 <= whole; j += 32)
        for (int a = 0; a < 4; ++a) storeR(yr + j + 8 * a, loadR(yr + j + 8 * a) * inv);
      for (; j < whole; j += 8) storeR(yr + j, loadR(yr + j) * inv);
      if (tail) _mm256_maskstore_ps(yr + whole, keep, (__m256)(last * inv));
    }
  });
}

}  // namespace

bool softmax_forward_register_rows(int64_t n, int64_t c, const float* x, float* y) {
  if (c > kRowsMax) return wide_rows(n, c, x, y), true;
  if (c < kRowsMin) return false;
  switch ((c + 7) / 8) {
#define FASTCONV_ROWS(k) \
  case k:                \
    return rows<k>(n, c, x, y), true;
    FASTCONV_ROWS(2) FASTCONV_ROWS(3) FASTCONV_ROWS(4) FASTCONV_ROWS(5) FASTCONV_ROWS(6)
    FASTCONV_ROWS(7) FASTCONV_ROWS(8) FASTCONV_ROWS(9) FASTCONV_ROWS(10) FASTCONV_ROWS(11)
    FASTCONV_ROWS(12) FASTCONV_ROWS(13) FASTCONV_ROWS(14) FASTCONV_ROWS(15) FASTCONV_ROWS(16)
#undef FASTCONV_ROWS
    default:
      return false;
  }
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool softmax_forward_register_rows(int64_t, int64_t, const float*, float*) { return false; }

}  // namespace fastconv::cpu::detail

#endif
