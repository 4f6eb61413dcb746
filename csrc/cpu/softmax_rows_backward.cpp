// Row softmax backward at the avx2 level: dx = y * (dy - sum(dy * y)) with each row of c
// classes in K = ceil(c / 8) ymm registers of dy and K of y (the last ones masked unless
// c % 8 == 0), the dot's lanes summed by a butterfly that leaves the sum in every lane.
//
// Why: below AVX-512 softmax.cpp sent 9..16 classes to its [c][16] tile (16-lane vectors,
// which GCC 12 splits into ymm halves through the stack, and 2 * 16 * c scalar moves in and
// 16 * c out per 16 rows) and 17..64 to the row loop (an omp-simd dot with a double total, a
// scalar-ish second pass). At 16 classes the tile ran at 0.16-0.25 of a copy's speed (sweep
// 2026-12-07i, Zen 3: (50176, 16) 0.88 ms). AVX-512 keeps its masked rows (softmax.cpp) and the
// baseline level its tile (no masked loads; 4-float registers).
//
// Per element the same operations as the tile: d = sum of dy * y over the row (float lanes,
// then a tree: only the order of the additions differs), dx = y * (dy - d). A NaN in a row's dy
// or y makes its d, hence its whole row of dx, NaN, as in the tile.
#include "cpu/softmax_rows.h"

#include "cpu/parallel.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>

namespace fastconv::cpu::detail {

namespace {

constexpr int64_t kBackRowsMin = 9, kBackRowsMax = 64;

// Rows of c = 8 (K - 1) + tail classes (FULL: tail == 8). Otherwise the last register is the
// row's last 8 floats, overlapping the one before (c >= 9): its first 8 - tail lanes are zeroed
// for the dot, and its store rewrites them with the values just stored there (the same
// operations on the same operands). No masked loads or stores: with vmaskmovps (slow on Zen 3)
// (50176, 12) ran at 0.27 of a copy, (50176, 16) at 0.88 (1 thread, avx2). The registers
// are compile-time arrays (K <= 8: 16 registers of dy and y at most, plus the sums).
template <int K, bool FULL>
void back_rows(int64_t n, int64_t c, const float* dy, const float* y, float* dx) {
  const int tail = (int)(c - 8 * (K - 1));
  // lanes 8 - tail .. 7 of the last register are the row's own (the tail)
  const __m256 own = _mm256_castsi256_ps(
      _mm256_cmpgt_epi32(_mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8), _mm256_set1_epi32(8 - tail)));
  const int64_t last_at = c - 8;  // the last register's first float in the row
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* g = dy + i * c;
      const float* yr = y + i * c;
      __m256 gv[K], yv[K];
      for (int k = 0; k < K - 1; ++k) gv[k] = _mm256_loadu_ps(g + 8 * k), yv[k] = _mm256_loadu_ps(yr + 8 * k);
      gv[K - 1] = _mm256_loadu_ps(g + last_at), yv[K - 1] = _mm256_loadu_ps(yr + last_at);
      // the dot's term of the last register: only the tail lanes (FULL: all 8)
      const __m256 last_p = FULL ? _mm256_mul_ps(gv[K - 1], yv[K - 1])
                                 : _mm256_and_ps(_mm256_mul_ps(gv[K - 1], yv[K - 1]), own);
      // Two chains from 4 registers on (a row of 32+: the chain's latency, not the loads,
      // would bound it), summed before the butterfly.
      __m256 a0 = last_p;
      __m256 a1 = _mm256_setzero_ps();
      for (int k = 0; k < K - 1; ++k) {
        if (K >= 4 && k % 2 == 1) a1 = _mm256_fmadd_ps(gv[k], yv[k], a1);
        else a0 = _mm256_fmadd_ps(gv[k], yv[k], a0);
      }
      if constexpr (K >= 4) a0 = _mm256_add_ps(a0, a1);
      // butterfly: the 128-bit halves, then pairs, then neighbours: the sum in all 8 lanes
      __m256 d = _mm256_add_ps(a0, _mm256_permute2f128_ps(a0, a0, 0x01));
      d = _mm256_add_ps(d, _mm256_permute_ps(d, 0x4E));
      d = _mm256_add_ps(d, _mm256_permute_ps(d, 0xB1));
      float* out = dx + i * c;
      for (int k = 0; k < K - 1; ++k) _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(yv[k], _mm256_sub_ps(gv[k], d)));
      _mm256_storeu_ps(out + last_at, _mm256_mul_ps(yv[K - 1], _mm256_sub_ps(gv[K - 1], d)));
    }
  });
}

template <int K>
void back_rows_of(int64_t n, int64_t c, const float* dy, const float* y, float* dx) {
  if (c == 8 * K) back_rows<K, true>(n, c, dy, y, dx);
  else back_rows<K, false>(n, c, dy, y, dx);
}

}  // namespace

// C = 6, four rows (24 floats, three registers P0..P2) at a time. The planes path
// (softmax.cpp softmax_backward_planes<6>) split the products into 6 planes and spread d back
// with cross-lane vpermd: 32 vpermd, 24 blends and 38 reloads of their masks per 8 rows
// (perf, Zen 3, avx2), ~120 cycles, 0.34-0.37 of a copy's speed (sweep 2026-12-07i). Here the
// 128-bit halves h0..h5 of the products hold r0[0:4] | r0[4:6] r1[0:2] | r1[2:6] | r2[0:4] |
// r2[4:6] r3[0:2] | r3[2:6]: X = [h0 | h3] and Y = [h2 | h5] are blends, Z = [h1 | h4] one
// vperm2f128, two hadds and a pair swap leave d0, d1 in lanes 0, 1 and d2, d3 in lanes 4, 5,
// and three vpermps spread them over the rows' lanes: 9 shuffles per 4 rows. Each row's d is
// its six products summed (in another order than the planes path: float rounding only).
int64_t softmax_backward_six(int64_t n, const float* dy, const float* y, float* dx) {
  const int64_t quads = n / 4;
  parallel_region((n * 6 >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
    const __m256i e0 = _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 1, 1);
    const __m256i e1 = _mm256_setr_epi32(1, 1, 1, 1, 4, 4, 4, 4);
    const __m256i e2 = _mm256_setr_epi32(4, 4, 5, 5, 5, 5, 5, 5);
#pragma omp for schedule(static)
    for (int64_t q = 0; q < quads; ++q) {
      const float* g = dy + q * 24;
      const float* yr = y + q * 24;
      const __m256 g0 = _mm256_loadu_ps(g), g1 = _mm256_loadu_ps(g + 8), g2 = _mm256_loadu_ps(g + 16);
      const __m256 y0 = _mm256_loadu_ps(yr), y1 = _mm256_loadu_ps(yr + 8), y2 = _mm256_loadu_ps(yr + 16);
      const __m256 p0 = _mm256_mul_ps(g0, y0), p1 = _mm256_mul_ps(g1, y1), p2 = _mm256_mul_ps(g2, y2);
      const __m256 X = _mm256_blend_ps(p0, p1, 0xF0);           // r0[0:4] | r2[0:4]
      const __m256 Y = _mm256_blend_ps(p1, p2, 0xF0);           // r1[2:6] | r3[2:6]
      const __m256 Z = _mm256_permute2f128_ps(p0, p2, 0x21);    // r0[4:6] r1[0:2] | r2[4:6] r3[0:2]
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(X, Y), Z);  // sum X, sum Y, Z pairs (per half)
      const __m256 d = _mm256_add_ps(h, _mm256_permute_ps(h, 0x4E));  // d0 d1 . . | d2 d3 . .
      float* out = dx + q * 24;
      _mm256_storeu_ps(out, _mm256_mul_ps(y0, _mm256_sub_ps(g0, _mm256_permutevar8x32_ps(d, e0))));
      _mm256_storeu_ps(out + 8, _mm256_mul_ps(y1, _mm256_sub_ps(g1, _mm256_permutevar8x32_ps(d, e1))));
      _mm256_storeu_ps(out + 16, _mm256_mul_ps(y2, _mm256_sub_ps(g2, _mm256_permutevar8x32_ps(d, e2))));
    }
  });
  return quads * 4;
}

bool softmax_backward_register_rows(int64_t n, int64_t c, const float* dy, const float* y, float* dx) {
  if (c < kBackRowsMin || c > kBackRowsMax) return false;
  switch ((c + 7) / 8) {
#define FASTCONV_ROWS(k) \
  case k:                \
    return back_rows_of<k>(n, c, dy, y, dx), true;
    FASTCONV_ROWS(2) FASTCONV_ROWS(3) FASTCONV_ROWS(4) FASTCONV_ROWS(5) FASTCONV_ROWS(6)
    FASTCONV_ROWS(7) FASTCONV_ROWS(8)
#undef FASTCONV_ROWS
    default:
      return false;
  }
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool softmax_backward_register_rows(int64_t, int64_t, const float*, const float*, float*) { return false; }
int64_t softmax_backward_six(int64_t, const float*, const float*, float*) { return 0; }

}  // namespace fastconv::cpu::detail

#endif
