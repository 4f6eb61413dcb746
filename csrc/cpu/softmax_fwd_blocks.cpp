// Row softmax at the avx2 level, 9..128 classes, on blocks of rows in three passes: (1) each
// row's lane maxima, folded to one maximum per row eight rows at a time; (2) e = exp(x - max)
// stored to y and each row's lane sums, folded and inverted eight rows at a time; (3) y *= 1 /
// sum. Called by softmax_rows.cpp for the rows in whole groups of 8 (the rest: its rows<K>).
//
// Why: one row at a time (softmax_rows.cpp rows<K>) is one dependency chain of ~100 cycles a
// row (load, max, a horizontal max, exp, sum, a horizontal sum, a divide, scale), and the out-of-
// order window held about two rows of it: (100352, 16) at ~60 cycles a row (1 thread, Zen 3,
// in cache) against ~15 for its two exps' arithmetic; its last register's vmaskmovps store is
// microcoded on Zen 3 as well. Here each pass is a loop of independent rows, the horizontal
// folds are 14 shuffles per 8 rows (the 8 rows' vectors reduced in one tree, no broadcast
// shuffles: pass 2 and 3 read the row's max / 1 / sum with vbroadcastss from a small array),
// the divide one vdivps per 8 rows, and no masked loads or stores.
//
// The same results, bit for bit, as rows<K>: the max is exact in any order (and a NaN makes
// its row NaN either way: exp of it makes the sum NaN); the exp is exp_lanes' operations on
// the same values (exp_nonpos, softmax_fwd_exp.h); each row's sum adds the same lanes in the same order
// (the lanes of the registers in turn, then (l, l+4), (l, l+2), (l, l+1) as hsum: reduce8);
// 1 / sum and e * (1 / sum) are the same IEEE operations. A row whose c is not a multiple of
// 8 has its last register loaded as its last 8 floats (overlapping the one before) and
// rotated by vpermps so its classes sit in lanes 0..tail-1 as rows<K>'s masked load put them
// (lanes past: 0 in the sum); stored rotated back, before the register before it, whose store
// then rewrites the overlap with the same values.
#include <algorithm>
#include <cstdint>

#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "cpu/softmax_fwd_exp.h"
#include "cpu/softmax_rows.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>

namespace fastconv::cpu::detail {

namespace {

// Eight rows' 8-lane vectors m[0..7] folded to one vector, lane i holding row i's
// ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)) (or the max): softmax_rows.cpp hsum's order, one
// tree for all eight (14 shuffles; hsum took 4 a row and a broadcast back).
template <bool kMax>
inline __m256 reduce8(const __m256* m) {
  auto op = [](__m256 a, __m256 b) { return kMax ? _mm256_max_ps(a, b) : _mm256_add_ps(a, b); };
  __m256 u[4];  // rows 2p, 2p+1: (l0+l4, l1+l5, l2+l6, l3+l7) in each 128-bit half
  for (int p = 0; p < 4; ++p) {
    const __m256 a = m[2 * p], b = m[2 * p + 1];
    u[p] = op(_mm256_insertf128_ps(a, _mm256_castps256_ps128(b), 1), _mm256_permute2f128_ps(a, b, 0x31));
  }
  const __m256 w0 = op(_mm256_shuffle_ps(u[0], u[1], 0x44), _mm256_shuffle_ps(u[0], u[1], 0xEE));
  const __m256 w1 = op(_mm256_shuffle_ps(u[2], u[3], 0x44), _mm256_shuffle_ps(u[2], u[3], 0xEE));
  // lanes: rows 0 2 4 6 1 3 5 7
  const __m256 s = op(_mm256_shuffle_ps(w0, w1, 0x88), _mm256_shuffle_ps(w0, w1, 0xDD));
  return _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

constexpr int kBlockRows = 64;       // rows per block at most (a multiple of 8)
constexpr int64_t kBlockFloats = 2048;  // and at most this many floats of x (8 KiB: L1 with y's)

// Rows of c = 8 (K - 1) + tail classes, n a multiple of 8.
template <int K>
void blocks(int64_t n, int64_t c, const float* x, float* y) {
  const int tail = (int)(c - 8 * (K - 1));
  const bool full = tail == 8;
  const __m256 keep = _mm256_castsi256_ps(
      _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // the last register (the row's last 8 floats) rotated so that class 8 (K - 1) + j is in
  // lane j, and back
  const __m256i fwd = _mm256_and_si256(_mm256_add_epi32(lanes, _mm256_set1_epi32(8 - tail)), _mm256_set1_epi32(7));
  const __m256i back = _mm256_and_si256(_mm256_add_epi32(lanes, _mm256_set1_epi32(tail)), _mm256_set1_epi32(7));
  const int64_t last = c - 8;  // the last register's first float in the row
  const int64_t rows_per_block = std::max<int64_t>(8, std::min<int64_t>(kBlockRows, kBlockFloats / c / 8 * 8));
  const int64_t nblocks = (n + rows_per_block - 1) / rows_per_block;
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
    alignas(32) float part[kBlockRows][8];  // a row's lane maxima, then its lane sums
    alignas(32) float shift[kBlockRows], inv[kBlockRows];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t r0 = b * rows_per_block;
      const int rows = (int)std::min(rows_per_block, n - r0);
      const float* xb = x + r0 * c;
      float* yb = y + r0 * c;
      // (1) lane maxima by '>' (as rows<K>); the overlapping last register repeats classes,
      // which does not change a max
      for (int r = 0; r < rows; ++r) {
        const float* xr = xb + r * c;
        f32xR mx = (f32xR)_mm256_loadu_ps(xr + last);
        for (int k = 0; k < K - 1; ++k) {
          const f32xR v = (f32xR)_mm256_loadu_ps(xr + 8 * k);
          mx = v > mx ? v : mx;
        }
        _mm256_store_ps(part[r], (__m256)mx);
      }
      for (int r = 0; r < rows; r += 8) _mm256_store_ps(shift + r, reduce8<true>((const __m256*)part[r]));
      // (2) e = exp(x - max) to y, lane sums; the next block's rows fetched meanwhile (the
      // max pass is all loads; on its own it waited on them at (100352, 16), 6.4 MB)
      for (int r = 0; r < rows; ++r) {
        const float* xr = xb + r * c;
        float* yr = yb + r * c;
        const char* ahead = (const char*)(xr + rows_per_block * c);
        for (int64_t off = 0; off < 4 * c; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
        const __m256 sh = _mm256_broadcast_ss(shift + r);
        __m256 e[K];
        for (int k = 0; k < K - 1; ++k) e[k] = exp_nonpos(_mm256_sub_ps(_mm256_loadu_ps(xr + 8 * k), sh));
        if (full) {
          e[K - 1] = exp_nonpos(_mm256_sub_ps(_mm256_loadu_ps(xr + last), sh));
        } else {
          const __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xr + last), fwd);
          e[K - 1] = _mm256_and_ps(exp_nonpos(_mm256_sub_ps(v, sh)), keep);
        }
        __m256 sum = e[0];
        for (int k = 1; k < K; ++k) sum = _mm256_add_ps(sum, e[k]);
        _mm256_store_ps(part[r], sum);
        if (full) {
          _mm256_storeu_ps(yr + last, e[K - 1]);
        } else {
          _mm256_storeu_ps(yr + last, _mm256_permutevar8x32_ps(e[K - 1], back));
        }
        for (int k = 0; k < K - 1; ++k) _mm256_storeu_ps(yr + 8 * k, e[k]);
      }
      for (int r = 0; r < rows; r += 8)
        _mm256_store_ps(inv + r, _mm256_div_ps(_mm256_set1_ps(1.f), reduce8<false>((const __m256*)part[r])));
      // (3) y *= 1 / sum: all of a row's registers loaded before any store (the last one
      // overlaps the one before unless full)
      for (int r = 0; r < rows; ++r) {
        float* yr = yb + r * c;
        const __m256 s = _mm256_broadcast_ss(inv + r);
        __m256 e[K];
        for (int k = 0; k < K - 1; ++k) e[k] = _mm256_loadu_ps(yr + 8 * k);
        e[K - 1] = _mm256_loadu_ps(yr + last);
        for (int k = 0; k < K; ++k) e[k] = _mm256_mul_ps(e[k], s);
        _mm256_storeu_ps(yr + last, e[K - 1]);
        for (int k = 0; k < K - 1; ++k) _mm256_storeu_ps(yr + 8 * k, e[k]);
      }
    }
  });
}

}  // namespace

int64_t softmax_forward_blocks(int64_t n, int64_t c, const float* x, float* y) {
  if (c < 9 || c > 128 || n < 8) return 0;
  const int64_t done = n / 8 * 8;
  switch ((c + 7) / 8) {
#define FASTCONV_BLOCKS(k) \
  case k:                  \
    blocks<k>(done, c, x, y); \
    break;
    FASTCONV_BLOCKS(2) FASTCONV_BLOCKS(3) FASTCONV_BLOCKS(4) FASTCONV_BLOCKS(5) FASTCONV_BLOCKS(6)
    FASTCONV_BLOCKS(7) FASTCONV_BLOCKS(8) FASTCONV_BLOCKS(9) FASTCONV_BLOCKS(10) FASTCONV_BLOCKS(11)
    FASTCONV_BLOCKS(12) FASTCONV_BLOCKS(13) FASTCONV_BLOCKS(14) FASTCONV_BLOCKS(15) FASTCONV_BLOCKS(16)
#undef FASTCONV_BLOCKS
    default:
      return 0;
  }
  return done;
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

int64_t softmax_forward_blocks(int64_t, int64_t, const float*, float*) { return 0; }

}  // namespace fastconv::cpu::detail

#endif
