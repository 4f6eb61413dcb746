// Max pooling forward (with or without the argmax) over tiling windows (kh == sh, kw == sw, no
// padding: 2x2 stride 2) at the avx2 level for 8..64 channels in ymm registers: each output
// pixel's window walked once, all of a task's ceil(C / 8) registers together (a compile-time
// count; past a multiple of 8 the last register overlaps the one before), 2x2 windows unrolled.
//
// Why: pool_tiling.cpp's forward_channels walks 16 channels per max_window16 call (two ymm
// pieces) and, at C = 24, a second call over channels 8..23 overlapping the first: 32 lanes of
// compares and selects for 24, two window walks, two argmax narrowings of 16 lanes per pixel.
// N=32 56x56 C=24 ran at 0.227 of a copy's speed (sweep 2026-12-08, Zen 3), half its family.
//
// The same cells in the same row-major order with the same rule (pool_beats: '>' keeps the
// first maximum, a NaN wins and stays, the last NaN cell its argmax), from the window's first
// cell: the same floats and argmax bytes as max_window16.
#include <cstdint>

#include "cpu/pool_tasks.h"
#include "cpu/pool_tiling.h"
#include "cpu/simd.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>

namespace fastconv::cpu::detail {

bool pool_c24_applies(const PoolGeometry& g) {
  const Window2d& w = g.win;
  // every task's channels (pool_tasks.h: all C, or blocks of 16 and a last one) 8 or more
  const ChannelBlocks cb = channel_blocks(g.n, g.c);
  const bool wide_tasks = cb.count == 1 || g.c - (cb.count - 1) * cb.size >= 8;
  return g.c >= 8 && g.c <= 64 && wide_tasks && w.kh == w.sh && w.kw == w.sw && w.pt == 0 &&
         w.pb == 0 && w.pl == 0 && w.pr == 0 && w.dh == 1 && w.dw == 1 && w.kh >= 1 && w.kw >= 1 &&
         g.oh * w.kh <= g.h && g.ow * w.kw <= g.w && w.kh * w.kw <= 255;
}

namespace {

// 8 window positions (int32 lanes, 0..254) to 8 bytes
inline void store_bytes8(uint8_t* p, __m256i v) {
  const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  _mm_storel_epi64((__m128i*)p, _mm_packus_epi16(w16, w16));
}

// P registers of channels from c0 (the last at c0 + cw - 8, overlapping the one before unless
// cw == 8 P: its store rewrites those channels with the same values) of every output pixel of
// image img. KH, KW: the window
// (0: runtime g.win.kh / kw). kFar: prefetch the next output row's window rows (as
// pool_tiling.cpp's forward).
template <int P, int KH, int KW, bool kArg, bool kFar, bool kWhole>
void pixels(const PoolGeometry& g, const float* x, float* y, uint8_t* arg, int64_t img, int64_t c0, int64_t cw) {
  const int64_t C = g.c, W = g.w, oh = g.oh, ow = g.ow;
  // each register's first channel (from c0); kWhole: cw == 8 P, compile-time offsets
  const int64_t last = kWhole ? 8 * (P - 1) : cw - 8;
  auto at = [&](int p) { return p == P - 1 ? last : (int64_t)8 * p; };
  const int64_t kh = KH ? KH : g.win.kh, kw = KW ? KW : g.win.kw;
  const float* xi = x + img * g.h * W * C + c0;
  for (int64_t oy = 0; oy < oh; ++oy) {
    const float* xr = xi + oy * kh * W * C;
    const int64_t o_row = (img * oh + oy) * ow * C + c0;
    for (int64_t ox = 0; ox < ow; ++ox) {
      const float* cell0 = xr + ox * kw * C;
      if (kFar && oy + 1 < oh)
        for (int64_t a = 0; a < kh; ++a) {
          const char* next = (const char*)(cell0 + (kh + a) * W * C);
          for (int64_t k = 0; k < kw * cw * (int64_t)sizeof(float); k += 64) _mm_prefetch(next + k, _MM_HINT_T0);
        }
      __m256 best[P];
      __m256i which[P];
      for (int p = 0; p < P; ++p) best[p] = _mm256_loadu_ps(cell0 + at(p)), which[p] = _mm256_setzero_si256();
      for (int64_t a = 0; a < kh; ++a)
        for (int64_t b = (a == 0 ? 1 : 0); b < kw; ++b) {
          const float* cell = cell0 + (a * W + b) * C;
          const __m256i t = _mm256_set1_epi32((int32_t)(a * kw + b));
          for (int p = 0; p < P; ++p) {
            const __m256 val = _mm256_loadu_ps(cell + at(p));
            // pool_beats: val > best, or val NaN
            const __m256 win = _mm256_or_ps(_mm256_cmp_ps(val, best[p], _CMP_GT_OQ), _mm256_cmp_ps(val, val, _CMP_UNORD_Q));
            best[p] = _mm256_blendv_ps(best[p], val, win);
            if constexpr (kArg) which[p] = _mm256_castps_si256(
                _mm256_blendv_ps(_mm256_castsi256_ps(which[p]), _mm256_castsi256_ps(t), win));
          }
        }
      const int64_t o = o_row + ox * C;
      for (int p = 0; p < P; ++p) {
        _mm256_storeu_ps(y + o + at(p), best[p]);
        if constexpr (kArg) store_bytes8(arg + o + at(p), which[p]);
      }
    }
  }
}

template <int P, bool kFar, bool kWhole>
void task(const PoolGeometry& g, const float* x, float* y, uint8_t* arg, int64_t img, int64_t c0, int64_t cw) {
  const bool two = g.win.kh == 2 && g.win.kw == 2;
  if (arg) {
    if (two) return pixels<P, 2, 2, true, kFar, kWhole>(g, x, y, arg, img, c0, cw);
    return pixels<P, 0, 0, true, kFar, kWhole>(g, x, y, arg, img, c0, cw);
  }
  if (two) return pixels<P, 2, 2, false, kFar, kWhole>(g, x, y, arg, img, c0, cw);
  pixels<P, 0, 0, false, kFar, kWhole>(g, x, y, arg, img, c0, cw);
}

template <bool kFar>
void forward(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    // a task's channels: all C, or blocks of 16 and a last one of 8 or more (pool_tasks.h)
    const int64_t cw = c1 - c0;
    switch ((cw + 7) / 8) {
#define FASTCONV_PIECES(k) \
  case k:                  \
    return cw == 8 * k ? task<k, kFar, true>(g, x, y, arg, img, c0, cw) \
                       : task<k, kFar, false>(g, x, y, arg, img, c0, cw);
      FASTCONV_PIECES(1) FASTCONV_PIECES(2) FASTCONV_PIECES(3) FASTCONV_PIECES(4)
      FASTCONV_PIECES(5) FASTCONV_PIECES(6) FASTCONV_PIECES(7) FASTCONV_PIECES(8)
#undef FASTCONV_PIECES
    }
  });
}

}  // namespace

void max_forward_c24(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  // pool_tiling.cpp forward's kFar rule: inputs of 4 MiB and more
  if (g.n * g.h * g.w * g.c * (int64_t)sizeof(float) >= ((int64_t)4 << 20)) return forward<true>(g, x, y, arg);
  forward<false>(g, x, y, arg);
}

}  // namespace fastconv::cpu::detail

#endif
