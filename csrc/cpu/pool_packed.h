// Lane maps shared by the max and average pools (pool_max.cpp, pool_max_backward.cpp,
// pool_avg.cpp) at few channels: packed-pixel groups of the forwards (16 / C output pixels
// per vector at avx512, 8 / C at avx2), the cover tables of the backward gathers, and the
// 8-lane row table of the backward over tiling windows (TiledRows8).
#pragma once
#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/geometry.h"
#include "common/pool_index.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

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

// Few channels (C < 16): the backward's gather (pool_max_backward.cpp max_gather16) for
// P = 16 / C neighbouring dx pixels in one vector (lanes as in max_forward_task_packed).
// Along x a lane's pixel ix + p is covered by up to S = ceil(kw / sw) outputs; slot s of the
// table holds, per lane, that output's dy offset in the row, its position along the window
// (tx), and whether it exists. The same additions in the same order (oy, then ox ascending)
// as max_gather_tail, so results are bit-identical.
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

inline std::vector<PackedSlot> packed_cover_table(const PoolGeometry& g, const std::vector<AxisRange>& cover_x,
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

// The avx2 level's cover table (C < 8), as packed_cover_table with 8 lanes and P = 8 / C
// pixels per vector. ox: each lane's output column (the average pool's 1/count index);
// first_ox: the first valid lane's, which at P = 1 is every valid lane's (one pixel: its C
// lanes are contiguous in dy, read by one masked load at first_ox * C instead of a gather).
struct PackedSlot8 {
  __m256i dy_off, tx, valid, ox;  // valid: all-ones lanes where the slot's output exists
  int32_t first_ox;
};

inline std::vector<PackedSlot8> packed_cover_table8(const PoolGeometry& g, const std::vector<AxisRange>& cover_x,
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
#endif

#if defined(__AVX2__)  // both levels: at avx512 too (see the dispatch)
// Windows that tile the input without overlap or padding (kw == sw, kh == sh; LeNet's 2x2
// stride 2) at C < 8: every dx cell has at most one window, so dx row iy is dy row iy / sh
// with each pixel repeated sw times, kept in the lanes whose saved argmax is this cell. Run
// along the contiguous dx row instead of one pixel (C of 8 lanes) per vector: the dy (and
// argmax) entries of 8 consecutive dx floats lie within 8 consecutive entries, so each is one
// load and one lane permute, by a per-lane table periodic in lcm(8, sw*C) dx floats. The
// pixel path (max_backward_argmax_packed8) also widened every argmax row to int32 first (LeNet's (256, 28, 28, 6):
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
#endif

}  // namespace fastconv::cpu::detail
