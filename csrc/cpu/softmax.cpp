// Row softmax and softmax cross-entropy on (n, c) float32, OpenMP over rows.
//
// Both shift each row by its maximum before exp, so exp never overflows and the largest term
// is exactly 1 (the sum is >= 1, its log finite). The loss uses log-sum-exp,
// loss = max + log(sum exp(x - max)) - x[label], never log(prob), so it stays finite and
// accurate for logits of any magnitude (e.g. 1e4) where prob underflows to 0.
//
// Short rows (c < kNarrow, e.g. a per-pixel softmax over 3 classes): the row loop below is
// almost all setup and horizontal sums (C = 3 ran at 50 ns per element, 40x a copy), so 16
// rows at a time are transposed into a [c][16] tile where lane r is row r, and the max, exp,
// sum and scaling run down the tile's columns, 16 rows per vector operation. The same
// operations per element as the row path (exp16 is exp_vec's twin, max by the same '>'),
// NaN the same way: a NaN logit makes its row's sum, hence the whole row, NaN.
//
// Forward routing (2026-12-07): 1..8 classes on pixel_transpose planes (no scalar tile
// transposes), 9..40 16 rows transposed in registers (AVX-512), 41..128 masked rows
// (AVX-512); at the avx2 level from 9 classes a row in ymm registers (softmax_rows.cpp), at
// the baseline the tile to 63 and the row loop above; the row loop from 129. Backward: planes to 8, masked rows
// to 64 (AVX-512; 24 and 40 in row pairs, softmax_backward_row_pairs; at the avx2 level 9..64 a
// row in ymm registers and 6 four rows in three, softmax_rows_backward.cpp), the tile to 16,
// the row loop.
#include <algorithm>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "cpu/fast_exp.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/softmax_rows.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// Sums run in float lanes over blocks of kBlock elements (vectorised: a double reduction
// converts every element and was 6x slower), block totals in double: the error stays that of
// a short float sum however many classes there are.
constexpr int64_t kBlock = 1024;

// y = exp(x - max(x)); returns (max, sum of y) for the row.
inline void shifted_exp(int64_t c, const float* __restrict x, float* __restrict y,
                        float* row_max, double* sum) {
  // A NaN may be skipped by this max (comparisons with NaN are false), but exp(NaN - mx) is
  // NaN and makes the row's sum NaN, so the row's outputs and its loss are NaN all the same.
  float mx = x[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 1; j < c; ++j) mx = x[j] > mx ? x[j] : mx;
  double total = 0.0;
  const f32x16 shift = splat16(mx);
  for (int64_t j0 = 0; j0 < c; j0 += kBlock) {
    const int64_t j1 = j0 + kBlock < c ? j0 + kBlock : c;
    f32x16 acc = splat16(0.f);
    int64_t j = j0;
    for (; j + kLanes <= j1; j += kLanes) {  // exp16: see fast_exp.h
      const f32x16 e = exp16(load16(x + j) - shift);
      store16(y + j, e);
      acc += e;
    }
    float s = 0.f;
    for (int k = 0; k < (int)kLanes; ++k) s += acc[k];
    for (; j < j1; ++j) {
      y[j] = exp_vec(x[j] - mx);
      s += y[j];
    }
    total += s;
  }
  *row_max = mx;
  *sum = total;
}

inline double dot(int64_t c, const float* __restrict a, const float* __restrict b) {
  double total = 0.0;
  for (int64_t j0 = 0; j0 < c; j0 += kBlock) {
    const int64_t j1 = j0 + kBlock < c ? j0 + kBlock : c;
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = j0; j < j1; ++j) s += a[j] * b[j];
    total += s;
  }
  return total;
}

// Below these widths the tiled path wins (measured, 1 thread): the backward's row path is a
// short dot and one pass, already fast from 16 classes on.
constexpr int64_t kNarrow = 64, kNarrowBackward = 17;

// Widths 1..16 are dispatched as compile-time constants: the transposes below then unroll
// into plain moves (with a runtime c they were loops of a few iterations each, ~1.5 ns per
// element, as slow as the row path they replace at C >= 16).
template <typename Fn>
void with_width(int64_t c, Fn fn) {
  switch (c) {
#define FASTCONV_WIDTH(k) \
  case k:                 \
    return fn(std::integral_constant<int64_t, k>{});
    FASTCONV_WIDTH(1) FASTCONV_WIDTH(2) FASTCONV_WIDTH(3) FASTCONV_WIDTH(4) FASTCONV_WIDTH(5)
    FASTCONV_WIDTH(6) FASTCONV_WIDTH(7) FASTCONV_WIDTH(8) FASTCONV_WIDTH(9) FASTCONV_WIDTH(10)
    FASTCONV_WIDTH(11) FASTCONV_WIDTH(12) FASTCONV_WIDTH(13) FASTCONV_WIDTH(14)
    FASTCONV_WIDTH(15) FASTCONV_WIDTH(16)
#undef FASTCONV_WIDTH
    default:
      return fn(c);
  }
}

// [rows of c] at src -> [c][kLanes] tile. A partial block (rows < kLanes) zero-fills the
// missing lanes, which are computed but never written back.
template <typename W>
inline void to_tile(int64_t rows, W c, const float* __restrict src, float* __restrict tile) {
  if (rows == kLanes) {
    for (int64_t r = 0; r < kLanes; ++r)
      for (int64_t j = 0; j < c; ++j) tile[j * kLanes + r] = src[r * c + j];
    return;
  }
  std::fill(tile, tile + c * kLanes, 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) tile[j * kLanes + r] = src[r * c + j];
}

template <typename W>
inline void from_tile(int64_t rows, W c, const float* __restrict tile, float* __restrict dst) {
  if (rows == kLanes) {
    for (int64_t r = 0; r < kLanes; ++r)
      for (int64_t j = 0; j < c; ++j) dst[r * c + j] = tile[j * kLanes + r];
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) dst[r * c + j] = tile[j * kLanes + r];
}

// body(first row, rows <= kLanes, tile) over blocks of kLanes rows, blocks split across the
// threads; the tile lives on each thread's stack (room for two tiles of c < kNarrow: 8 KiB).
template <typename Body>
void for_each_tile(int64_t n, int64_t c, Body body) {
  const int64_t blocks = (n + kLanes - 1) / kLanes;
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
    alignas(64) float tile[2 * kNarrow * kLanes];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t r0 = b * kLanes;
      body(r0, std::min(kLanes, n - r0), tile);
    }
  });
}

// Softmax of the 16 rows held in a tile, in place.
template <typename W>
inline void softmax_tile(W c, float* t) {
  f32x16 mx = load16(t);
  for (int64_t j = 1; j < c; ++j) {
    const f32x16 v = load16(t + j * kLanes);
    mx = v > mx ? v : mx;
  }
  f32x16 sum = splat16(0.f);
  for (int64_t j = 0; j < c; ++j) {
    const f32x16 e = exp16(load16(t + j * kLanes) - mx);
    store16(t + j * kLanes, e);
    sum += e;
  }
  const f32x16 inv = 1.f / sum;
  for (int64_t j = 0; j < c; ++j) store16(t + j * kLanes, load16(t + j * kLanes) * inv);
}

template <typename W>
void softmax_forward_narrow(int64_t n, W c, const float* x, float* y) {
  for_each_tile(n, c, [&](int64_t r0, int64_t rows, float* tile) {
    to_tile(rows, c, x + r0 * c, tile);
    softmax_tile(c, tile);
    from_tile(rows, c, tile, y + r0 * c);
  });
}

// dx = y * (dy - sum(dy * y)) for 16 rows at a time: two tiles, dy's and y's.
template <typename W>
void softmax_backward_narrow(int64_t n, W c, const float* dy, const float* y, float* dx) {
  for_each_tile(n, c, [&](int64_t r0, int64_t rows, float* tile) {
    float* gt = tile;
    float* yt = tile + c * kLanes;
    to_tile(rows, c, dy + r0 * c, gt);
    to_tile(rows, c, y + r0 * c, yt);
    f32x16 d = splat16(0.f);
    for (int64_t j = 0; j < c; ++j) d += load16(gt + j * kLanes) * load16(yt + j * kLanes);
    for (int64_t j = 0; j < c; ++j)
      store16(gt + j * kLanes, load16(yt + j * kLanes) * (load16(gt + j * kLanes) - d));
    from_tile(rows, c, gt, dx + r0 * c);
  });
}

// C = 1..8 without the tile: a register of rows (C registers of the flat (n, c) array) is
// split into C planar registers by pixel_transpose.h's permutes, the softmax or its gradient is
// computed down the planes in registers with the tile path's operations in the same order, and
// merged back. The tile's scalar transposes were the cost: backward (256*14*14, 3) 0.10 ms,
// 1.8 GB of traffic a second where a copy of the same bytes runs at ~40; forward
// (32*112*112, 3) 1.44 ms -> see RESULTS.md (1 thread, Zen 4). Rows past the last whole
// register take the tile path.
namespace pt = detail::pixel_transpose;

// body(offset of the first float) for each whole register of rows, split across the
// threads; returns the rows done.
template <int C, typename Body>
int64_t for_each_row_register(int64_t n, Body body) {
  const int64_t blocks = n / pt::L;
  parallel_region((n * C >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) body(b * pt::L * C);
  });
  return blocks * pt::L;
}

template <int C>
void softmax_forward_planes(int64_t n, const float* x, float* y) {
  const int64_t done = for_each_row_register<C>(n, [&](int64_t off) {
    pt::vec p[C];
    pt::load_split<C>(x + off, p);
    pt::vec mx = p[0];
#pragma GCC unroll 8
    for (int j = 1; j < C; ++j) mx = p[j] > mx ? p[j] : mx;
    pt::vec sum = pt::vec{};
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) p[j] = exp_lanes(p[j] - mx), sum += p[j];
    const pt::vec inv = 1.f / sum;
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) p[j] *= inv;
    pt::merge_store<C>(y + off, p);
  });
  if (done < n)
    softmax_forward_narrow(n - done, std::integral_constant<int64_t, C>{}, x + done * C, y + done * C);
}

// The backward needs the planes only for d = sum(dy * y) per row: the products are split and
// summed, and d is spread back over its row's C lanes by one single-register permute per
// register (expand), so dx = y * (dy - d) runs on the rows as loaded: 36 permutes and blends per
// register of rows at C = 6 instead of 90 (two splits and a merge).
template <int C, int J, size_t... I>
constexpr pt::ivec expand_mask(std::index_sequence<I...>) {
  return pt::ivec{(int)((J * pt::L + (int)I) / C)...};
}
template <int C, size_t... J>
inline void expand(pt::vec d, pt::vec (&rows)[C], std::index_sequence<J...>) {
  ((rows[J] = __builtin_shuffle(d, expand_mask<C, (int)J>(std::make_index_sequence<pt::L>()))), ...);
}

template <int C>
void softmax_backward_planes(int64_t n, const float* dy, const float* y, float* dx) {
  const int64_t done = for_each_row_register<C>(n, [&](int64_t off) {
    pt::vec g[C], yv[C], p[C], d[C];
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) {
      g[j] = pt::load(dy + off + j * pt::L), yv[j] = pt::load(y + off + j * pt::L);
      p[j] = g[j] * yv[j];
    }
    if constexpr (C == 1) {
      d[0] = p[0];
    } else {
      pt::vec planes[C];
      pt::split<C>(p, planes);
      pt::vec sum = planes[0];
#pragma GCC unroll 8
      for (int j = 1; j < C; ++j) sum += planes[j];
      expand<C>(sum, d, std::make_index_sequence<C>());
    }
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) pt::store(dx + off + j * pt::L, yv[j] * (g[j] - d[j]));
  });
  if (done < n)
    softmax_backward_narrow(n - done, std::integral_constant<int64_t, C>{}, dy + done * C, y + done * C,
                            dx + done * C);
}

// Widths 1..8 as compile-time constants for the planes paths.
template <typename Fn>
void with_plane_width(int64_t c, Fn fn) {
  with_width(c, [&](auto w) {
    using W = decltype(w);
    if constexpr (!std::is_integral_v<W>) {
      if constexpr (W::value <= 8) fn(std::integral_constant<int, (int)W::value>{});
    }
  });
}

#if defined(__AVX512F__)
void softmax_forward_masked_rows(int64_t n, int64_t c, const float* x, float* y);

// 9..40 classes: the tile path's operations on 16 rows at a time, its scalar transposes
// replaced by pixel_transpose.h's register transposes, per block of 16 classes (16 masked row
// loads and 64 shuffles each way), a last block of <= 8 classes (17..24, 33..40) as a half
// block (transpose16x8: 16 half-register loads, 24 shuffles; the 16x16 transposes' shuffles
// bound the loop on Zen 4's two shuffle pipes). The tile ran (100352, 16) at ~600 cycles per
// 16 rows, most of them its 512 scalar moves each way; the masked rows (one row at a time, two
// horizontal reductions a row) 17..40. ms, before -> after (1 thread, Zen 4, paired): (100352,
// 16) 0.95 -> 0.78, (25088, 12) 0.26 -> 0.16, (50176, 24) 1.04 -> 0.55 (0.62 with a whole
// masked second block), (50176, 20) 0.92 -> 0.47, (25088, 32) 0.44 -> 0.38, (25088, 40) 0.66
// -> 0.51; at 48 no faster (0.151 / 0.152 ms at (6272, 48): 48 planes spill).
// Same operations in the same order as softmax_tile: the same results.
constexpr int64_t kTransposedMax = 40;
template <int C>
void softmax_forward_transposed(int64_t n, const float* x, float* y) {
  constexpr int NB = C / 16, H = C % 16;  // whole blocks of 16 classes, then H classes left
  // H > 8: one more 16-class block, masked; 1..8 (and C > 16): a half block (transpose16x8).
  constexpr bool kHalf = H > 0 && H <= 8 && C > 16;
  constexpr int NF = NB + (H > 8 || (H > 0 && C < 16) ? 1 : 0);  // 16-lane blocks
  auto mask = [](int b) { return (__mmask16)(C - 16 * b >= 16 ? 0xFFFFu : (1u << (C - 16 * b)) - 1u); };
  constexpr __mmask16 hlo = (__mmask16)((1u << H) - 1u), hhi = (__mmask16)(hlo << 8);
  const int64_t blocks = n / kLanes;
  parallel_region((n * C >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const float* xb = x + blk * kLanes * C;
      float* yb = y + blk * kLanes * C;
      __m512 r[NF][16];  // r[j / 16][j % 16]: class j of the 16 rows (after the transpose)
      __m512 h[8];       // kHalf: class 16 * NF + j in h[j]; rows i and 8 + i in h[i] before
#pragma GCC unroll 3
      for (int b = 0; b < NF; ++b) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[b][i] = _mm512_maskz_loadu_ps(mask(b), xb + i * C + 16 * b);
        pt::transpose16(r[b]);
      }
      if constexpr (kHalf) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {  // row 8 + i's classes to lanes 8.. (masked lanes: no access)
          h[i] = _mm512_maskz_loadu_ps(hlo, xb + i * C + 16 * NF);
          h[i] = _mm512_mask_loadu_ps(h[i], hhi, xb + (8 + i) * C + 16 * NF - 8);
        }
        pt::transpose16x8(h);
      }
      auto cls = [&](int j) -> __m512& { return j < 16 * NF ? r[j / 16][j % 16] : h[j - 16 * NF]; };
      f32x16 mx = (f32x16)cls(0);
#pragma GCC unroll 48
      for (int j = 1; j < C; ++j) mx = (f32x16)cls(j) > mx ? (f32x16)cls(j) : mx;
      f32x16 sum = splat16(0.f);
#pragma GCC unroll 48
      for (int j = 0; j < C; ++j) {
        const f32x16 e = exp16((f32x16)cls(j) - mx);
        cls(j) = (__m512)e;
        sum += e;
      }
      const f32x16 inv = 1.f / sum;
#pragma GCC unroll 48
      for (int j = 0; j < C; ++j) cls(j) = (__m512)((f32x16)cls(j) * inv);
#pragma GCC unroll 3
      for (int b = 0; b < NF; ++b) {
        pt::transpose16(r[b]);
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(yb + i * C + 16 * b, mask(b), r[b][i]);
      }
      if constexpr (kHalf) {
        pt::transpose16x8(h);
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
          _mm512_mask_storeu_ps(yb + i * C + 16 * NF, hlo, h[i]);
          _mm512_mask_storeu_ps(yb + (8 + i) * C + 16 * NF - 8, hhi, h[i]);
        }
      }
    }
  });
  const int64_t done = blocks * kLanes;
  if (done >= n) return;
  if constexpr (C <= 16) {
    softmax_forward_narrow(n - done, std::integral_constant<int64_t, C>{}, x + done * C, y + done * C);
  } else {
    softmax_forward_masked_rows(n - done, C, x + done * C, y + done * C);
  }
}

// 9..64 classes, one row at a time in up to four registers (the last one masked): the dot's
// float lanes summed by one horizontal add. The row path's loops (omp simd with a scalar
// remainder, a double total) spent ~60 cycles on a row of 24: (50176, 24) 0.78 ms, 0.21 of a
// copy's speed, and the tile's transposes were no faster at 16 (1 thread, Zen 4).
constexpr int64_t kMaskedRowsMax = 64, kMaskedRowsMaxForward = 128;
// The forward the same way at 41..128 classes (17..40 since 2026-12-07 (2): transposed
// above; a 256-bit last chunk of <= 8 classes, half its exp work, was slower: (50176, 24)
// 1.00 -> 1.09 ms), where the tile's transposes ran at runtime
// widths, ms: (25088, 48) 1.39 -> 0.85, (50176, 32) 1.80 -> 1.31, (50176, 64) 4.2 -> 2.3 (1
// thread, Zen 4). With the cheaper exp_lanes (2026-12-07): 17..24 now ~10% faster here than
// in the tile ((50176, 24) 1.34 -> 1.17 ms), while 16 stays in the tile (one register a
// row is one long dependency chain: (100352, 16) 1.00 -> 1.66 ms); 65..128 were on the row
// loop below ((12544, 96) 1.15 -> 0.62 ms); compile-time tiles of 24 and 32 were slower
// still (0.70 and 0.81 ms against 0.63 and 0.56). Per element the tile path's operations:
// the max by '>' (a NaN may be skipped, but exp of it makes the row's sum
// and so the whole row NaN), exp16 of x - max, a float sum, y = e * (1 / sum).
// The chunk count is a compile-time constant (1..8): with a runtime count the row's registers
// were arrays on the stack, stored and reloaded: backward (12544, 24) 0.088 -> 0.065 ms,
// forward (25088, 24) 0.63 -> 0.45 ms (1 thread, Zen 4, paired).
template <int K, typename Body>
void masked_rows_of(int64_t n, int64_t c, Body& body) {
  const __mmask16 last = (__mmask16)(0xFFFFu >> (K * kLanes - c));
  auto mask = [=](int k) { return k == K - 1 ? last : (__mmask16)0xFFFF; };
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i, std::integral_constant<int, K>{}, mask);
  });
}

// body(row i, chunks, mask of chunk k) for each row, rows split across the threads: a row of
// c <= 128 floats is `chunks` registers (std::integral_constant), the last one masked.
template <typename Body>
void for_each_masked_row(int64_t n, int64_t c, Body body) {
  switch ((c + kLanes - 1) / kLanes) {
    case 1: return masked_rows_of<1>(n, c, body);
    case 2: return masked_rows_of<2>(n, c, body);
    case 3: return masked_rows_of<3>(n, c, body);
    case 4: return masked_rows_of<4>(n, c, body);
    case 5: return masked_rows_of<5>(n, c, body);
    case 6: return masked_rows_of<6>(n, c, body);
    case 7: return masked_rows_of<7>(n, c, body);
    default: return masked_rows_of<8>(n, c, body);  // c <= 128
  }
}

void softmax_forward_masked_rows(int64_t n, int64_t c, const float* x, float* y) {
  for_each_masked_row(n, c, [&](int64_t i, auto kc, auto mask) {
    constexpr int chunks = decltype(kc)::value;
    const float* xr = x + i * c;
    f32x16 v[chunks];
    f32x16 mx = splat16(-INFINITY);
    for (int k = 0; k < chunks; ++k) {
      v[k] = (f32x16)_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), mask(k), xr + k * kLanes);
      mx = v[k] > mx ? v[k] : mx;
    }
    const f32x16 shift = splat16(_mm512_reduce_max_ps((__m512)mx));
    f32x16 sum = splat16(0.f);
    for (int k = 0; k < chunks; ++k) {
      v[k] = (f32x16)_mm512_maskz_mov_ps(mask(k), (__m512)exp16(v[k] - shift));  // lanes past c: 0
      sum += v[k];
    }
    const f32x16 inv = splat16(1.f / _mm512_reduce_add_ps((__m512)sum));
    for (int k = 0; k < chunks; ++k)
      _mm512_mask_storeu_ps(y + i * c + k * kLanes, mask(k), (__m512)(v[k] * inv));
  });
}

// c = 16 K + 8 (24, 40; at 56 no faster: (25088, 56) 1.01-1.03x the masked rows' time,
// paired, 1 thread): two rows are 2 K + 1 whole registers, the middle one shared
// (lanes 0..7 the first row's last 8 classes, 8..15 the second's first 8), so a row pair needs
// no masked load or store, and its two dots share one horizontal reduction (a 256-bit fold
// each, then three in-lane butterfly steps on both at once). The masked rows paid two masked
// loads and a masked store per row in its half-empty last register, and a whole horizontal sum
// per row: (25088, 24) 0.17 ms, 0.42 of a copy's speed (sweep 2026-12-07e). Each dot's lanes
// are summed as in masked_rows (an FMA chain over the row's registers, then the lanes); the
// pairing changes only the order of the lanes' final additions.
template <int K>
void softmax_backward_row_pairs(int64_t n, const float* dy, const float* y, float* dx) {
  constexpr int64_t C = 16 * K + 8;
  constexpr int R = 2 * K + 1;  // registers per pair of rows
  const int64_t pairs = n / 2;
  parallel_region((n * C >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t p = 0; p < pairs; ++p) {
      const float* g = dy + p * 2 * C;
      const float* yr = y + p * 2 * C;
      __m512 gv[R], yv[R];
      for (int r = 0; r < R; ++r) gv[r] = _mm512_loadu_ps(g + r * kLanes), yv[r] = _mm512_loadu_ps(yr + r * kLanes);
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
      for (int r = 0; r < K; ++r) a0 = _mm512_fmadd_ps(gv[r], yv[r], a0);
      a0 = _mm512_mask3_fmadd_ps(gv[K], yv[K], a0, (__mmask16)0x00FF);  // the shared register's
      a1 = _mm512_maskz_mul_ps((__mmask16)0xFF00, gv[K], yv[K]);        // halves: row 0, row 1
      for (int r = K + 1; r < R; ++r) a1 = _mm512_fmadd_ps(gv[r], yv[r], a1);
      // lanes 0..7: a0's two 256-bit halves added, 8..15 a1's; then each 8-lane half summed
      // by butterflies, so lanes 0..7 hold row 0's dot and 8..15 row 1's
      __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xEE));
      w = _mm512_add_ps(w, _mm512_shuffle_f32x4(w, w, 0xB1));
      w = _mm512_add_ps(w, _mm512_permute_ps(w, 0x4E));
      w = _mm512_add_ps(w, _mm512_permute_ps(w, 0xB1));
      const __m512 d0 = _mm512_shuffle_f32x4(w, w, 0x00), d1 = _mm512_shuffle_f32x4(w, w, 0xFF);
      float* out = dx + p * 2 * C;
      for (int r = 0; r < R; ++r) {
        const __m512 d = r < K ? d0 : r > K ? d1 : w;
        _mm512_storeu_ps(out + r * kLanes, _mm512_mul_ps(yv[r], _mm512_sub_ps(gv[r], d)));
      }
    }
  });
}

void softmax_backward_masked_rows(int64_t n, int64_t c, const float* dy, const float* y, float* dx) {
  if ((c == 24 || c == 40) && n >= 2) {
    const int64_t done = n / 2 * 2;
    if (c == 24) softmax_backward_row_pairs<1>(done, dy, y, dx);
    else softmax_backward_row_pairs<2>(done, dy, y, dx);
    if (done == n) return;
    dy += done * c, y += done * c, dx += done * c, n -= done;  // an odd last row
  }
  for_each_masked_row(n, c, [&](int64_t i, auto kc, auto mask) {
    constexpr int chunks = decltype(kc)::value;
    const float* g = dy + i * c;
    const float* yr = y + i * c;
    __m512 gv[chunks], yv[chunks];
    __m512 acc = _mm512_setzero_ps();
    for (int k = 0; k < chunks; ++k) {
      gv[k] = _mm512_maskz_loadu_ps(mask(k), g + k * kLanes);
      yv[k] = _mm512_maskz_loadu_ps(mask(k), yr + k * kLanes);
      acc = _mm512_fmadd_ps(gv[k], yv[k], acc);
    }
    const __m512 d = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
    for (int k = 0; k < chunks; ++k)
      _mm512_mask_storeu_ps(dx + i * c + k * kLanes, mask(k), _mm512_mul_ps(yv[k], _mm512_sub_ps(gv[k], d)));
  });
}
#endif

}  // namespace

void softmax_forward(int64_t n, int64_t c, const float* x, float* y) {
#if defined(__AVX512F__)
  if (c > 8 && c <= kTransposedMax) {
    switch (c) {
#define FASTCONV_WIDTH(k) \
  case k:                 \
    return softmax_forward_transposed<k>(n, x, y);
      FASTCONV_WIDTH(9) FASTCONV_WIDTH(10) FASTCONV_WIDTH(11) FASTCONV_WIDTH(12) FASTCONV_WIDTH(13)
      FASTCONV_WIDTH(14) FASTCONV_WIDTH(15) FASTCONV_WIDTH(16) FASTCONV_WIDTH(17) FASTCONV_WIDTH(18)
      FASTCONV_WIDTH(19) FASTCONV_WIDTH(20) FASTCONV_WIDTH(21) FASTCONV_WIDTH(22) FASTCONV_WIDTH(23)
      FASTCONV_WIDTH(24) FASTCONV_WIDTH(25) FASTCONV_WIDTH(26) FASTCONV_WIDTH(27) FASTCONV_WIDTH(28)
      FASTCONV_WIDTH(29) FASTCONV_WIDTH(30) FASTCONV_WIDTH(31) FASTCONV_WIDTH(32)
      FASTCONV_WIDTH(33) FASTCONV_WIDTH(34) FASTCONV_WIDTH(35) FASTCONV_WIDTH(36)
      FASTCONV_WIDTH(37) FASTCONV_WIDTH(38) FASTCONV_WIDTH(39) FASTCONV_WIDTH(40)
#undef FASTCONV_WIDTH
    }
  }
  if (c > 16 && c <= kMaskedRowsMaxForward) return softmax_forward_masked_rows(n, c, x, y);
#endif
  if (c > 8 && detail::softmax_forward_register_rows(n, c, x, y)) return;  // avx2 level
  if (c <= 8) return with_plane_width(c, [&](auto w) { softmax_forward_planes<decltype(w)::value>(n, x, y); });
  if (c < kNarrow) {
    with_width(c, [&](auto w) { softmax_forward_narrow(n, w, x, y); });
    return;
  }
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float mx;
      double s;
      shifted_exp(c, x + i * c, y + i * c, &mx, &s);
      const float inv = (float)(1.0 / s);
      for (int64_t j = 0; j < c; ++j) y[i * c + j] *= inv;
    }
  });
}

// dx = y * (dy - sum(dy * y)) per row (Jacobian-vector product of softmax).
void softmax_backward(int64_t n, int64_t c, const float* dy, const float* y, float* dx) {
  if (c == 6) {  // avx2 level: four rows in three registers (softmax_rows_backward.cpp)
    const int64_t done = detail::softmax_backward_six(n, dy, y, dx);
    dy += done * c, y += done * c, dx += done * c, n -= done;
    if (n == 0) return;
  }
  if (c <= 8) return with_plane_width(c, [&](auto w) { softmax_backward_planes<decltype(w)::value>(n, dy, y, dx); });
#if defined(__AVX512F__)
  if (c <= kMaskedRowsMax) return softmax_backward_masked_rows(n, c, dy, y, dx);
#endif
  if (detail::softmax_backward_register_rows(n, c, dy, y, dx)) return;  // avx2 level, 9..64
  if (c < kNarrowBackward) {
    with_width(c, [&](auto w) { softmax_backward_narrow(n, w, dy, y, dx); });
    return;
  }
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* g = dy + i * c;
      const float* yr = y + i * c;
      const float d = (float)dot(c, g, yr);
      for (int64_t j = 0; j < c; ++j) dx[i * c + j] = yr[j] * (g[j] - d);
    }
  });
}

void softmax_cross_entropy_forward(int64_t n, int64_t c, const float* logits,
                                   const int64_t* labels, float* loss, float* probs) {
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* x = logits + i * c;
      float* p = probs + i * c;
      float mx;
      double s;
      shifted_exp(c, x, p, &mx, &s);
      const float inv = (float)(1.0 / s);
      for (int64_t j = 0; j < c; ++j) p[j] *= inv;
      // (x[label] - mx) first: both are large, their difference is exact-ish and small.
      loss[i] = (float)(std::log(s) - ((double)x[labels[i]] - (double)mx));
    }
  });
}

void softmax_cross_entropy_backward(int64_t n, int64_t c, const float* probs,
                                    const int64_t* labels, const float* dloss, float* dlogits) {
  parallel_region((n * c >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float g = dloss[i];
      for (int64_t j = 0; j < c; ++j) dlogits[i * c + j] = g * probs[i * c + j];
      dlogits[i * c + labels[i]] -= g;
    }
  });
}

}  // namespace fastconv::cpu
