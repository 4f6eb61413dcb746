// The backward-data product of a conv with few output positions, dcol = dy @ W^T, read from
// W in place (weight_rows_product.h).
//
// Why: at batch 1 in the deep layers (3x3 s2 7x7 -> 4x4, 512 -> 512: 16 output positions
// against 9.4 MB of weights) the GEMM path packed W^T (gemm_pack_b, a strided transpose of
// all of W: 39% of the call, perf on the Zen 4) and then streamed the packed copy through a
// micro-kernel that has 16 of its 14 x 32 tile rows to fill. Here each output is a dot
// product of a row of W (contiguous: HWIO's Cout floats of one (ky, kx, ci)) with a row of dy,
// so W is read once, in place, as R = 3 row streams: a tile is R rows of W x 8 rows of dy, 24
// accumulators of 16 lanes (partial sums over the reduction), then a transposing reduction
// (unpack, shuffle, 128-bit shuffles: ~23 instructions per 8 sums, for 8 x 32 FMAs at 512
// channels) and scalar stores into dcol. dy is copied once into [half][k vector][8 rows][16]
// blocks (at most 16 rows x Cout floats, 32 KB at 512 channels) so that each k step's 8 dy
// vectors are one contiguous run; a half's 16 KB stay in L1 while W streams past.
#include "cpu/weight_rows_product.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/im2col.h"
#include "cpu/parallel.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

constexpr int64_t kPrefetchBytes = 1 << 20;

// Lanes 0..3 of the result: the sums of a[0..3]; lanes 8..11: those of a[4..7].
inline __m512 reduce8(const __m512* a) {
  __m512 s[4];
  for (int q = 0; q < 4; ++q)
    s[q] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * q], a[2 * q + 1]), _mm512_unpackhi_ps(a[2 * q], a[2 * q + 1]));
  const __m512 u0 = _mm512_add_ps(_mm512_shuffle_ps(s[0], s[1], 0x44), _mm512_shuffle_ps(s[0], s[1], 0xEE));
  const __m512 u1 = _mm512_add_ps(_mm512_shuffle_ps(s[2], s[3], 0x44), _mm512_shuffle_ps(s[2], s[3], 0xEE));
  const __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, 0x88), _mm512_shuffle_f32x4(u0, u1, 0xDD));
  return _mm512_add_ps(w, _mm512_shuffle_f32x4(w, w, 0xB1));
}

// Rows [r, r + R) of W (k floats each, ld k) against the 8 dy rows of block d (k/16 steps of 8
// vectors): dcol[(m0 + i) * ldc + r + j] for i < mn (<= 8), j < R.
template <int R>
void tile(const float* w, int64_t k, const float* d, int64_t m0, int64_t mn, float* dcol,
          int64_t ldc, bool pf) {
  __m512 acc[R][8];
#pragma GCC unroll 32
  for (int j = 0; j < R; ++j)
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) acc[j][i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; p += 16, d += 128) {
    __m512 wv[R];
#pragma GCC unroll 4
    for (int j = 0; j < R; ++j) wv[j] = _mm512_loadu_ps(w + j * k + p);
    if (pf)  // the next tile's rows (the following R * k floats of W), a tile ahead
#pragma GCC unroll 4
      for (int j = 0; j < R; ++j) _mm_prefetch((const char*)(w + (R + j) * k + p), _MM_HINT_T0);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      __m512 dv = _mm512_loadu_ps(d + 16 * i);
      // one load for the R FMAs: GCC otherwise folds it into each FMA (R loads of it)
      __asm__("" : "+v"(dv));
#pragma GCC unroll 4
      for (int j = 0; j < R; ++j) acc[j][i] = _mm512_fmadd_ps(wv[j], dv, acc[j][i]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < R; ++j) {
    alignas(64) float t[16];
    _mm512_store_ps(t, reduce8(acc[j]));
    for (int64_t i = 0; i < mn; ++i) dcol[(m0 + i) * ldc + j] = t[i < 4 ? i : i + 4];
  }
}

}  // namespace

bool weight_rows_product_available() { return true; }

void weight_rows_product(int64_t m, int64_t n, int64_t k, const float* dy, int64_t ldy,
                         const float* w, float* dcol, int64_t ldc, int threads) {
  const int64_t halves = (m + 7) / 8, steps = k / 16;
  // dy in [half][step][8 rows][16 lanes], rows past m zero (their sums are not stored)
  std::vector<float> d((size_t)(halves * steps * 128), 0.f);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t s = 0; s < steps; ++s)
      std::memcpy(d.data() + ((i / 8) * steps + s) * 128 + (i % 8) * 16, dy + i * ldy + 16 * s,
                  sizeof(float) * 16);
  constexpr int64_t kRows = 3, kBlock = 96;  // W rows per tile; per work item
  const int64_t items = (n + kBlock - 1) / kBlock;
  // W prefetched a tile ahead where it is past L2 (1 thread, ms without/with, loaded Zen 4,
  // medians of 3 alternating runs: 3x3 s2 N=1 7x7 512 (9.4 MB) 1.31/0.85, 256 (2.4 MB)
  // 0.204/0.197; 1x1 s2 N=1 7x7 512 (1 MB) 0.087/0.092).
  const bool pf = n * k * (int64_t)sizeof(float) > kPrefetchBytes;
  parallel_region(std::min<int64_t>(threads, items), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t r1 = std::min(n, (it + 1) * kBlock);
      for (int64_t r = it * kBlock; r < r1; r += kRows) {
        const int64_t rn = std::min(kRows, r1 - r);
        for (int64_t h = 0; h < halves; ++h) {
          const float* dh = d.data() + h * steps * 128;
          const int64_t mn = std::min<int64_t>(8, m - 8 * h);
          if (rn == 3) tile<3>(w + r * k, k, dh, 8 * h, mn, dcol + r, ldc, pf && h == 0);
          else if (rn == 2) tile<2>(w + r * k, k, dh, 8 * h, mn, dcol + r, ldc, pf && h == 0);
          else tile<1>(w + r * k, k, dh, 8 * h, mn, dcol + r, ldc, pf && h == 0);
        }
      }
    }
  });
}

#else

bool weight_rows_product_available() { return false; }

void weight_rows_product(int64_t, int64_t, int64_t, const float*, int64_t, const float*, float*,
                         int64_t, int) {}

#endif

// 1 thread, ms GEMM (W^T packed once) / here, medians of 3 alternating runs on the loaded
// Zen 4 (stop 34): 3x3 s2 N=1 7x7 C=512 1.63/0.85, 256 0.265/0.197, 128 0.064/0.059, 96
// 0.037/0.036; 1x1 s2 N=1 7x7 512 0.135/0.092, 256 0.030/0.026. Below 64 K floats of weights
// (3x3 at 64 channels: 0.0174/0.0175) no gain measured.
bool weight_rows_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                               int threads) {
  const int64_t positions = g.n * g.oh * g.ow, k = g.win.kh * g.win.kw * g.c;
  constexpr int64_t kMaxColFloats = 1 << 18;  // dcol's workspace, 1 MB
  if (!weight_rows_product_available() || g.groups != 1 || positions > kWeightRowsMaxM ||
      g.oc % 16 != 0 || k * g.oc < kWeightRowsMinFloats || positions * k > kMaxColFloats)
    return false;
  std::vector<float> dcol((size_t)(positions * k));
  weight_rows_product(positions, k, g.oc, dy, g.oc, w, dcol.data(), k, threads);
  std::memset(dx, 0, sizeof(float) * g.input_size());
  col2im_lines(g, dcol.data(), 0, g.n * g.oh, dx);
  return true;
}

}  // namespace fastconv::cpu::detail
