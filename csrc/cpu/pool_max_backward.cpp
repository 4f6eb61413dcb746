// 2-D max pooling backward on NHWC float32: from the saved argmax (max_pool2d_backward_argmax,
// a gather per dx cell over the windows covering it; tiling windows go to pool_tiling.cpp)
// or by recomputing the forward's winners from x (max_pool2d_backward).
//
// Parallelism: one OpenMP loop over (image, channel block) tasks (pool_tasks.h). Different
// tasks never touch the same dx cell, so no atomics, and results are deterministic.
#include <omp.h>

#include <algorithm>
#include <array>
#include <climits>
#include <type_traits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/nan_math.h"
#include "common/pool_index.h"
#include "cpu/pool_packed.h"
#include "cpu/pool_tasks.h"
#include "cpu/pool_tiling.h"
#include "cpu/pool_windows.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

using detail::for_each_task;
using detail::i32xR;
using detail::kPieces;
using detail::load_piece;
#if defined(__AVX2__)
using detail::lanes_below;
using detail::TiledRows8;
#endif
#if defined(__AVX512F__)
using detail::packed_cover_table;
using detail::PackedSlot;
#elif defined(__AVX2__)
using detail::packed_cover_table8;
using detail::PackedSlot8;
using detail::store_lanes8;
#endif

namespace {

// Gather of one dx block of V * kLanes channels: the dy of every covering window (outputs
// oys x oxs) whose saved winner is this cell (iy, ix). dyi/argi: the image's dy and argmax,
// already offset to the block's first channel. V vectors per walk, as in the forward.
template <int V>
inline void max_gather16(const PoolGeometry& g, const float* dyi, const uint8_t* argi,
                         int64_t iy, int64_t ix, AxisRange oys, AxisRange oxs, float* out) {
  const Window2d& w = g.win;
  constexpr int N = V * kPieces;  // register-wide pieces, as in max_window16
  f32xR acc[N];
  for (int v = 0; v < N; ++v) acc[v] = f32xR{};
  for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
    const int64_t ty = (iy - (oy * w.sh - w.pt)) * w.kw;
    for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
      const int64_t o = (oy * g.ow + ox) * g.c;
      const i32xR t = i32xR{} + (int32_t)(ty + ix - (ox * w.sw - w.pl));
      for (int v = 0; v < V; ++v) {
        i32xR a[kPieces];
        const i32x16 a16 = widen16(argi + o + v * kLanes);
        std::memcpy(a, &a16, sizeof a);
        for (int p = 0; p < kPieces; ++p) {
          const i32xR mine = a[p] == t;
          acc[v * kPieces + p] += mine ? load_piece(dyi + o + v * kLanes + p * kRegLanes) : f32xR{};
        }
      }
    }
  }
  for (int v = 0; v < N; ++v) std::memcpy(out + v * kRegLanes, &acc[v], sizeof acc[v]);
}

inline void max_gather_tail(const PoolGeometry& g, const float* dyi, const uint8_t* argi,
                            int64_t iy, int64_t ix, AxisRange oys, AxisRange oxs, int64_t n,
                            float* out) {
  const Window2d& w = g.win;
  for (int64_t k = 0; k < n; ++k) {
    float acc = 0.f;
    for (int64_t oy = oys.lo; oy < oys.hi; ++oy)
      for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
        const int64_t o = (oy * g.ow + ox) * g.c + k;
        const int64_t t = (iy - (oy * w.sh - w.pt)) * w.kw + ix - (ox * w.sw - w.pl);
        if ((int64_t)argi[o] == t) acc += dyi[o];
      }
    out[k] = acc;
  }
}

#if defined(__AVX512F__)
// Few channels (C < 16): max_gather16 for P = 16 / C neighbouring dx pixels per vector, over
// the cover table (pool_packed.h PackedSlot: its comment has the lane map and the rule).
void max_backward_argmax_packed(const PoolGeometry& g, const float* dy, const uint8_t* arg,
                                float* dx, const std::vector<AxisRange>& cover_y,
                                const std::vector<AxisRange>& cover_x) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = kLanes / C, groups = (g.w + pixels - 1) / pixels;
  const int64_t slots = (w.kw + w.sw - 1) / w.sw, row_len = g.ow * C;
  const std::vector<PackedSlot> table = packed_cover_table(g, cover_x, pixels, slots);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  const bool gathers = std::any_of(table.begin(), table.end(), [](const PackedSlot& sl) { return sl.span > kLanes; });
#else
  const bool gathers = true;
#endif
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    const float* dyi = dy + img * g.oh * g.ow * C;
    const uint8_t* argi = arg + img * g.oh * g.ow * C;
    // argmax rows widened to int32 for the gathers, one per output row, made on first use
    int32_t* wide = reinterpret_cast<int32_t*>(scratch(g.oh * row_len));
    int64_t widened = gathers ? 0 : g.oh;  // only the gather path reads the widened rows
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      for (; widened < oys.hi; ++widened)
        for (int64_t j = 0; j < row_len; ++j) wide[widened * row_len + j] = argi[widened * row_len + j];
      float* dx_row = dx + (img * g.h + iy) * g.w * C;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int64_t lanes = std::min(pixels, g.w - gi * pixels) * C;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
          const __m512i ty = _mm512_set1_epi32((int32_t)((iy - (oy * w.sh - w.pt)) * w.kw));
          const int32_t* arg_row = wide + oy * row_len;
          const float* dy_row = dyi + oy * row_len;
          for (int64_t s = 0; s < slots; ++s) {
            const PackedSlot& sl = table[gi * slots + s];
            if (sl.valid == 0) continue;
#if defined(__AVX512BW__) && defined(__AVX512VL__)
            if (sl.span <= kLanes) {
              const __mmask16 span = (__mmask16)((1u << sl.span) - 1u);
              const __m512i a = _mm512_permutexvar_epi32(
                  sl.rel, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(span, argi + oy * row_len + sl.base)));
              const __mmask16 hit =
                  sl.valid & _mm512_cmpeq_epi32_mask(a, _mm512_add_epi32(ty, sl.tx));
              const __m512 d = _mm512_permutexvar_ps(sl.rel, _mm512_maskz_loadu_ps(span, dy_row + sl.base));
              acc = _mm512_mask_add_ps(acc, hit, acc, d);
              continue;
            }
#endif
            const __m512i a = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), sl.valid,
                                                          sl.dy_off, arg_row, 4);
            const __mmask16 hit =
                sl.valid & _mm512_cmpeq_epi32_mask(a, _mm512_add_epi32(ty, sl.tx));
            const __m512 d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), hit, sl.dy_off, dy_row, 4);
            acc = _mm512_mask_add_ps(acc, hit, acc, d);
          }
        }
        _mm512_mask_storeu_ps(dx_row + gi * pixels * C, (__mmask16)((1u << lanes) - 1u), acc);
      }
    }
  });
}
#elif defined(__AVX2__)
// Few channels at the avx2 level (C < 8): max_backward_argmax_packed with 8 lanes, by two
// gathers (AVX2 has no masked permute-load), or two masked loads at P = 1. The channel loop
// below would leave these to max_gather_tail, one scalar chain per channel (LeNet's
// (256, 28, 28, 6) pool: 8.1 ms at avx2 against 0.58 at avx512). Lanes add the same terms in
// the same order as max_gather_tail (a missed lane adds +0 to a sum that is never -0), so
// results are bit-identical.
void max_backward_argmax_packed8(const PoolGeometry& g, const float* dy, const uint8_t* arg,
                                 float* dx, const std::vector<AxisRange>& cover_y,
                                 const std::vector<AxisRange>& cover_x) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = 8 / C, groups = (g.w + pixels - 1) / pixels;
  const int64_t slots = (w.kw + w.sw - 1) / w.sw, row_len = g.ow * C;
  const std::vector<PackedSlot8> table = packed_cover_table8(g, cover_x, pixels, slots);
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    const float* dx_end = dx + (img + 1) * g.h * g.w * C;  // this image's dx ends here
    const float* dyi = dy + img * g.oh * g.ow * C;
    const uint8_t* argi = arg + img * g.oh * g.ow * C;
    // argmax rows widened to int32 for the gathers, one per output row, made on first use
    int32_t* wide = reinterpret_cast<int32_t*>(scratch(g.oh * row_len));
    int64_t widened = 0;
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      for (; widened < oys.hi; ++widened)
        for (int64_t j = 0; j < row_len; ++j) wide[widened * row_len + j] = argi[widened * row_len + j];
      float* dx_row = dx + (img * g.h + iy) * g.w * C;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int32_t lanes = (int32_t)(std::min(pixels, g.w - gi * pixels) * C);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
          const __m256i ty = _mm256_set1_epi32((int32_t)((iy - (oy * w.sh - w.pt)) * w.kw));
          const int32_t* arg_row = wide + oy * row_len;
          const float* dy_row = dyi + oy * row_len;
          for (int64_t s = 0; s < slots; ++s) {
            const PackedSlot8& sl = table[gi * slots + s];
            if (pixels == 1) {
              if (sl.first_ox < 0) continue;
              const int64_t at = sl.first_ox * C;
              const __m256i a = _mm256_maskload_epi32(arg_row + at, sl.valid);
              const __m256i hit = _mm256_and_si256(sl.valid, _mm256_cmpeq_epi32(a, _mm256_add_epi32(ty, sl.tx)));
              acc = _mm256_add_ps(acc, _mm256_maskload_ps(dy_row + at, hit));
              continue;
            }
            const __m256i a = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), arg_row, sl.dy_off,
                                                          sl.valid, 4);
            const __m256i hit = _mm256_and_si256(sl.valid, _mm256_cmpeq_epi32(a, _mm256_add_epi32(ty, sl.tx)));
            acc = _mm256_add_ps(acc, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), dy_row, sl.dy_off,
                                                              _mm256_castsi256_ps(hit), 4));
          }
        }
        float* at = dx_row + gi * pixels * C;
        store_lanes8(at, acc, lanes, at + 8 <= dx_end);
      }
    }
  });
}

#endif

#if defined(__AVX2__)  // both levels: at avx512 too (see the dispatch)
// Tiling windows at C < 8 along the contiguous dx rows (pool_packed.h TiledRows8); tab.vectors > 0
void max_backward_argmax_tiled8(const PoolGeometry& g, const TiledRows8& tab, const float* dy,
                                const uint8_t* arg, float* dx) {
  const Window2d& w = g.win;
  const int64_t C = g.c, row_len = g.ow * C, dx_row = g.w * C;
  const int64_t covered = g.ow * w.sw * C;  // dx floats of a row inside some window
  const int64_t per_period = tab.vectors * 8 / w.sw;  // dy entries per period
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* out = dx + (img * g.h + iy) * dx_row;
      const int64_t oy = iy / w.sh;
      if (oy >= g.oh) {  // below the last window
        std::memset(out, 0, sizeof(float) * dx_row);
        continue;
      }
      const float* dy_row = dy + (img * g.oh + oy) * row_len;
      const uint8_t* arg_row = arg + (img * g.oh + oy) * row_len;
      const __m256i ty = _mm256_set1_epi32((int32_t)((iy % w.sh) * w.kw));
      int64_t e = 0;
      for (int64_t period = 0; e < covered; ++period)
        for (int64_t j = 0; j < tab.vectors && e < covered; ++j, e += 8) {
          const int64_t q = period * per_period + tab.base[j];
          const __m256i rel = _mm256_loadu_si256((const __m256i*)tab.rel[j].data());
          const __m256i tx = _mm256_add_epi32(ty, _mm256_loadu_si256((const __m256i*)tab.tx[j].data()));
          if (e + 8 <= covered && q + 8 <= row_len) {
            const __m256i a = _mm256_permutevar8x32_epi32(
                _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(arg_row + q))), rel);
            const __m256 d = _mm256_permutevar8x32_ps(_mm256_loadu_ps(dy_row + q), rel);
            const __m256 hit = _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, tx));
            _mm256_storeu_ps(out + e, _mm256_add_ps(_mm256_setzero_ps(), _mm256_and_ps(hit, d)));
            continue;
          }
          // The row's last vector: the entries it reads past the dy row feed only lanes past
          // the covered floats, which are not stored.
          const int64_t avail = std::min<int64_t>(8, row_len - q), n = std::min<int64_t>(8, covered - e);
          uint8_t bytes[16] = {};
          std::memcpy(bytes, arg_row + q, (size_t)avail);
          const __m256i a = _mm256_permutevar8x32_epi32(
              _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)bytes)), rel);
          const __m256 d = _mm256_permutevar8x32_ps(_mm256_maskload_ps(dy_row + q, lanes_below(avail)), rel);
          const __m256 hit = _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, tx));
          float last[8];
          _mm256_storeu_ps(last, _mm256_add_ps(_mm256_setzero_ps(), _mm256_and_ps(hit, d)));
          std::memcpy(out + e, last, sizeof(float) * (size_t)n);
        }
      e = covered;
      for (; e < dx_row; ++e) out[e] = 0.f;
    }
  });
}
#endif

}  // namespace

// Gather form, as the average-pool backward: each dx cell is written once, from the few dy
// and argmax entries of the windows covering it (still in cache from the neighbouring cells),
// so the pass moves dy + argmax + dx and never touches x.
void max_pool2d_backward_argmax(const PoolGeometry& g, const float* dy, const uint8_t* arg,
                                float* dx) {
  if (detail::pool_windows_tile(g)) return detail::max_backward_argmax_tiles(g, dy, arg, dx);
  const Window2d& w = g.win;
  const int64_t C = g.c;
  std::vector<AxisRange> cover_y(g.h), cover_x(g.w);
  for (int64_t i = 0; i < g.h; ++i) cover_y[i] = pool_outputs_covering(i, w.sh, w.pt, w.kh, g.oh);
  for (int64_t i = 0; i < g.w; ++i) cover_x[i] = pool_outputs_covering(i, w.sw, w.pl, w.kw, g.ow);
#if defined(__AVX2__) && !defined(__AVX512F__)
  // kw == 2 at C = 1, 2, 3, 4, 6: the patterns in registers (pool_rows8.cpp)
  if (detail::pool_rows8_backward_applies(g)) return detail::max_backward_rows8(g, dy, arg, dx);
#endif
#if defined(__AVX2__)
  if (TiledRows8::applies(g)) {
    const TiledRows8 tab(g);
    if (tab.vectors > 0) return max_backward_argmax_tiled8(g, tab, dy, arg, dx);
  }
#endif
#if defined(__AVX512F__)
  if (C < kLanes) {
    max_backward_argmax_packed(g, dy, arg, dx, cover_y, cover_x);
    return;
  }
#elif defined(__AVX2__)
  if (C < 8) {
    max_backward_argmax_packed8(g, dy, arg, dx, cover_y, cover_x);
    return;
  }
#endif
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    const float* dyi = dy + img * g.oh * g.ow * C;
    const uint8_t* argi = arg + img * g.oh * g.ow * C;
    for (int64_t iy = 0; iy < g.h; ++iy)
      for (int64_t ix = 0; ix < g.w; ++ix) {
        float* out = dx + ((img * g.h + iy) * g.w + ix) * C;
        int64_t c = c0;
        for (; c + 4 * kLanes <= c1; c += 4 * kLanes)
          max_gather16<4>(g, dyi + c, argi + c, iy, ix, cover_y[iy], cover_x[ix], out + c);
        for (; c + kLanes <= c1; c += kLanes)
          max_gather16<1>(g, dyi + c, argi + c, iy, ix, cover_y[iy], cover_x[ix], out + c);
        if (c < c1 && c1 - c0 >= kLanes) {  // overlapping last vector, as in the forward
          c = c1 - kLanes;
          max_gather16<1>(g, dyi + c, argi + c, iy, ix, cover_y[iy], cover_x[ix], out + c);
        } else if (c < c1)
          max_gather_tail(g, dyi + c, argi + c, iy, ix, cover_y[iy], cover_x[ix], c1 - c, out + c);
      }
  });
}

namespace {

// One (image, channel block) task of the max-pool backward. The winner of each window is
// kept as its offset from the window's first cell, (iy - lo)*W + (ix - lo), in an integer
// as wide as a float lane (Offset = int32_t whenever kh*W fits), so the compare-and-select
// loop vectorises; 64-bit offsets remain for absurdly wide images.
template <typename Offset>
void max_backward_task(const PoolGeometry& g, const float* dy, const float* x, float* dx,
                       int64_t img, int64_t c0, int64_t c1) {
  const Window2d& w = g.win;
  const int64_t C = g.c, nc = c1 - c0;
  std::vector<float> best(nc);
  std::vector<Offset> which(nc);
  float* __restrict b = best.data();
  Offset* __restrict wh = which.data();
  const float* xi = x + img * g.h * g.w * C + c0;
  float* dxi = dx + img * g.h * g.w * C + c0;
  // dx rows are zeroed just before the first window reaches them (window rows only move
  // down), so they are still in cache when the scatter adds to them.
  int64_t zeroed = 0;
  auto zero_rows_until = [&](int64_t end) {
    for (; zeroed < end; ++zeroed)
      for (int64_t ix = 0; ix < g.w; ++ix)
        std::memset(dxi + (zeroed * g.w + ix) * C, 0, sizeof(float) * nc);
  };
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    zero_rows_until(rows.hi);
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
      // Recompute the forward's argmax with the same rule (first maximum, last NaN).
      const int64_t base = rows.lo * g.w + cols.lo;
      for (int64_t c = 0; c < nc; ++c) {
        b[c] = xi[base * C + c];
        wh[c] = 0;
      }
      for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
        for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
          const Offset t = (Offset)((iy - rows.lo) * g.w + (ix - cols.lo));
          const float* cell = xi + (iy * g.w + ix) * C;
          for (int64_t c = 0; c < nc; ++c) {
            const bool win = pool_beats(cell[c], b[c]);
            b[c] = win ? cell[c] : b[c];
            wh[c] = win ? t : wh[c];
          }
        }
      const float* g_out = dy + ((img * g.oh + oy) * g.ow + ox) * C + c0;
      for (int64_t c = 0; c < nc; ++c) dxi[(base + (int64_t)wh[c]) * C + c] += g_out[c];
    }
  }
  zero_rows_until(g.h);  // rows below the last window (stride > pool)
}

}  // namespace

void max_pool2d_backward(const PoolGeometry& g, const float* dy, const float* x, float* dx) {
  const bool narrow = g.win.kh * g.w < (int64_t)INT32_MAX;
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    if (narrow) max_backward_task<int32_t>(g, dy, x, dx, img, c0, c1);
    else max_backward_task<int64_t>(g, dy, x, dx, img, c0, c1);
  });
}

}  // namespace fastconv::cpu
