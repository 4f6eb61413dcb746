// 2-D pooling on NHWC float32.
//
// Parallelism: one OpenMP loop over (image, channel block) tasks. Different tasks never touch
// the same dx cell, so the backward passes need no atomics and are deterministic; splitting
// channels as well as images keeps all threads busy for small batches. Inner loops run over
// the contiguous channel axis so they vectorise.
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
#include "cpu/pool_tasks.h"
#include "cpu/pool_tiling.h"
#include "cpu/pool_windows.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

using detail::avg_window16;
using detail::for_each_task;
using detail::i32xR;
using detail::kPieces;
using detail::load_piece;
using detail::max_window16;

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

#if defined(__AVX2__)  // both x86-64 vector levels (avx512 implies it)
// Lanes [0, n) set: the mask of AVX2's masked loads, stores and gathers.
inline __m256i lanes_below(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

#if defined(__AVX512F__)
// Few channels (C < 16): one vector holds P = 16 / C neighbouring output pixels, lane
// p*C + k being channel k of pixel ox + p, instead of C scalar chains per pixel (LeNet's
// 6- and 16-channel pools were 3x slower per byte than 64 channels). Each window cell is a
// gather with the fixed lane offsets p*sw*C + k. Used for a group only when every pixel's
// window is unclipped along x, so all lanes share the window position t; edge pixels take
// max_forward_pixel. Same rule as max_window16: first maximum, last NaN.
struct PackedLanes {
  int64_t pixels;   // P
  __mmask16 mask;   // the P*C used lanes
};

inline PackedLanes packed_lanes(int64_t c) {
  const int64_t p = kLanes / c;
  return {p, (__mmask16)((1u << (p * c)) - 1u)};
}

// The group starting at output column ox: up to P pixels, fewer at the row's end (a partial
// group, masked) or before the first window clipped on the right; 0 when ox's own window is
// clipped (left padding or the right edge): that pixel goes alone through the scalar path.
// (Whole groups only left a row narrower than P, e.g. C = 1 at 14 outputs, entirely to the
// scalar path: 9 ns per element, 40x the packed path.)
inline PackedLanes packed_group(const PoolGeometry& g, const PackedLanes& full, int64_t ox) {
  const Window2d& w = g.win;
  if (ox * w.sw - w.pl < 0 || g.w + w.pl - w.kw < 0) return {0, 0};
  const int64_t last_unclipped = (g.w + w.pl - w.kw) / w.sw;  // largest ox fully inside
  const int64_t q = std::min({full.pixels, g.ow - ox, last_unclipped - ox + 1});
  if (q <= 0) return {0, 0};
  return {q, (__mmask16)((1u << (q * g.c)) - 1u)};
}

// Gather-free cells for the packed forward pools: where a group's input row fits two
// registers (the 32 floats from its first column hold every cell: (P-1)*sw*C + kw*C <= 32;
// LeNet's C = 6 under a 2x2 pool: 24), two masked loads per row and a two-source permute per
// cell give what the 12-lane gather gave (the same lanes, zero where masked), so the same
// floats. (The gathers made LeNet's (256, 28, 28, 6) average pool forward cost as much as the
// conv before it: 1.8 ms, 0.42 with the permutes.)
struct PackedCells {
  bool permute;
  __m512i cell[2 * kLanes];  // cell kx's lane sources in (lo, hi) (kw <= 17 when permute: C = 1, sw = 1)

  PackedCells(const PoolGeometry& g, const PackedLanes& pl, __m512i off)
      : permute((pl.pixels - 1) * g.win.sw * g.c + g.win.kw * g.c <= 2 * kLanes) {
    if (permute)
      for (int64_t kx = 0; kx < g.win.kw; ++kx)
        cell[kx] = _mm512_add_epi32(off, _mm512_set1_epi32((int32_t)(kx * g.c)));
  }

  // Row iy's 32 floats from column col0 (masked at the row's end: the group's windows end
  // inside the row, so every lane a cell takes is a real one).
  static void load_row(const PoolGeometry& g, const float* xi, int64_t iy, int64_t col0, __m512& lo, __m512& hi) {
    const int64_t avail = (g.w - col0) * g.c;
    const __mmask16 m0 = avail >= kLanes ? (__mmask16)0xFFFF : (__mmask16)((1u << avail) - 1u);
    const __mmask16 m1 = avail >= 2 * kLanes ? (__mmask16)0xFFFF
                         : avail <= kLanes   ? (__mmask16)0
                                             : (__mmask16)((1u << (avail - kLanes)) - 1u);
    const float* src = xi + (iy * g.w + col0) * g.c;
    lo = _mm512_maskz_loadu_ps(m0, src);
    hi = _mm512_maskz_loadu_ps(m1, src + kLanes);
  }
};

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
// Few channels at the avx2 level (C < 8): 8-lane vectors holding P = 8 / C neighbouring
// pixels, lane p*C + k being channel k of pixel ox + p (the avx512 level's packed paths with
// half the lanes). The helpers below are shared by the max and average pools.


// The first n lanes of v to p. AVX2's masked store (vmaskmovps to memory) is microcoded on
// AMD Zen: LeNet's (256, 28, 28, 6) average pool forward spent 84% of its time on it at the
// avx2 level (2.0-3.0 ms, 0.24 at avx512; 2-vCPU Zen 4). Where all 8 lanes fit the caller's
// own output (`room`: p + 8 <= the end of what this task writes) a plain store writes them,
// the lanes past n landing on outputs this task writes afterwards; else n floats are copied.
inline void store_lanes8(float* p, __m256 v, int64_t n, bool room) {
  if (room) {
    _mm256_storeu_ps(p, v);
    return;
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  std::memcpy(p, lanes, sizeof(float) * (size_t)n);
}

// Gather offsets of one window cell's lanes: p*sw*C + k.
inline __m256i packed_offsets8(const PoolGeometry& g) {
  int32_t off[8];
  for (int64_t j = 0; j < 8; ++j) off[j] = (int32_t)((j / g.c) * g.win.sw * g.c + j % g.c);
  return _mm256_loadu_si256((const __m256i*)off);
}

// Pixels in the group starting at output column ox, as packed_group: up to `pixels`, fewer at
// the row's end or before the first window clipped on the right; 0 when ox's own window is
// clipped along x (that pixel goes alone through the scalar path).
inline int64_t packed_group8(const PoolGeometry& g, int64_t pixels, int64_t ox) {
  const Window2d& w = g.win;
  if (ox * w.sw - w.pl < 0 || g.w + w.pl - w.kw < 0) return 0;
  const int64_t last_unclipped = (g.w + w.pl - w.kw) / w.sw;  // largest ox fully inside
  return std::max<int64_t>(0, std::min({pixels, g.ow - ox, last_unclipped - ox + 1}));
}

// One window cell's lanes. At P = 1 (C = 5..7, LeNet's 6) they are the pixel's C contiguous
// channels: one load instead of a gather (LeNet's average pool forward 1.4x faster), a plain
// one where 8 floats stay inside the image (`end`; the lanes past C are never kept): a masked
// load, like store_lanes8's masked store, ran slowly inside a LeNet step (avx2, Zen 4: the
// (256, 28, 28, 6) max pool 1.24 ms there against 0.36 at avx512).
inline __m256 load_cell8(const float* cell, __m256i off, __m256i mask, bool contiguous,
                         const float* end) {
  if (contiguous) return cell + 8 <= end ? _mm256_loadu_ps(cell) : _mm256_maskload_ps(cell, mask);
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), cell, off, _mm256_castsi256_ps(mask), 4);
}

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
  if (detail::pool_forward_tiles(g)) return detail::max_forward_tiles(g, x, y, nullptr);
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    max_forward_task<false>(g, x, y, nullptr, img, c0, c1);
  });
}

void max_pool2d_forward_argmax(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  if (detail::pool_forward_tiles(g)) return detail::max_forward_tiles(g, x, y, arg);
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    max_forward_task<true>(g, x, y, arg, img, c0, c1);
  });
}

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
// Few channels (C < 16): the gather above for P = 16 / C neighbouring dx pixels in one vector
// (lanes as in max_forward_task_packed). Along x a lane's pixel ix + p is covered by up to
// S = ceil(kw / sw) outputs; slot s of the table holds, per lane, that output's dy offset in
// the row, its position along the window (tx), and whether it exists. The same additions in
// the same order (oy, then ox ascending) as max_gather_tail, so results are bit-identical.
// When a slot's lanes read at most 16 consecutive dy (and argmax) entries, [base, base +
// span), they come from one masked load and a lane permute (rel = dy_off - base) instead of
// two gathers: the case of windows that do not overlap, as LeNet's 2x2 stride 2 (1.6x faster
// at C = 6).
// ox_rel / ox_base / ox_span: the same for the lanes' output column ox, which indexes the
// average pool's per-output 1/count.
struct PackedSlot {
  __m512i dy_off, tx, rel, ox_rel;
  __mmask16 valid;
  int32_t base, span, ox_base, ox_span;
};

std::vector<PackedSlot> packed_cover_table(const PoolGeometry& g, const std::vector<AxisRange>& cover_x,
                                           int64_t pixels, int64_t slots) {
  const Window2d& w = g.win;
  const int64_t C = g.c, groups = (g.w + pixels - 1) / pixels;
  std::vector<PackedSlot> table(groups * slots);
  for (int64_t gi = 0; gi < groups; ++gi)
    for (int64_t s = 0; s < slots; ++s) {
      alignas(64) int32_t off[kLanes] = {}, tx[kLanes] = {};
      __mmask16 valid = 0;
      for (int64_t j = 0; j < pixels * C; ++j) {
        const int64_t ix = gi * pixels + j / C;
        if (ix >= g.w) continue;
        const int64_t ox = cover_x[ix].lo + s;
        if (ox >= cover_x[ix].hi) continue;
        off[j] = (int32_t)(ox * C + j % C);
        tx[j] = (int32_t)(ix - (ox * w.sw - w.pl));
        valid |= (__mmask16)(1u << j);
      }
      int32_t lo = INT32_MAX, hi = -1;
      for (int64_t j = 0; j < kLanes; ++j)
        if (valid & (1u << j)) lo = std::min(lo, off[j]), hi = std::max(hi, off[j]);
      if (hi < 0) lo = 0;
      alignas(64) int32_t rel[kLanes] = {}, ox_rel[kLanes] = {};
      const int32_t ox_lo = lo / (int32_t)C;
      for (int64_t j = 0; j < kLanes; ++j)
        if (valid & (1u << j)) rel[j] = off[j] - lo, ox_rel[j] = off[j] / (int32_t)C - ox_lo;
      table[gi * slots + s] = {_mm512_load_si512(off), _mm512_load_si512(tx), _mm512_load_si512(rel),
                               _mm512_load_si512(ox_rel), valid, lo, hi - lo + 1, ox_lo,
                               hi < 0 ? 0 : hi / (int32_t)C - ox_lo + 1};
    }
  return table;
}

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
// The avx2 level's cover table (C < 8), as packed_cover_table with 8 lanes and P = 8 / C
// pixels per vector. ox: each lane's output column (the average pool's 1/count index);
// first_ox: the first valid lane's, which at P = 1 is every valid lane's (one pixel: its C
// lanes are contiguous in dy, read by one masked load at first_ox * C instead of a gather).
struct PackedSlot8 {
  __m256i dy_off, tx, valid, ox;  // valid: all-ones lanes where the slot's output exists
  int32_t first_ox;
};

std::vector<PackedSlot8> packed_cover_table8(const PoolGeometry& g, const std::vector<AxisRange>& cover_x,
                                             int64_t pixels, int64_t slots) {
  const Window2d& w = g.win;
  const int64_t C = g.c, groups = (g.w + pixels - 1) / pixels;
  std::vector<PackedSlot8> table(groups * slots);
  for (int64_t gi = 0; gi < groups; ++gi)
    for (int64_t s = 0; s < slots; ++s) {
      int32_t off[8] = {}, tx[8] = {}, valid[8] = {}, oxs[8] = {}, first_ox = -1;
      for (int64_t j = 0; j < pixels * C; ++j) {
        const int64_t ix = gi * pixels + j / C;
        if (ix >= g.w) continue;
        const int64_t ox = cover_x[ix].lo + s;
        if (ox >= cover_x[ix].hi) continue;
        off[j] = (int32_t)(ox * C + j % C);
        tx[j] = (int32_t)(ix - (ox * w.sw - w.pl));
        valid[j] = -1;
        oxs[j] = (int32_t)ox;
        if (first_ox < 0) first_ox = (int32_t)ox;
      }
      table[gi * slots + s] = {_mm256_loadu_si256((const __m256i*)off),
                               _mm256_loadu_si256((const __m256i*)tx),
                               _mm256_loadu_si256((const __m256i*)valid),
                               _mm256_loadu_si256((const __m256i*)oxs), first_ox};
    }
  return table;
}

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
// Windows that tile the input without overlap or padding (kw == sw, kh == sh; LeNet's 2x2
// stride 2) at C < 8: every dx cell has at most one window, so dx row iy is dy row iy / sh
// with each pixel repeated sw times, kept in the lanes whose saved argmax is this cell. Run
// along the contiguous dx row instead of one pixel (C of 8 lanes) per vector: the dy (and
// argmax) entries of 8 consecutive dx floats lie within 8 consecutive entries, so each is one
// load and one lane permute, by a per-lane table periodic in lcm(8, sw*C) dx floats. The
// pixel path above also widened every argmax row to int32 first (LeNet's (256, 28, 28, 6):
// 1.11 -> 0.88 ms with a scalar row tail, see benchmarks/RESULTS.md for the final figure).
// Each dx is +0 + (its dy or +0), as the pixel path's sum, so the bytes are the same.
struct TiledRows8 {
  int64_t vectors;                 // per period: lcm(8, sw*C) / 8
  std::vector<int32_t> base;       // per vector: first dy entry (from the period's)
  std::vector<std::array<int32_t, 8>> rel, tx;  // per vector and lane: dy entry - base, window column

  explicit TiledRows8(const PoolGeometry& g) {
    const int64_t run = g.win.sw * g.c;
    int64_t period = 8;
    while (period % run != 0) period += 8;
    vectors = period / 8;
    for (int64_t j = 0; j < vectors; ++j) {
      int32_t src[8], col[8], lo = INT32_MAX, hi = 0;
      for (int64_t l = 0; l < 8; ++l) {
        const int64_t e = 8 * j + l, ix = e / g.c;
        src[l] = (int32_t)((ix / g.win.sw) * g.c + e % g.c);
        col[l] = (int32_t)(ix % g.win.sw);
        lo = std::min(lo, src[l]), hi = std::max(hi, src[l]);
      }
      if (hi - lo > 7) {  // not expected (8 dx floats reach 8 dy entries at most): not used
        vectors = 0;
        return;
      }
      base.push_back(lo);
      rel.emplace_back();
      tx.emplace_back();
      for (int64_t l = 0; l < 8; ++l) rel.back()[l] = src[l] - lo, tx.back()[l] = col[l];
    }
  }
  static bool applies(const PoolGeometry& g) {
    const Window2d& w = g.win;
    // every window inside the input: no padding on any side, so also no clipped last window
    // (its cells would lie past the row: covered = ow*sw*C must stay <= W*C)
    return g.c < 8 && w.kw == w.sw && w.kh == w.sh && w.pt == 0 && w.pl == 0 && w.pb == 0 &&
           w.pr == 0 && g.ow * w.sw <= g.w && g.oh * w.sh <= g.h && w.kh * w.kw <= 255;
  }
};

// tab.vectors > 0
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

namespace {

inline void avg_window_tail(const PoolGeometry& g, const float* xi, AxisRange rows,
                            AxisRange cols, float scale, int64_t n, float* out) {
  for (int64_t k = 0; k < n; ++k) {
    float acc = 0.f;
    for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
      for (int64_t ix = cols.lo; ix < cols.hi; ++ix) acc += xi[(iy * g.w + ix) * g.c + k];
    out[k] = acc * scale;
  }
}

}  // namespace

#if defined(__AVX512F__)
namespace {

// Average pool at few channels, packed as max_forward_task_packed: 16 / C output pixels per
// vector, cells gathered, summed in the same row-major order as avg_window_tail (so the same
// float result); groups whose windows are clipped along x go pixel by pixel.
void avg_forward_task_packed(const PoolGeometry& g, const float* x, float* y, int64_t img) {
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
    int64_t ox = 0;
    while (ox < g.ow) {
      const int64_t col0 = ox * w.sw - w.pl;
      float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
      const PackedLanes grp = packed_group(g, pl, ox);
      if (grp.pixels == 0) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        avg_window_tail(g, xi, rows, cols, pool_inv_count(rows, cols), C, out);
        ++ox;
        continue;
      }
      __m512 acc = _mm512_setzero_ps();
      if (cells.permute) {
        for (int64_t iy = rows.lo; iy < rows.hi; ++iy) {
          __m512 lo, hi;
          PackedCells::load_row(g, xi, iy, col0, lo, hi);
          for (int64_t kx = 0; kx < w.kw; ++kx)
            acc = _mm512_add_ps(acc, _mm512_maskz_permutex2var_ps(grp.mask, lo, cells.cell[kx], hi));
        }
      } else {
        for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
          for (int64_t kx = 0; kx < w.kw; ++kx)
            acc = _mm512_add_ps(acc, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), grp.mask, off,
                                                              xi + (iy * g.w + col0 + kx) * C, 4));
      }
      const float scale = pool_inv_count(rows, AxisRange{col0, col0 + w.kw});
      _mm512_mask_storeu_ps(out, grp.mask, _mm512_mul_ps(acc, _mm512_set1_ps(scale)));
      ox += grp.pixels;
    }
  }
}

// Average pool backward at few channels: max_backward_argmax_packed's walk, each covering
// output adding dy * 1/count (its 1/count fetched per lane like dy), in avg_pool2d_backward's
// (oy, ox) order.
void avg_backward_packed(const PoolGeometry& g, const float* dy, float* dx, const float* inv_count,
                         const std::vector<AxisRange>& cover_y, const std::vector<AxisRange>& cover_x,
                         const float* y, Activation act) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = kLanes / C, groups = (g.w + pixels - 1) / pixels;
  const int64_t slots = (w.kw + w.sw - 1) / w.sw, row_len = g.ow * C;
  const std::vector<PackedSlot> table = packed_cover_table(g, cover_x, pixels, slots);
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    const float* dyi = dy + img * g.oh * row_len;
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      float* dx_row = dx + (img * g.h + iy) * g.w * C;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int64_t lanes = std::min(pixels, g.w - gi * pixels) * C;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
          const float* dy_row = dyi + oy * row_len;
          const float* scale_row = inv_count + oy * g.ow;
          for (int64_t s = 0; s < slots; ++s) {
            const PackedSlot& sl = table[gi * slots + s];
            if (sl.valid == 0) continue;
            __m512 d, scale;
            if (sl.span <= kLanes) {
              d = _mm512_permutexvar_ps(sl.rel, _mm512_maskz_loadu_ps((__mmask16)((1u << sl.span) - 1u), dy_row + sl.base));
              scale = _mm512_permutexvar_ps(
                  sl.ox_rel, _mm512_maskz_loadu_ps((__mmask16)((1u << sl.ox_span) - 1u), scale_row + sl.ox_base));
            } else {
              d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), sl.valid, sl.dy_off, dy_row, 4);
              scale = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), sl.valid,
                                               _mm512_add_epi32(sl.ox_rel, _mm512_set1_epi32(sl.ox_base)),
                                               scale_row, 4);
            }
            acc = _mm512_mask_add_ps(acc, sl.valid, acc, _mm512_mul_ps(d, scale));
          }
        }
        _mm512_mask_storeu_ps(dx_row + gi * pixels * C, (__mmask16)((1u << lanes) - 1u), acc);
      }
      if (y) activation_backward_inplace(g.w * C, y + (dx_row - dx), dx_row, act);
    }
  });
}

}  // namespace
#elif defined(__AVX2__)
namespace {

// Average pool at few channels (C < 8) at the avx2 level: avg_forward_task_packed with 8
// lanes, P = 8 / C pixels per vector (masked loads at P = 1), the same groups and the same
// additions in the same order, so the avx2 and avx512 levels give the same floats. Before it,
// C < 16 took avg_window_tail, one scalar chain per channel: LeNet's (256, 28, 28, 6) pool
// 0.99 ms forward at avx2 against 0.45 at avx512.
void avg_forward_task_packed8(const PoolGeometry& g, const float* x, float* y, int64_t img) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = 8 / C;
  const float* xi = x + img * g.h * g.w * C;
  const float* x_end = xi + g.h * g.w * C;
  const float* image_end = y + (img + 1) * g.oh * g.ow * C;  // this image's output ends here
  const __m256i off = packed_offsets8(g);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    int64_t ox = 0;
    while (ox < g.ow) {
      const int64_t col0 = ox * w.sw - w.pl;
      float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
      const int64_t q = packed_group8(g, pixels, ox);
      if (q == 0) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        avg_window_tail(g, xi, rows, cols, pool_inv_count(rows, cols), C, out);
        ++ox;
        continue;
      }
      const __m256i mask = lanes_below(q * C);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
        for (int64_t kx = 0; kx < w.kw; ++kx)
          acc = _mm256_add_ps(acc, load_cell8(xi + (iy * g.w + col0 + kx) * C, off, mask, pixels == 1, x_end));
      const float scale = pool_inv_count(rows, AxisRange{col0, col0 + w.kw});
      store_lanes8(out, _mm256_mul_ps(acc, _mm256_set1_ps(scale)), q * C, out + 8 <= image_end);
      ox += q;
    }
  }
}

// Average pool backward at few channels (C < 8) at the avx2 level: avg_backward_packed with
// 8 lanes over packed_cover_table8 (dy and 1/count gathered per lane, or at P = 1 one masked
// load of dy and one 1/count for the pixel), the same products and additions in the same
// order. Before it: 3.04 ms at avx2 against 0.65 at avx512 on LeNet's (256, 28, 28, 6).
void avg_backward_packed8(const PoolGeometry& g, const float* dy, float* dx, const float* inv_count,
                          const std::vector<AxisRange>& cover_y, const std::vector<AxisRange>& cover_x,
                          const float* y, Activation act) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = 8 / C, groups = (g.w + pixels - 1) / pixels;
  const int64_t slots = (w.kw + w.sw - 1) / w.sw, row_len = g.ow * C;
  const std::vector<PackedSlot8> table = packed_cover_table8(g, cover_x, pixels, slots);
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    const float* dx_end = dx + (img + 1) * g.h * g.w * C;  // this image's dx ends here
    const float* dyi = dy + img * g.oh * row_len;
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      float* dx_row = dx + (img * g.h + iy) * g.w * C;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int64_t lanes = std::min(pixels, g.w - gi * pixels) * C;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
          const float* dy_row = dyi + oy * row_len;
          const float* scale_row = inv_count + oy * g.ow;
          for (int64_t s = 0; s < slots; ++s) {
            const PackedSlot8& sl = table[gi * slots + s];
            if (sl.first_ox < 0) continue;  // no lane has this slot's output
            __m256 d, scale;
            if (pixels == 1) {
              d = _mm256_maskload_ps(dy_row + sl.first_ox * C, sl.valid);
              scale = _mm256_set1_ps(scale_row[sl.first_ox]);
            } else {
              const __m256 valid = _mm256_castsi256_ps(sl.valid);
              d = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), dy_row, sl.dy_off, valid, 4);
              scale = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), scale_row, sl.ox, valid, 4);
            }
            // invalid lanes: d is +0 (masked load), so they add +0 (* 1/count) to a sum that
            // is never -0: the avx512 path's masked add, to the bit. The product is rounded
            // before the add (the empty asm hides it: GCC would fuse the two into an FMA, as the avx512
            // level's masked add is not, and the levels' results would differ in the last bit)
            __m256 term = _mm256_mul_ps(d, scale);
            asm("" : "+x"(term));
            acc = _mm256_add_ps(acc, term);
          }
        }
        float* at = dx_row + gi * pixels * C;
        store_lanes8(at, acc, lanes, at + 8 <= dx_end);
      }
      if (y) activation_backward_inplace(g.w * C, y + (dx_row - dx), dx_row, act);
    }
  });
}

}  // namespace
#endif

#if defined(__AVX2__)  // both levels: at avx512 too (see the dispatch)
namespace {

// Average pool backward over windows that tile the input (TiledRows8): every window is whole
// (no padding), so dx = +0 + dy * (1/count) of the one window covering the cell, or +0 outside
// all windows; along the contiguous dx row, one load and one permute per 8 floats. The same
// product (rounded, then added to +0) as avg_backward_packed8: the same floats.
void avg_backward_tiled8(const PoolGeometry& g, const TiledRows8& tab, const float* dy, float* dx,
                         const float* y, Activation act) {
  const Window2d& w = g.win;
  const int64_t C = g.c, row_len = g.ow * C, dx_row = g.w * C, covered = g.ow * w.sw * C;
  const int64_t per_period = tab.vectors * 8 / w.sw;
  const float inv = 1.0f / (float)(w.kh * w.kw);
  const __m256 scale = _mm256_set1_ps(inv);
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* out = dx + (img * g.h + iy) * dx_row;
      const int64_t oy = iy / w.sh;
      int64_t e = 0;
      if (oy < g.oh) {
        const float* dy_row = dy + (img * g.oh + oy) * row_len;
        for (int64_t period = 0; e < covered; ++period)
          for (int64_t j = 0; j < tab.vectors && e < covered; ++j, e += 8) {
            const int64_t q = period * per_period + tab.base[j];
            const __m256i rel = _mm256_loadu_si256((const __m256i*)tab.rel[j].data());
            const int64_t avail = std::min<int64_t>(8, row_len - q);  // >= 1: lane 0's entry
            const __m256 d = _mm256_permutevar8x32_ps(
                avail == 8 ? _mm256_loadu_ps(dy_row + q) : _mm256_maskload_ps(dy_row + q, lanes_below(avail)), rel);
            __m256 term = _mm256_mul_ps(d, scale);
            asm("" : "+x"(term));  // rounded before the add, as avg_backward_packed8
            const __m256 v = _mm256_add_ps(_mm256_setzero_ps(), term);
            if (e + 8 <= covered) {
              _mm256_storeu_ps(out + e, v);
            } else {  // lanes past the covered floats are not stored
              float last[8];
              _mm256_storeu_ps(last, v);
              std::memcpy(out + e, last, sizeof(float) * (size_t)(covered - e));
            }
          }
        e = covered;
      }
      for (; e < dx_row; ++e) out[e] = 0.f;
      if (y) activation_backward_inplace(dx_row, y + (out - dx), out, act);
    }
  });
}

}  // namespace
#endif

void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* y) {
  if (detail::pool_forward_tiles(g)) return detail::avg_forward_tiles(g, x, y);
  const Window2d& w = g.win;
  const int64_t C = g.c;
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
#if defined(__AVX512F__)
    if (C < kLanes) {
      avg_forward_task_packed(g, x, y, img);
      return;
    }
#elif defined(__AVX2__)
    if (C < 8) {
      avg_forward_task_packed8(g, x, y, img);
      return;
    }
#endif
    const float* xi = x + img * g.h * g.w * C;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        const float scale = pool_inv_count(rows, cols);
        float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
        int64_t c = c0;
        for (; c + 4 * kLanes <= c1; c += 4 * kLanes)
          avg_window16<4>(g, xi + c, rows, cols, scale, out + c);
        for (; c + kLanes <= c1; c += kLanes) avg_window16<1>(g, xi + c, rows, cols, scale, out + c);
        if (c < c1 && c1 - c0 >= kLanes)  // overlapping last vector, as in the max pool
          avg_window16<1>(g, xi + c1 - kLanes, rows, cols, scale, out + c1 - kLanes);
        else if (c < c1) avg_window_tail(g, xi + c, rows, cols, scale, c1 - c, out + c);
      }
    }
  });
}

namespace {

// dx of one cell for V * kLanes channels: sum of dy/count over the covering outputs, in
// (oy, ox) order (dyi: the image's dy at the block's first channel).
template <int V>
inline void avg_gather16(const PoolGeometry& g, const float* dyi, const float* inv_count,
                         AxisRange oys, AxisRange oxs, float* out) {
  constexpr int N = V * kPieces;  // register-wide pieces, as avg_window16
  f32xR acc[N];
  for (int v = 0; v < N; ++v) acc[v] = f32xR{};
  for (int64_t oy = oys.lo; oy < oys.hi; ++oy)
    for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
      const float scale = inv_count[oy * g.ow + ox];
      const float* src = dyi + (oy * g.ow + ox) * g.c;
      for (int v = 0; v < N; ++v) {
        f32xR piece;
        std::memcpy(&piece, src + v * kRegLanes, sizeof piece);
        acc[v] += piece * scale;
      }
    }
  for (int v = 0; v < N; ++v) std::memcpy(out + v * kRegLanes, &acc[v], sizeof acc[v]);
}

}  // namespace

// Gather form: each input cell sums dy/count over the outputs whose window covers it, so dx
// is written once, with no zeroing pass and the same order of additions as the CUDA twin.
// The per-axis ranges and the 1/count table are computed once per call, not per cell.
void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx, const float* y, Activation act) {
  if (act == Activation::Linear) y = nullptr;  // nothing to apply
  if (!y && detail::pool_windows_tile(g)) return detail::avg_backward_tiles(g, dy, dx);
  const Window2d& w = g.win;
  const int64_t C = g.c;
  std::vector<AxisRange> cover_y(g.h), cover_x(g.w);
  for (int64_t i = 0; i < g.h; ++i) cover_y[i] = pool_outputs_covering(i, w.sh, w.pt, w.kh, g.oh);
  for (int64_t i = 0; i < g.w; ++i) cover_x[i] = pool_outputs_covering(i, w.sw, w.pl, w.kw, g.ow);
  std::vector<float> inv_count(g.oh * g.ow);
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox)
      inv_count[oy * g.ow + ox] = pool_inv_count(pool_window(oy, w.sh, w.pt, w.kh, g.h),
                                                 pool_window(ox, w.sw, w.pl, w.kw, g.w));
#if defined(__AVX2__)
  // Tiling windows at C < 8 (LeNet's 2x2 stride 2) along the dx rows, at the avx512 level
  // too: its packed path took 0.91 ms on LeNet's (256, 28, 28, 6) with sigmoid, this one 0.54.
  if (TiledRows8::applies(g)) {
    const TiledRows8 tab(g);
    if (tab.vectors > 0) return avg_backward_tiled8(g, tab, dy, dx, y, act);
  }
#endif
#if defined(__AVX512F__)
  if (C < kLanes) {
    avg_backward_packed(g, dy, dx, inv_count.data(), cover_y, cover_x, y, act);
    return;
  }
#elif defined(__AVX2__)
  if (C < 8) {
    avg_backward_packed8(g, dy, dx, inv_count.data(), cover_y, cover_x, y, act);
    return;
  }
#endif
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      for (int64_t ix = 0; ix < g.w; ++ix) {
        const AxisRange oxs = cover_x[ix];
        float* out = dx + ((img * g.h + iy) * g.w + ix) * C;
        const float* dyi = dy + img * g.oh * g.ow * C;
        int64_t c = c0;
        for (; c + 4 * kLanes <= c1; c += 4 * kLanes)
          avg_gather16<4>(g, dyi + c, inv_count.data(), oys, oxs, out + c);
        for (; c + kLanes <= c1; c += kLanes)
          avg_gather16<1>(g, dyi + c, inv_count.data(), oys, oxs, out + c);
        if (c < c1 && c1 - c0 >= kLanes) {  // overlapping last vector, as in the forward
          avg_gather16<1>(g, dyi + c1 - kLanes, inv_count.data(), oys, oxs, out + c1 - kLanes);
          c = c1;
        }
        for (; c < c1; ++c) {
          float acc = 0.f;
          for (int64_t oy = oys.lo; oy < oys.hi; ++oy)
            for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox)
              acc += dyi[(oy * g.ow + ox) * C + c] * inv_count[oy * g.ow + ox];
          out[c] = acc;
        }
        // a task with part of the channels: its own cells only, pixel by pixel
        if (y && c1 - c0 < C) activation_backward_inplace(c1 - c0, y + (out - dx) + c0, out + c0, act);
      }
      if (y && c1 - c0 == C) {  // the whole row, still in cache
        const int64_t row = (img * g.h + iy) * g.w * C;
        activation_backward_inplace(g.w * C, y + row, dx + row, act);
      }
    }
  });
}

namespace {

// Sum over hw pixels of V * kLanes channels at x (pixel stride c), into total[0 .. V*kLanes):
// float vectors in registers over kReduceRows pixels, folded into double between chunks.
template <int V>
inline void pixel_sums16(int64_t hw, int64_t c, const float* x, double* total) {
  for (int64_t p0 = 0; p0 < hw; p0 += kReduceRows) {
    const int64_t p1 = std::min(hw, p0 + kReduceRows);
    f32x16 acc[V];
    for (int v = 0; v < V; ++v) acc[v] = splat16(0.f);
    for (int64_t p = p0; p < p1; ++p)
      for (int v = 0; v < V; ++v) acc[v] += load16(x + p * c + v * kLanes);
    for (int v = 0; v < V; ++v)
      for (int k = 0; k < (int)kLanes; ++k) total[v * kLanes + k] += (double)acc[v][k];
  }
}

inline void pixel_sums_tail(int64_t hw, int64_t c, int64_t n, const float* x, double* total) {
  for (int64_t k = 0; k < n; ++k)
    for (int64_t p0 = 0; p0 < hw; p0 += kReduceRows) {
      float acc = 0.f;
      for (int64_t p = p0; p < std::min(hw, p0 + kReduceRows); ++p) acc += x[p * c + k];
      total[k] += (double)acc;
    }
}

}  // namespace

void global_avg_pool2d_forward(int64_t n, int64_t hw, int64_t c, const float* x, float* y) {
  for_each_task(n, c, n * hw * c, [&](int64_t img, int64_t c0, int64_t c1) {
    // A 112x112 image sums 12544 terms per channel: float sums over kReduceRows pixels
    // (register vectors, 4 independent ones at C >= 64), added into double totals.
    std::vector<double> total(c1 - c0, 0.0);
    const float* xi = x + img * hw * c;
    int64_t k = c0;
    for (; k + 4 * kLanes <= c1; k += 4 * kLanes) pixel_sums16<4>(hw, c, xi + k, &total[k - c0]);
    for (; k + kLanes <= c1; k += kLanes) pixel_sums16<1>(hw, c, xi + k, &total[k - c0]);
    if (k < c1) pixel_sums_tail(hw, c, c1 - k, xi + k, &total[k - c0]);
    for (int64_t j = c0; j < c1; ++j) y[img * c + j] = (float)(total[j - c0] / (double)hw);
  });
}

void global_avg_pool2d_backward(int64_t n, int64_t hw, int64_t c, const float* dy, float* dx) {
  const float scale = 1.0f / (float)hw;
  for_each_task(n, c, n * hw * c, [&](int64_t img, int64_t c0, int64_t c1) {
    const float* g_in = dy + img * c;
    float* out = dx + img * hw * c;
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t k = c0; k < c1; ++k) out[p * c + k] = g_in[k] * scale;
  });
}

}  // namespace fastconv::cpu
