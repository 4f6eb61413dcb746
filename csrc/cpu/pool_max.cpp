// 2-D max pooling forward on NHWC float32, with or without the argmax (uint8 window
// position per output) that max_pool2d_backward_argmax (pool_max_backward.cpp) reads.
// Windows that tile the input go to pool_tiling.cpp; this file has the general forward:
// per output pixel over the contiguous channel axis (pool_windows.h max_window16), and below
// 16 channels (8 at avx2) packed groups of neighbouring pixels per vector (pool_packed.h).
//
// Parallelism: one OpenMP loop over (image, channel block) tasks (pool_tasks.h).
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
using detail::max_window16;
#if defined(__AVX512F__)
using detail::PackedCells;
using detail::PackedLanes;
using detail::packed_group;
using detail::packed_lanes;
#elif defined(__AVX2__)
using detail::lanes_below;
using detail::load_cell8;
using detail::packed_group8;
using detail::packed_offsets8;
using detail::store_lanes8;
#endif

namespace {

// max_window16 (pool_windows.h) for n < kLanes channels, one at a time. kNan: the input may hold NaN, so the
// comparison is pool_beats. Without NaN, pool_beats is `v > best`, which the compiler turns
// into a branch-free max; pool_beats' second compare in that dependency chain made LeNet's
// 6-channel pooling 3x slower, so the caller picks kNan only for an image holding NaN or inf.
template <bool kArg, bool kNan>
inline void max_window_tail(const PoolGeometry& g, const float* xi, AxisRange rows,
                            AxisRange cols, int64_t row0, int64_t col0, int64_t n, float* out,
                            uint8_t* arg) {
  for (int64_t k = 0; k < n; ++k) {
    const float* xk = xi + k;
    float best = xk[(rows.lo * g.w + cols.lo) * g.c];
    int64_t which = (rows.lo - row0) * g.win.kw + (cols.lo - col0);
    for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
      for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
        const float v = xk[(iy * g.w + ix) * g.c];
        const bool win = kNan ? pool_beats(v, best) : v > best;
        if constexpr (kArg) which = win ? (iy - row0) * g.win.kw + (ix - col0) : which;
        best = win ? v : best;
      }
    out[k] = best;
    if constexpr (kArg) arg[k] = (uint8_t)which;
  }
}

// Forward of one output pixel (oy, ox) over channels [c0, c1) of image img.
template <bool kArg>
void max_forward_pixel(const PoolGeometry& g, const float* xi, float* y, uint8_t* arg,
                       int64_t img, int64_t oy, int64_t ox, AxisRange rows, int64_t c0,
                       int64_t c1, bool nan_possible) {
  const Window2d& w = g.win;
  const int64_t C = g.c;
  const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
  const int64_t o = ((img * g.oh + oy) * g.ow + ox) * C;
  const int64_t row0 = oy * w.sh - w.pt, col0 = ox * w.sw - w.pl;
  auto block = [&](auto vectors, int64_t c) {
    max_window16<decltype(vectors)::value, kArg>(g, xi + c, rows, cols, row0, col0, y + o + c,
                                                  kArg ? arg + o + c : nullptr);
  };
  int64_t c = c0;
  for (; c + 4 * kLanes <= c1; c += 4 * kLanes) block(std::integral_constant<int, 4>{}, c);
  for (; c + kLanes <= c1; c += kLanes) block(std::integral_constant<int, 1>{}, c);
  if (c < c1 && c1 - c0 >= kLanes) {
    // Channel tail of a block of 16 or more: one vector over the last 16 channels, which
    // overlaps channels already done and rewrites them with the same values (the scalar tail
    // ran C = 24 at 4x the time per byte of C = 32).
    block(std::integral_constant<int, 1>{}, c1 - kLanes);
  } else if (c < c1) {
    if (nan_possible)
      max_window_tail<kArg, true>(g, xi + c, rows, cols, row0, col0, c1 - c, y + o + c,
                                  kArg ? arg + o + c : nullptr);
    else
      max_window_tail<kArg, false>(g, xi + c, rows, cols, row0, col0, c1 - c, y + o + c,
                                   kArg ? arg + o + c : nullptr);
  }
}

#if defined(__AVX512F__)
template <bool kArg>
void max_forward_task_packed(const PoolGeometry& g, const float* x, float* y, uint8_t* arg,
                             int64_t img) {
  const Window2d& w = g.win;
  const int64_t C = g.c;
  const PackedLanes pl = packed_lanes(C);
  const float* xi = x + img * g.h * g.w * C;
  alignas(64) int32_t lane_off[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) lane_off[j] = (int32_t)((j / C) * w.sw * C + j % C);
  const __m512i off = _mm512_load_si512(lane_off);
  const PackedCells cells(g, pl, off);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    const int64_t row0 = oy * w.sh - w.pt;
    int64_t ox = 0;
    while (ox < g.ow) {
      const int64_t col0 = ox * w.sw - w.pl;
      const PackedLanes grp = packed_group(g, pl, ox);
      if (grp.pixels == 0) {
        max_forward_pixel<kArg>(g, xi, y, arg, img, oy, ox, rows, 0, C, true);
        ++ox;
        continue;
      }
      __m512 best = _mm512_setzero_ps();
      __m512i which = _mm512_setzero_si512();
      bool first = true;
      for (int64_t iy = rows.lo; iy < rows.hi; ++iy) {
        __m512 lo, hi;
        if (cells.permute) PackedCells::load_row(g, xi, iy, col0, lo, hi);
        for (int64_t kx = 0; kx < w.kw; ++kx) {
          const __m512 val =
              cells.permute ? _mm512_maskz_permutex2var_ps(grp.mask, lo, cells.cell[kx], hi)
                            : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), grp.mask, off,
                                                       xi + (iy * g.w + col0 + kx) * C, 4);
          const __m512i t = _mm512_set1_epi32((int32_t)((iy - row0) * w.kw + kx));
          if (first) {
            best = val;
            which = t;
            first = false;
            continue;
          }
          // pool_beats: val > best, or val is NaN
          const __mmask16 win = _mm512_cmp_ps_mask(val, best, _CMP_GT_OQ) |
                                _mm512_cmp_ps_mask(val, val, _CMP_UNORD_Q);
          best = _mm512_mask_mov_ps(best, win, val);
          if constexpr (kArg) which = _mm512_mask_mov_epi32(which, win, t);
        }
      }
      const int64_t o = ((img * g.oh + oy) * g.ow + ox) * C;
      _mm512_mask_storeu_ps(y + o, grp.mask, best);
      if constexpr (kArg) _mm512_mask_cvtepi32_storeu_epi8(arg + o, grp.mask, which);
      ox += grp.pixels;
    }
  }
}
#elif defined(__AVX2__)
// max_forward_task_packed at the avx2 level: the same groups, edge rule and comparisons.
template <bool kArg>
void max_forward_task_packed8(const PoolGeometry& g, const float* x, float* y, uint8_t* arg,
                              int64_t img) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = 8 / C;
  const float* xi = x + img * g.h * g.w * C;
  const float* x_end = xi + g.h * g.w * C;
  const int64_t image_end = (img + 1) * g.oh * g.ow * C;  // this image's argmax ends here
  const __m256i off = packed_offsets8(g);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    const int64_t row0 = oy * w.sh - w.pt;
    int64_t ox = 0;
    while (ox < g.ow) {
      const int64_t col0 = ox * w.sw - w.pl;
      const int64_t q = packed_group8(g, pixels, ox);
      if (q == 0) {
        max_forward_pixel<kArg>(g, xi, y, arg, img, oy, ox, rows, 0, C, true);
        ++ox;
        continue;
      }
      const int32_t lanes = (int32_t)(q * C);
      const __m256i mask = lanes_below(lanes);
      __m256 best = _mm256_setzero_ps();
      __m256i which = _mm256_setzero_si256();
      bool first = true;
      for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
        for (int64_t kx = 0; kx < w.kw; ++kx) {
          const float* cell = xi + (iy * g.w + col0 + kx) * C;
          const __m256 val = load_cell8(cell, off, mask, pixels == 1, x_end);
          const __m256i t = _mm256_set1_epi32((int32_t)((iy - row0) * w.kw + kx));
          if (first) {
            best = val;
            which = t;
            first = false;
            continue;
          }
          // pool_beats: val > best, or val is NaN
          const __m256 win = _mm256_or_ps(_mm256_cmp_ps(val, best, _CMP_GT_OQ),
                                          _mm256_cmp_ps(val, val, _CMP_UNORD_Q));
          best = _mm256_blendv_ps(best, val, win);
          if constexpr (kArg) which = _mm256_blendv_epi8(which, t, _mm256_castps_si256(win));
        }
      const int64_t o = ((img * g.oh + oy) * g.ow + ox) * C;
      store_lanes8(y + o, best, lanes, o + 8 <= image_end);
      if constexpr (kArg) {
        // window positions < 256: the saturating packs keep them. 8 bytes where the image's
        // argmax has room (the bytes past `lanes` belong to later pixels of this image, which
        // write theirs afterwards); a scalar store per lane was a third of this pass (LeNet's
        // (256, 28, 28, 6): 0.63 ms with the argmax, 0.44 without).
        const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(which), _mm256_extracti128_si256(which, 1));
        const __m128i w8 = _mm_packus_epi16(w16, w16);
        if (o + 8 <= image_end) {
          _mm_storel_epi64((__m128i*)(arg + o), w8);
        } else {
          uint8_t bytes[16];
          _mm_storeu_si128((__m128i*)bytes, w8);
          std::memcpy(arg + o, bytes, (size_t)lanes);
        }
      }
      ox += q;
    }
  }
}
#endif

// Forward over one (image, channel block) task; arg may be null when !kArg.
template <bool kArg>
void max_forward_task(const PoolGeometry& g, const float* x, float* y, uint8_t* arg,
                      int64_t img, int64_t c0, int64_t c1) {
#if defined(__AVX512F__)
  if (g.c < kLanes && c0 == 0 && c1 == g.c) {
    max_forward_task_packed<kArg>(g, x, y, arg, img);
    return;
  }
#elif defined(__AVX2__)
  if (g.c < 8 && c0 == 0 && c1 == g.c) {
    max_forward_task_packed8<kArg>(g, x, y, arg, img);
    return;
  }
#endif
  const Window2d& w = g.win;
  const int64_t C = g.c;
  const float* xi = x + img * g.h * g.w * C;
  // One vectorised pass over the image (cheap next to the scalar windows) decides whether
  // the channel tail needs the NaN-aware comparison.
  const bool nan_possible = (c1 - c0) < kLanes && !all_finite(xi, g.h * g.w * C);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    for (int64_t ox = 0; ox < g.ow; ++ox)
      max_forward_pixel<kArg>(g, xi, y, arg, img, oy, ox, rows, c0, c1, nan_possible);
  }
}

}  // namespace

void max_pool2d_forward(const PoolGeometry& g, const float* x, float* y) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  // tiling windows at C = 8..64 in ymm registers (pool_c24_pieces.cpp)
  if (detail::pool_c24_applies(g)) return detail::max_forward_c24(g, x, y, nullptr);
#endif
  if (detail::pool_forward_tiles(g)) return detail::max_forward_tiles(g, x, y, nullptr);
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    max_forward_task<false>(g, x, y, nullptr, img, c0, c1);
  });
}

void max_pool2d_forward_argmax(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  // tiling windows at C = 8..64 in ymm registers (pool_c24_pieces.cpp)
  if (detail::pool_c24_applies(g)) return detail::max_forward_c24(g, x, y, arg);
#endif
  if (detail::pool_forward_tiles(g)) return detail::max_forward_tiles(g, x, y, arg);
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    max_forward_task<true>(g, x, y, arg, img, c0, c1);
  });
}

}  // namespace fastconv::cpu
