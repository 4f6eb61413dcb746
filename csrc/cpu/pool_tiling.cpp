// Pooling backward where the windows tile the input (kh == sh, kw == sw, no padding): every
// dx cell lies in at most one window, so dx is written once, row after row, straight from
// its window's dy (and, for max, the saved winner): dx[oy*kh + a, ox*kw + b] = dy[oy, ox]
// where the winner is cell a*kw + b (max), or dy[oy, ox] / (kh*kw) (average), and zero in the
// rows and columns past the last window. The general backwards (pool_max_backward.cpp,
// pool_avg.cpp) gather, for each dx cell, over the windows that may cover it and zero dx
// first: a 2x2 max-pool backward of (1, 112, 112, 64) took 0.32 ms there (13 GB/s of
// compulsory traffic; 1 thread, Zen 4).
// From 16 channels the vectors run over channels. Below (AVX-512 only) they run along the dx
// row instead: 16 consecutive dx floats come from at most 16 consecutive dy entries, gathered
// by one in-register permute whose pattern repeats every lcm(16, kw*C) floats (RowTable);
// pool_packed.h's 8-lane version of it (TiledRows8) remains for the avx2 level. 2x2, ms, three
// alternating runs: (256, 28, 28, 3) max 0.45-0.52 -> 0.19-0.30, average 0.22-0.35 ->
// 0.17-0.26; (256, 28, 28, 6) max 0.55-0.71 -> 0.31-0.44, average 0.36-0.54 -> 0.27-0.39.
// Rows of up to 192 floats run as one flat run over the whole dx image (FlatTable) instead.
// The forwards over the same geometries are at the end (forward_channels, forward_rows16; the
// max pool's from 16 channels at AVX-512 in pool_cells.cpp).
#include "cpu/pool_tiling.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common/nan_math.h"
#include "common/pool_index.h"
#include "cpu/pool_tasks.h"
#include "cpu/pool_windows.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

// The kLanes channels of one dx cell: dy where the window's winner is cell t, else 0.
inline void max_cell16(const float* dy, const i32xR* arg, int32_t t, float* out) {
  for (int p = 0; p < kPieces; ++p) {
    f32xR v = loadR(dy + p * kRegLanes);
    opaque(v);  // a register select, not a masked load (simd.h load16_plain)
    storeR(out + p * kRegLanes, arg[p] == t ? v : f32xR{});
  }
}

// Channels [c0, c1) of dx row `iy` = oy*kh + a of image `img`. kLong: from 128 channels (below).
template <bool kMax, bool kLong>
void tile_row(const PoolGeometry& g, const float* dyr, const uint8_t* argr, float scale, int64_t a,
              int64_t c0, int64_t c1, float* dxr) {
  const int64_t C = g.c, kw = g.win.kw;
  for (int64_t ox = 0; ox < g.ow; ++ox) {
    const float* d = dyr + ox * C;
    float* out = dxr + ox * kw * C;
    if (c1 - c0 < kLanes) {  // a split image's short last block (pool_tasks.h): no vector may
      for (int64_t b = 0; b < kw; ++b)  // reach into the channels of another task
        for (int64_t c = c0; c < c1; ++c)
          out[b * C + c] = kMax ? (argr[ox * C + c] == a * kw + b ? d[c] : 0.f) : d[c] * scale;
      continue;
    }
    // From 128 channels (cells of 512 bytes or more) each window column's cell is written
    // whole, one after the other, instead of one vector block across the kw cells at a time
    // (kw write streams interleaved a cell apart). 2x2, 1 thread, alternating processes,
    // medians of 7 rounds, ms: average (1, 112, 112, 256) 1.62 -> 0.83 (12.8 MB of dx under
    // the stream threshold), max (1, 112, 112, 256) 1.62 -> 1.09, (32, 28, 28, 128) 1.68 ->
    // 0.68, average (32, 14, 14, 512) 1.15 -> 0.58. Not below: average (256, 28, 28, 16) 0.35
    // -> 0.44, (32, 56, 56, 64) 1.63 -> 1.74 (8 rounds: the column order loads and scales dy
    // once per column; and as a run-time test inside this loop it made max (256, 7, 7, 16) 0.044
    // -> 0.061 ms: a template parameter, so the block order's code is the one it was).
    if constexpr (kLong) {
      for (int64_t b = 0; b < kw; ++b)
        for (int64_t c = c0; c < c1; c += kLanes) {
          const int64_t cc = std::min(c, c1 - kLanes);  // the last block overlaps the one before
          if constexpr (kMax) {
            i32xR arg[kPieces];
            const i32x16 a16 = widen16(argr + ox * C + cc);
            std::memcpy(arg, &a16, sizeof arg);
            max_cell16(d + cc, arg, (int32_t)(a * kw + b), out + b * C + cc);
          } else {
            for (int p = 0; p < kPieces; ++p) storeR(out + b * C + cc + p * kRegLanes, loadR(d + cc + p * kRegLanes) * scale);
          }
        }
      continue;
    }
    for (int64_t c = c0; c < c1; c += kLanes) {
      const int64_t cc = std::min(c, c1 - kLanes);  // the last block overlaps the one before
      if constexpr (kMax) {
        i32xR arg[kPieces];
        const i32x16 a16 = widen16(argr + ox * C + cc);
        std::memcpy(arg, &a16, sizeof arg);
        for (int64_t b = 0; b < kw; ++b) max_cell16(d + cc, arg, (int32_t)(a * kw + b), out + b * C + cc);
      } else {
        for (int p = 0; p < kPieces; ++p) {
          const f32xR v = loadR(d + cc + p * kRegLanes) * scale;
          for (int64_t b = 0; b < kw; ++b) storeR(out + b * C + cc + p * kRegLanes, v);
        }
      }
    }
  }
  for (int64_t ix = g.ow * kw; ix < g.w; ++ix)  // columns no window reaches
    std::memset(dxr + ix * C + c0, 0, sizeof(float) * (size_t)(c1 - c0));
}

template <bool kMax, bool kLong>
void backward_tiles(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx) {
  const int64_t C = g.c, kh = g.win.kh;
  // Every window is whole, so each divides by kh*kw, as pool_inv_count gives it.
  const float scale = pool_inv_count({0, kh}, {0, g.win.kw});
  // A dx past the cache (simd.h stream_output) is written by non-temporal stores, a whole row at
  // a time from a scratch row: plain stores read each line before writing it (2x2 max, (1, 112,
  // 112, 512): see benchmarks/RESULTS.md 2026-12-07 helper P).
  const bool stream = stream_output(g.n * g.h * g.w * C * (int64_t)sizeof(float));
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    const bool rows = stream && c0 == 0 && c1 == C;  // whole rows: this task's own
    float* buf = rows ? scratch(g.w * C) : nullptr;
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* dxr = dx + (img * g.h + iy) * g.w * C;
      float* to = rows ? buf : dxr;
      const int64_t oy = iy / kh;
      if (oy >= g.oh) {  // rows no window reaches
        for (int64_t ix = 0; ix < g.w; ++ix) std::memset(to + ix * C + c0, 0, sizeof(float) * (size_t)(c1 - c0));
      } else {
        const int64_t o = (img * g.oh + oy) * g.ow * C;
        tile_row<kMax, kLong>(g, dy + o, kMax ? arg + o : nullptr, scale, iy - oy * kh, c0, c1, to);
      }
      if (rows) stream_copy(dxr, buf, g.w * C);
    }
    if (rows) stream_fence();
  });
}

#if defined(__AVX512F__)
// dx row float e (e < ow*kw*C) lies in window column b = (e / C) % kw and takes dy entry
// (e / (kw*C)) * C + e % C of the dy row. Per vector j of a period (16 floats): the lowest
// entry any lane takes (base), each lane's entry less base (rel, < 16) and column (col).
struct RowTable {
  int64_t vectors = 0, per_period = 0;  // vectors per period; dy entries per period
  std::vector<int32_t> base;
  std::vector<std::array<int32_t, kLanes>> rel, col;

  explicit RowTable(const PoolGeometry& g) {
    const int64_t C = g.c, kw = g.win.kw;
    int64_t period = kLanes;
    while (period % (kw * C) != 0) period += kLanes;
    for (int64_t j = 0; j < period / kLanes; ++j) {
      std::array<int32_t, kLanes> src{}, cell{};
      for (int64_t l = 0; l < kLanes; ++l) {
        const int64_t e = j * kLanes + l, ix = e / C;
        src[l] = (int32_t)((ix / kw) * C + e % C), cell[l] = (int32_t)(ix % kw);
      }
      // Not monotonic: a vector starting inside a window's first column reads the same
      // entries again in its second.
      const int32_t lo = *std::min_element(src.begin(), src.end());
      if (*std::max_element(src.begin(), src.end()) - lo >= kLanes) return;  // not reached for C < 16
      base.push_back(lo);
      for (auto& v : src) v -= lo;
      rel.push_back(src), col.push_back(cell);
    }
    vectors = period / kLanes, per_period = period / kw;
  }
};

// The dx image as one flat run of floats (rows back to back) instead of row by row: with few
// channels a row is a few vectors (C = 1 at 56 columns: 3.5), so backward_rows16 paid a partial
// masked store and its loop entry per row, and a short row's write stream restarts every few
// lines. Flat float E of a band of kh dx rows (one dy row, kh*W*C floats) lies in row a, column
// ix; it takes dy entry (ix / kw)*C + c of the band's dy row (cell a*kw + ix % kw), or is 0 in
// a column no window reaches. The pattern repeats every lcm(16, kh*W*C) floats (FlatTable's
// period). A vector's lanes read at most two runs of 16 consecutive dy entries: run A, and run
// B from the lane where the band's next dx row begins (its entries jump back to the dy row's
// start): each run one load and one permute. 2x2, 1 thread, paired against backward_rows16:
// max (256, 56, 56, 1) 0.285 -> 0.150 ms, (256, 28, 28, 1) 0.097 -> 0.047, average
// (256, 28, 28, 3) 0.202 -> 0.096 (benchmarks/RESULTS.md 2026-12-07 helper P).
struct FlatTable {
  int64_t vectors = 0, period = 0, dy_per_period = 0;  // per period: vectors, dx floats, dy entries
  std::vector<int32_t> base_a, base_b;                 // per vector: first dy entry of each run
  std::vector<__mmask16> run_b, covered;               // per vector: run B's lanes; lanes in a window
  std::vector<std::array<int32_t, kLanes>> rel_a, rel_b, cell;  // per lane: entry - base; cell or -1

  FlatTable() = default;  // vectors == 0: not used
  explicit FlatTable(const PoolGeometry& g) {
    const int64_t C = g.c, kh = g.win.kh, kw = g.win.kw, row = g.w * C, band = kh * row;
    int64_t p = kLanes;
    while (p % band != 0) p += kLanes;
    if (p / kLanes > 4096) return;  // a table over 1 MB (wide rows): backward_rows16 instead
    for (int64_t j = 0; j < p / kLanes; ++j) {
      std::array<int32_t, kLanes> src{}, cl{}, ra{}, rb{};
      __mmask16 in = 0, b_lanes = 0;
      int64_t first_row = -1;
      for (int64_t l = 0; l < kLanes; ++l) {
        const int64_t E = j * kLanes + l, k = E / band, a = (E % band) / row, ix = (E % row) / C;
        cl[l] = -1;
        if (ix >= g.ow * kw) continue;  // in no window
        src[l] = (int32_t)(k * g.ow * C + (ix / kw) * C + E % C), cl[l] = (int32_t)(a * kw + ix % kw);
        in |= (__mmask16)(1u << l);
        const int64_t r = E / row;  // dx row within the period
        if (first_row < 0) first_row = r;
        // run B: lanes of a later dx row of the same band (entries start over)
        if (r != first_row && r / kh == first_row / kh) b_lanes |= (__mmask16)(1u << l);
      }
      int32_t lo_a = INT32_MAX, hi_a = INT32_MIN, lo_b = INT32_MAX, hi_b = INT32_MIN;
      for (int64_t l = 0; l < kLanes; ++l) {
        if (!(in & (1u << l))) continue;
        if (b_lanes & (1u << l)) lo_b = std::min(lo_b, src[l]), hi_b = std::max(hi_b, src[l]);
        else lo_a = std::min(lo_a, src[l]), hi_a = std::max(hi_a, src[l]);
      }
      if (lo_a == INT32_MAX) lo_a = hi_a = 0;
      if (lo_b == INT32_MAX) lo_b = hi_b = 0;
      if (hi_a - lo_a >= kLanes || hi_b - lo_b >= kLanes) return;  // not reached for C < 16
      for (int64_t l = 0; l < kLanes; ++l)
        if (in & (1u << l)) ((b_lanes & (1u << l)) ? rb[l] : ra[l]) = src[l] - ((b_lanes & (1u << l)) ? lo_b : lo_a);
      base_a.push_back(lo_a), base_b.push_back(lo_b), run_b.push_back(b_lanes), covered.push_back(in);
      rel_a.push_back(ra), rel_b.push_back(rb), cell.push_back(cl);
    }
    vectors = p / kLanes, period = p, dy_per_period = p / band * g.ow * C;
  }
};

// 16 dy entries (max: and their argmax, widened) from q, permuted by rel; loads masked to the
// image's `len` entries (the lanes they zero feed no stored lane).
inline __m512 flat_dy(const float* dy, int64_t q, int64_t len, __m512i rel) {
  return _mm512_permutexvar_ps(rel, q + kLanes <= len ? _mm512_loadu_ps(dy + q)
                                                      : _mm512_maskz_loadu_ps((__mmask16)(0xFFFFu >> (kLanes - (len - q))), dy + q));
}
inline __m512i flat_arg(const uint8_t* arg, int64_t q, int64_t len, __m512i rel) {
  const __m128i b = q + kLanes <= len ? _mm_loadu_si128((const __m128i*)(arg + q))
                                      : _mm_maskz_loadu_epi8((__mmask16)(0xFFFFu >> (kLanes - (len - q))), arg + q);
  return _mm512_permutexvar_epi32(rel, _mm512_cvtepu8_epi32(b));
}

template <bool kMax>
void backward_flat16(const PoolGeometry& g, const FlatTable& tab, const float* dy, const uint8_t* arg,
                     float* dx) {
  const int64_t C = g.c, dy_len = g.oh * g.ow * C, dx_len = g.h * g.w * C;
  const int64_t flat = g.oh * g.win.kh * g.w * C;  // dx floats of the bands; the rest is 0
  const __m512 scale = _mm512_set1_ps(pool_inv_count({0, g.win.kh}, {0, g.win.kw}));
  for_each_task(g.n, C, g.n * dx_len, [&](int64_t img, int64_t, int64_t) {
    // the table in locals of the body: a may-alias vector store would otherwise make the
    // compiler reload each of them (through the closure) after every store
    const int64_t vectors = tab.vectors, dy_per_period = tab.dy_per_period, flat_n = flat;
    const int32_t *base_a = tab.base_a.data(), *base_b = tab.base_b.data();
    const __mmask16 *run_b = tab.run_b.data(), *covered = tab.covered.data();
    const std::array<int32_t, kLanes>*rel_as = tab.rel_a.data(), *rel_bs = tab.rel_b.data(), *cells = tab.cell.data();
    const int64_t dy_n = dy_len;
    const __m512 scale_v = scale;
    const float* dyi = dy + img * dy_len;
    const uint8_t* argi = kMax ? arg + img * dy_len : nullptr;
    float* out = dx + img * dx_len;
    int64_t E = 0;
    for (int64_t d0 = 0; E < flat_n; d0 += dy_per_period)
      for (int64_t j = 0; j < vectors && E < flat_n; ++j, E += kLanes) {
        const __m512i rel_a = _mm512_loadu_si512(rel_as[j].data());
        const int64_t qa = d0 + base_a[j], qb = d0 + base_b[j];
        const __mmask16 b = run_b[j];
        __m512 d = flat_dy(dyi, qa, dy_n, rel_a);
        __m512 v;
        if constexpr (kMax) {
          __m512i at = flat_arg(argi, qa, dy_n, rel_a);
          if (b) {
            const __m512i rel_b = _mm512_loadu_si512(rel_bs[j].data());
            d = _mm512_mask_mov_ps(d, b, flat_dy(dyi, qb, dy_n, rel_b));
            at = _mm512_mask_mov_epi32(at, b, flat_arg(argi, qb, dy_n, rel_b));
          }
          // cell -1 (no window) never equals an argmax (0..255)
          v = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_loadu_si512(cells[j].data())), d);
        } else {
          if (b) d = _mm512_mask_mov_ps(d, b, flat_dy(dyi, qb, dy_n, _mm512_loadu_si512(rel_bs[j].data())));
          v = _mm512_maskz_mul_ps(covered[j], d, scale_v);
        }
        if (E + kLanes <= flat_n) _mm512_storeu_ps(out + E, v);
        else _mm512_mask_storeu_ps(out + E, (__mmask16)(0xFFFFu >> (kLanes - (flat_n - E))), v);
      }
    std::memset(out + flat, 0, sizeof(float) * (size_t)(dx_len - flat));  // rows in no window
  });
}

template <bool kMax>
void backward_rows16(const PoolGeometry& g, const RowTable& tab, const float* dy, const uint8_t* arg,
                     float* dx) {
  const int64_t C = g.c, kh = g.win.kh, row_len = g.ow * C, dx_row = g.w * C;
  const int64_t covered = g.ow * g.win.kw * C;  // dx floats of a row inside some window
  const __m512 scale = _mm512_set1_ps(pool_inv_count({0, kh}, {0, g.win.kw}));
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* out = dx + (img * g.h + iy) * dx_row;
      const int64_t oy = iy / kh;
      int64_t e = 0;
      if (oy < g.oh) {
        const float* dy_row = dy + (img * g.oh + oy) * row_len;
        const uint8_t* arg_row = kMax ? arg + (img * g.oh + oy) * row_len : nullptr;
        const __m512i ty = _mm512_set1_epi32((int32_t)((iy % kh) * g.win.kw));
        for (int64_t period = 0; e < covered; ++period)
          for (int64_t j = 0; j < tab.vectors && e < covered; ++j, e += kLanes) {
            const int64_t q = period * tab.per_period + tab.base[j];
            const __m512i rel = _mm512_loadu_si512(tab.rel[j].data());
            // Lanes reading past the dy row (its last vector) feed only lanes past `covered`.
            const bool full = e + kLanes <= covered && q + kLanes <= row_len;
            const __mmask16 avail =
                full ? (__mmask16)0xFFFF : (__mmask16)(0xFFFFu >> (kLanes - std::min<int64_t>(kLanes, row_len - q)));
            const __m512 d = _mm512_permutexvar_ps(
                rel, full ? _mm512_loadu_ps(dy_row + q) : _mm512_maskz_loadu_ps(avail, dy_row + q));
            __m512 v;
            if constexpr (kMax) {
              const __m128i bytes = full ? _mm_loadu_si128((const __m128i*)(arg_row + q))
                                         : _mm_maskz_loadu_epi8(avail, arg_row + q);
              const __m512i a = _mm512_permutexvar_epi32(rel, _mm512_cvtepu8_epi32(bytes));
              const __m512i t = _mm512_add_epi32(ty, _mm512_loadu_si512(tab.col[j].data()));
              v = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, t), d);
            } else {
              v = _mm512_mul_ps(d, scale);
            }
            if (full) {
              _mm512_storeu_ps(out + e, v);
            } else {
              const int64_t n = std::min<int64_t>(kLanes, covered - e);
              _mm512_mask_storeu_ps(out + e, (__mmask16)(0xFFFFu >> (kLanes - n)), v);
            }
          }
        e = covered;
      }
      std::memset(out + e, 0, sizeof(float) * (size_t)(dx_row - e));  // in no window
    }
  });
}
#endif

// Forwards. Every window is whole and sits at (oy*kh, ox*kw), so the per-output window
// bookkeeping of the general forwards in pool_max.cpp and pool_avg.cpp (pool_window and
// pool_inv_count, a float division, per output; per group of packed pixels a 64-bit
// division) is constant here. The same cells in the same row-major order, so the same
// floats and argmax.
template <bool kMax, bool kFar>
void forward_channels(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  const int64_t C = g.c, kh = g.win.kh, kw = g.win.kw;
  const float scale = pool_inv_count({0, kh}, {0, kw});
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    const float* xi = x + img * g.h * g.w * C;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const AxisRange rows{oy * kh, oy * kh + kh};
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const AxisRange cols{ox * kw, ox * kw + kw};
        const int64_t o = ((img * g.oh + oy) * g.ow + ox) * C;
        if (kFar && oy + 1 < g.oh)  // the next output row's window rows (forward's kFar)
          for (int64_t a = 0; a < kh; ++a) {
            const char* next = (const char*)(xi + ((rows.hi + a) * g.w + cols.lo) * C + c0);
            for (int64_t k = 0; k < kw * C * (int64_t)sizeof(float); k += 64) __builtin_prefetch(next + k);
          }
        auto block = [&](auto vectors, int64_t c) {
          constexpr int V = decltype(vectors)::value;
          if constexpr (kMax) {
            if (arg) max_window16<V, true>(g, xi + c, rows, cols, rows.lo, cols.lo, y + o + c, arg + o + c);
            else max_window16<V, false>(g, xi + c, rows, cols, rows.lo, cols.lo, y + o + c, nullptr);
          } else {
            avg_window16<V>(g, xi + c, rows, cols, scale, y + o + c);
          }
        };
        int64_t c = c0;
        for (; c + 4 * kLanes <= c1; c += 4 * kLanes) block(std::integral_constant<int, 4>{}, c);
        for (; c + kLanes <= c1; c += kLanes) block(std::integral_constant<int, 1>{}, c);
        if (c < c1 && c1 - c0 >= kLanes) {  // the last vector overlaps the one before
          block(std::integral_constant<int, 1>{}, c1 - kLanes);
        } else {  // a split image's short last block (< 16 channels, pool_tasks.h)
          for (; c < c1; ++c) {
            float best = xi[(rows.lo * g.w + cols.lo) * C + c], acc = 0.f;
            int64_t which = 0;
            for (int64_t a = 0; a < kh; ++a)
              for (int64_t b = 0; b < kw; ++b) {
                const float v = xi[((rows.lo + a) * g.w + cols.lo + b) * C + c];
                if (kMax && pool_beats(v, best)) best = v, which = a * kw + b;
                acc += v;
              }
            y[o + c] = kMax ? best : acc * scale;
            if (kMax && arg) arg[o + c] = (uint8_t)which;
          }
        }
      }
    }
  });
}

#if defined(__AVX512F__)
// Below 16 channels the vectors run along the input rows: P = min(16 / C, 32 / (kw*C))
// neighbouring outputs per vector, lane p*C + k being channel k of output ox + p, whose
// window column b is float (p*kw + b)*C + k of the kw*C*P floats from the group's first
// cell; those fit two registers (lo, hi), so each cell is one two-source permute of the
// row's two loads (pool_max.cpp's packed forward does the same per group, plus the bookkeeping).
template <bool kMax, bool kFar>
void forward_rows16(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  const int64_t C = g.c, kh = g.win.kh, kw = g.win.kw, x_row = g.w * C, y_row = g.ow * C;
  const int64_t P = std::min(kLanes / C, 2 * kLanes / (kw * C));
  const __m512 scale = _mm512_set1_ps(pool_inv_count({0, kh}, {0, kw}));
  __m512i cell[2 * kLanes];  // window column b's lane sources in (lo, hi); kw <= 32 / C
  for (int64_t b = 0; b < kw; ++b) {
    alignas(64) int32_t idx[kLanes] = {};
    for (int64_t l = 0; l < P * C; ++l) idx[l] = (int32_t)((l / C) * kw * C + b * C + l % C);
    cell[b] = _mm512_load_si512(idx);
  }
  const int64_t h0 = g.h, oh0 = g.oh, ow0 = g.ow;
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    // sizes in locals of the body: a may-alias vector store would otherwise make the compiler
    // reload them (through the closure, or g) after every store
    const int64_t h = h0, oh = oh0, ow = ow0, c = C, p = P, ky = kh, kx = kw, xr_n = x_row, yr_n = y_row;
    const float* xs = x;
    float* ys = y;
    uint8_t* as = arg;
    const __m512 sc = scale;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* xr = xs + (img * h + oy * ky) * xr_n;
      const int64_t o_row = (img * oh + oy) * yr_n;
      for (int64_t ox = 0; ox < ow; ox += p) {
        const int64_t lanes = std::min(p, ow - ox) * c, e = ox * kx * c;
        // the row's floats from e: whole registers but at the row's end, where the masks
        // keep the loads inside the row (and the tensor); the lanes they zero are not used
        const int64_t avail = xr_n - e;
        const __mmask16 m0 = avail >= kLanes ? (__mmask16)0xFFFF : (__mmask16)((1u << avail) - 1u);
        const __mmask16 m1 = avail >= 2 * kLanes ? (__mmask16)0xFFFF
                             : avail <= kLanes   ? (__mmask16)0
                                                 : (__mmask16)((1u << (avail - kLanes)) - 1u);
        __m512 best = _mm512_setzero_ps(), acc = _mm512_setzero_ps();
        __m512i which = _mm512_setzero_si512();
        for (int64_t a = 0; a < ky; ++a) {
          const float* src = xr + a * xr_n + e;
          if constexpr (kFar) {  // the same floats of the next output row's window rows
            _mm_prefetch((const char*)(src + ky * xr_n), _MM_HINT_T0);
            _mm_prefetch((const char*)(src + ky * xr_n + kLanes), _MM_HINT_T0);
          }
          const __m512 lo = _mm512_maskz_loadu_ps(m0, src), hi = _mm512_maskz_loadu_ps(m1, src + kLanes);
          for (int64_t b = 0; b < kx; ++b) {
            const __m512 v = _mm512_permutex2var_ps(lo, cell[b], hi);
            if constexpr (kMax) {
              if (a == 0 && b == 0) {
                best = v;
                continue;
              }
              // pool_beats: v > best, or v is NaN
              const __mmask16 win = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
              best = _mm512_mask_mov_ps(best, win, v);
              which = _mm512_mask_mov_epi32(which, win, _mm512_set1_epi32((int32_t)(a * kx + b)));
            } else {
              acc = _mm512_add_ps(acc, v);
            }
          }
        }
        const __mmask16 m = (__mmask16)((1u << lanes) - 1u);
        _mm512_mask_storeu_ps(ys + o_row + ox * c, m, kMax ? best : _mm512_mul_ps(acc, sc));
        if (kMax && as) _mm512_mask_cvtepi32_storeu_epi8(as + o_row + ox * c, m, which);
      }
    }
  });
}
#endif

}  // namespace

bool pool_windows_tile(const PoolGeometry& g) {
  const Window2d& w = g.win;
#if defined(__AVX512F__)
  const bool channels = true;  // below 16 the rows' table (RowTable)
#else
  const bool channels = g.c >= kLanes;
#endif
  return channels && w.kh == w.sh && w.kw == w.sw && w.pt == 0 && w.pb == 0 && w.pl == 0 &&
         w.pr == 0 && w.dh == 1 && w.dw == 1 && g.oh * w.kh <= g.h && g.ow * w.kw <= g.w &&
         w.kh * w.kw <= 255;
}

template <bool kMax>
void backward(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx) {
#if defined(__AVX512F__)
  if (g.c < kLanes) {
    // The flat run for rows of up to 12 vectors (W*C <= 192 floats), where backward_rows16's
    // per-row costs weigh: 2x2, paired, 1 thread, ms: max (256, 28, 28, 3) 0.189 -> 0.108,
    // average (256, 28, 28, 6) 0.271 -> 0.173 (W*C = 168); up to 32 vectors for a dx below
    // the stream threshold (W*C = 336: max (32, 56, 56, 6) 0.143 -> 0.109, average
    // (32, 112, 112, 3) 0.266 -> 0.212). For a dx past it backward_rows16 was faster at
    // W*C = 336 (max (256, 56, 56, 6) 1.56 -> 2.21 flat, (256, 112, 112, 3) 4.07 -> 4.60).
    const int64_t row = g.w * g.c;
    const bool cached = !stream_output(g.n * g.h * row * (int64_t)sizeof(float));
    const FlatTable flat = row <= 12 * kLanes || (row <= 32 * kLanes && cached) ? FlatTable(g) : FlatTable();
    if (flat.vectors > 0) return backward_flat16<kMax>(g, flat, dy, arg, dx);
    const RowTable tab(g);
    if (tab.vectors == 0) throw std::logic_error("pool_windows_tile: no row table for this geometry");
    return backward_rows16<kMax>(g, tab, dy, arg, dx);
  }
#endif
  if (g.c >= 128) return backward_tiles<kMax, true>(g, dy, arg, dx);
  backward_tiles<kMax, false>(g, dy, arg, dx);
}

void max_backward_argmax_tiles(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx) {
  backward<true>(g, dy, arg, dx);
}

void avg_backward_tiles(const PoolGeometry& g, const float* dy, float* dx) {
  backward<false>(g, dy, nullptr, dx);
}

bool pool_forward_tiles(const PoolGeometry& g) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (pool_rows8_applies(g)) return true;  // below 8 channels (pool_rows8.cpp)
#endif
  if (!pool_windows_tile(g)) return false;
#if defined(__AVX512F__)
  return g.c >= kLanes || g.win.kw * g.c <= 2 * kLanes;  // forward_rows16's two registers
#else
  return true;
#endif
}

template <bool kMax>
void forward(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  // kFar: software prefetch one output row (kh input rows) ahead. The loads wait on memory
  // (64% of the samples on them) as the input streams in kh interleaved runs of one row each,
  // which the hardware prefetchers follow badly when rows are short. Worth it for an input from
  // memory or a contended L3 (2x2 max, (32, 112, 112, 6): 1.24 -> 0.57 ms; average (256, 56, 56,
  // 6): 2.67 -> 1.98; max (256, 28, 28, 16): 1.78 -> 0.91), not for one of a few MB still in
  // cache ((32, 112, 112, 1): 0.068 -> 0.073 ms), nor with long rows (C = 512: no change).
  const bool far = g.n * g.h * g.w * g.c * (int64_t)sizeof(float) >= ((int64_t)4 << 20);
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (pool_rows8_applies(g)) {
    if constexpr (kMax) return max_forward_rows8(g, x, y, arg);
    else return avg_forward_rows8(g, x, y);
  }
#endif
#if defined(__AVX512F__)
  if (g.c < kLanes) {
    if (far) return forward_rows16<kMax, true>(g, x, y, arg);
    return forward_rows16<kMax, false>(g, x, y, arg);
  }
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  // the max pool from 16 channels cell by cell (pool_cells.cpp: up to 2.5x faster at C = 512)
  if constexpr (kMax) return max_forward_cells(g, x, y, arg);
#endif
  if (far) return forward_channels<kMax, true>(g, x, y, arg);
  forward_channels<kMax, false>(g, x, y, arg);
}

void max_forward_tiles(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  forward<true>(g, x, y, arg);
}

void avg_forward_tiles(const PoolGeometry& g, const float* x, float* y) {
  forward<false>(g, x, y, nullptr);
}

}  // namespace fastconv::cpu::detail
