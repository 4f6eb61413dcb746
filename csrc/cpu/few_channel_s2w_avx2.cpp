// The weight pass of 3x3 stride-2 convs with C = 6 channels in and out, at the avx2 level
// (8-lane ymm, 16 registers); C = 3 goes on to few_channel_s2w_rows3_avx2.cpp (straight from
// the rows, faster at every width: this file's templates take C = 3 too, measured below).
//
// Why: at avx2 C = 6 ran on direct_conv.cpp's generic weight pass (the AVX-512 kernel for it,
// few_channel_s2_patch.cpp, needs mask registers), C = 3 on the column-phase planes
// (few_channel_s2_weights.cpp, blocks of rows of ONE image) or, under 17 columns, on
// few_channel_rows.cpp: in the sweep on an AVX2-only EPYC (sweep_2026-12-08_zen3.md) nine of
// these were under half their family's median, N=256 14x14 C=3 the worst case of the whole
// sweep (0.093): at 7x7 and 14x14 a block is one image of 16 or 49 outputs, and the per-block
// costs (36 accumulator groups loaded and stored, the dy split's scalar tail) were the pass.
//
// Here, as in few_channel_weights8.cpp (stride 1), a work item is several whole small images
// (a zero dy row between two) or a band of rows of one large image, its planes within L1.
// Planes of pitch P = OW + 1 floats a row: dy plane co holds column ox at ox and 0 at OW; the
// x planes hold, for row parity a (input row 2*oy + a - pt) and channel ci, the even columns
// E[j] = xp[2j] and the odd ones O[j] = xp[2j + 1] of the padded row xp (xp[c] = x[c - pl],
// zeros outside), j < P. Then for output float q (row q / P, column q % P)
//   dw[ky, kx, ci, co] = sum over q of X(ky % 2, ci, kx)[q + (ky / 2) * P] * dy[co][q]
// with X(a, ci, 0) = E, X(a, ci, 1) = O, X(a, ci, 2) = E one float on (column j's xp[2j + 2]
// is E[j + 1], inside the row as j < OW: the extra column). Per (ci, ky, block of 3 output
// channels): 3 x 3 lane accumulators over the item, per vector of 8 outputs 3 x loads, 3 dy
// loads, 9 multiply-adds (13 registers). The lanes are summed as in few_channel_weights8.cpp:
// a per-thread float table per item, flushed to doubles every kFlushPixels pixels, the threads'
// doubles added in thread order (the same bits for a fixed thread count).
//
// The split: 8 pixel pairs a register (block_pairs: Split3 and phase_of at C = 3, a 4x4
// transpose per 128-bit half at C = 6), every register of a row read straight from x where
// its reads stay inside x (past the row: the next row's floats, the padding's lanes zeroed
// by masks); otherwise (the last rows of x) the pairs wholly inside the row by registers,
// the rest one float at a time. dy rows likewise (Split3 at C = 3, the pairs' transpose and
// an interleave at C = 6).
//
// Paired against main (1 thread, thread CPU time, the AVX2-only EPYC, benchmarks/RESULTS.md
// helper A stop 39), ms before/after: C=3 (here) N=256 14x14 0.176/0.104, 28x28 0.403/0.357; C=6
// N=256 7x7 0.168/0.122, 14x14 0.407/0.305, 28x28 1.75/1.10, 56x56 5.88/3.93, 112x112
// 19.9/15.8, N=32 28x28 0.166/0.108, N=1 112x112 0.070/0.050.
//
// Non-finite x or dy: the zeros of column OW and between images meet x's floats there, so a
// NaN or inf gives dw a NaN where the reference may have a number; conv2d_backward_weights
// checks dw and recomputes such a pass by im2col (a NaN or inf in x's used floats or in dy
// always reaches dw here: every one of them is multiplied at least once).
#include "cpu/few_channel_s2w.h"

#if defined(__AVX2__) && !defined(__AVX512F__)

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/few_channel_s2.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

using stride2::L;
using stride2::load;
using stride2::store;
using stride2::vec;
static_assert(L == 8, "avx2 registers");

constexpr int64_t kParallelWork = 1 << 21;  // as direct_conv.cpp
// One item's x and dy planes: within L1's 32 KiB, as each (ci, ky, co block) walks them again.
constexpr int64_t kItemFloats = 6144;
// Pixels a thread's float table takes before it is added to its doubles.
constexpr int64_t kFlushPixels = 1 << 13;
constexpr int64_t kPrefetchFrom = stride2::kPrefetchFromBytes;

// Whole images (OH output rows and a zero separator row each, `per_item` of them) or bands
// of `band` output rows of one image. An item of r output rows holds C*r*P dy floats and
// 4*C*(r + 1)*P x floats (2 parities x 2 phases): rows r with 5*C*P*r + 4*C*P <= floats.
struct Items {
  int64_t n, oh, per_item = 1, band = 1, per_image = 1, count = 0, rows_max = 0;
  bool whole = true;
  Items(int64_t n_, int64_t oh_, int64_t p, int c, int64_t floats) : n(n_), oh(oh_) {
    const int64_t most = std::max<int64_t>(1, (floats / (c * p) - 4) / 5);
    per_item = std::max<int64_t>(1, (most + 1) / (oh + 1));
    band = std::min(oh, most);
    per_image = (oh + band - 1) / band;
    band = (oh + per_image - 1) / per_image;  // equal bands (14 rows: 7 + 7, not 12 + 2)
    whole = per_item > 1 || band == oh;
    count = whole ? (n + per_item - 1) / per_item : n * per_image;
    rows_max = whole ? per_item * (oh + 1) - 1 : band;
  }
  // Images [n0, n0 + images), output rows [oy0, oy0 + lines) of each.
  void at(int64_t i, int64_t& n0, int64_t& images, int64_t& oy0, int64_t& lines) const {
    if (whole) {
      n0 = i * per_item, images = std::min(per_item, n - n0), oy0 = 0, lines = oh;
    } else {
      n0 = i / per_image, images = 1, oy0 = (i % per_image) * band;
      lines = std::min(oh, oy0 + band) - oy0;
    }
  }
};

// C = 6: 8 pixel pairs (16 pixels, 96 floats from s) to their 12 planar registers, pr[k] lane
// i = float k of pair i (k < 6: the even pixel's channel k, else the odd one's channel k - 6).
// A pair is three 4-float quarters, so per quarter m one 4x4 transpose in each 128-bit half
// (pairs 0..3 low, 4..7 high): 4 two-half loads, 8 shuffles for 4 registers.
// (pixel_transpose::split<6> and phase_of through stride2::split_pairs<6> was a third of an
// N=256 28x28 pass in perf, as much as the multiply-adds.)
inline void pairs6(const float* s, __m256 (&pr)[12]) {
#pragma GCC unroll 3
  for (int m = 0; m < 3; ++m) {
    __m256 r[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
      r[j] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + j * 12 + 4 * m)),
                                  _mm_loadu_ps(s + (j + 4) * 12 + 4 * m), 1);
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    pr[4 * m + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
    pr[4 * m + 1] = _mm256_shuffle_ps(t0, t2, 0xee);
    pr[4 * m + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
    pr[4 * m + 3] = _mm256_shuffle_ps(t1, t3, 0xee);
  }
}

// even[c*cs + j] = src[(2j)*C + c], odd[c*cs + j] = src[(2j + 1)*C + c] for j < pairs
// rounded down to L; returns the pairs done.
template <int C>
int64_t split_pairs_c(const float* src, int64_t pairs, float* even, float* odd, int64_t cs) {
  if constexpr (C == 6) {
    int64_t j = 0;
    for (; j + L <= pairs; j += L) {
      __m256 pr[12];
      pairs6(src + 2 * C * j, pr);
#pragma GCC unroll 6
      for (int c = 0; c < C; ++c) {
        _mm256_storeu_ps(even + c * cs + j, pr[c]);
        _mm256_storeu_ps(odd + c * cs + j, pr[C + c]);
      }
    }
    return j;
  } else {
    return stride2::split_pairs<C>(src, pairs, even, odd, cs);
  }
}

// 8 pixel pairs from s: e[c] lane i = s[(2i)*C + c], o[c] lane i = s[(2i + 1)*C + c].
template <int C>
inline void block_pairs(const float* s, __m256 (&e)[C], __m256 (&o)[C]) {
  if constexpr (C == 6) {
    __m256 pr[12];
    pairs6(s, pr);
#pragma GCC unroll 6
    for (int c = 0; c < C; ++c) e[c] = pr[c], o[c] = pr[C + c];
  } else {  // as stride2::split_pairs<3>
    vec in[3], a[3], b[3];
#pragma GCC unroll 3
    for (int c = 0; c < 3; ++c) in[c] = load(s + c * L);
    stride2::Split3::split(in, a);
#pragma GCC unroll 3
    for (int c = 0; c < 3; ++c) in[c] = load(s + (3 + c) * L);
    stride2::Split3::split(in, b);
#pragma GCC unroll 3
    for (int c = 0; c < 3; ++c) {
      e[c] = (__m256)stride2::phase_of<0>(a[c], b[c]);
      o[c] = (__m256)stride2::phase_of<1>(a[c], b[c]);
    }
  }
}

// Lanes i of a register of pairs from jb with lo <= jb + i < hi, as a float mask.
inline __m256 lane_range(int64_t jb, int64_t lo, int64_t hi) {
  const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)jb), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i ge = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32((int)lo - 1));
  const __m256i lt = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), idx);
  return _mm256_castsi256_ps(_mm256_and_si256(ge, lt));
}

// even[ci*cs + j] = xp[2j][ci], odd[ci*cs + j] = xp[2j + 1][ci] for j < p, xp[c] = src[c - pl]
// for 0 <= c - pl < w, else 0 (src: one row of w pixels of C channels).
template <int C>
void split_x_row(const float* src, int64_t w, int64_t pl, int64_t p, float* even, float* odd,
                 int64_t cs, const float* xbeg, const float* xend) {
  // Pairs [j0, j1) lie wholly inside the row: 2*j0 - pl >= 0, 2*j1 - 1 - pl <= w - 1.
  const int64_t j0 = (pl + 1) / 2, j1 = std::min(p, (w + pl) / 2);
  int64_t lo = 0, hi = 0;  // the pairs done by registers
  auto one = [&](int64_t j) {
    const int64_t c0 = 2 * j - pl, c1 = c0 + 1;
    const bool in0 = c0 >= 0 && c0 < w, in1 = c1 >= 0 && c1 < w;
#pragma GCC unroll 6
    for (int ci = 0; ci < C; ++ci) {
      even[ci * cs + j] = in0 ? src[c0 * C + ci] : 0.f;
      odd[ci * cs + j] = in1 ? src[c1 * C + ci] : 0.f;
    }
  };
  // Where the registers' reads stay inside x: every pair by registers, reading the rows
  // around (up to 7 pairs past p written into the next row's place, written after), the
  // lanes of columns outside the row (the padding) zeroed by masks in the first and last
  // registers. Paired against one float at a time for the pairs at the padding and for rows
  // under 8 pairs (the 7x7 and 14x14 inputs' rows), N=256: 7x7 C=3 0.90, C=6 0.92, 14x14
  // C=3, C=6, 28x28 C=3 even.
  const int64_t np = (p + L - 1) / L * L;
  const float* start = src - pl * C;
  if (start >= xbeg && start + 2 * np * C <= xend) {
    // Valid pairs: even columns 0 <= 2j - pl < w, odd ones 0 <= 2j + 1 - pl < w.
    const int64_t elo = (pl + 1) / 2, ehi = (w + pl + 1) / 2, olo = pl / 2, ohi = (w + pl) / 2;
    for (int64_t jb = 0; jb < np; jb += L) {
      __m256 e[C], o[C];
      block_pairs<C>(start + 2 * jb * C, e, o);
      if (jb < elo || jb + L > std::min(ehi, ohi)) {
        const __m256 me = lane_range(jb, elo, ehi), mo = lane_range(jb, olo, ohi);
#pragma GCC unroll 6
        for (int c = 0; c < C; ++c) e[c] = _mm256_and_ps(e[c], me), o[c] = _mm256_and_ps(o[c], mo);
      }
#pragma GCC unroll 6
      for (int c = 0; c < C; ++c) {
        _mm256_storeu_ps(even + c * cs + jb, e[c]);
        _mm256_storeu_ps(odd + c * cs + jb, o[c]);
      }
    }
    return;
  }
  if (j1 - j0 >= L) {
    const int64_t done =
        split_pairs_c<C>(src + (2 * j0 - pl) * C, j1 - j0, even + j0, odd + j0, cs);
    if (j0 + done < j1)
      split_pairs_c<C>(src + (2 * (j1 - L) - pl) * C, L, even + j1 - L, odd + j1 - L, cs);
    lo = j0, hi = j1;
  }
  for (int64_t j = 0; j < lo; ++j) one(j);
  for (int64_t j = hi; j < p; ++j) one(j);
}

// dst[co*cs + ox] = src[ox*C + co] for ox < ow, and 0 at ox = ow.
// C = 6, 16 pixels: the pairs' even and odd registers interleaved back into pixel order.
inline void split16_6(const float* src, float* dst, int64_t cs) {
  __m256 pr[12];
  pairs6(src, pr);
#pragma GCC unroll 6
  for (int c = 0; c < 6; ++c) {
    const __m256 lo = _mm256_unpacklo_ps(pr[c], pr[6 + c]);  // pixels 0-3 | 8-11
    const __m256 hi = _mm256_unpackhi_ps(pr[c], pr[6 + c]);  // pixels 4-7 | 12-15
    _mm256_storeu_ps(dst + c * cs, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(dst + c * cs + L, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
}

template <int C>
void split_dy_row(const float* src, int64_t ow, float* dst, int64_t cs, const float* dyend) {
  int64_t k = 0;
  // Whole registers where the reads stay inside dy (the floats past ow land in the next
  // row's place, written after, and column ow is zeroed below).
  constexpr int64_t kBlock = C == 6 ? 2 * L : L;
  const int64_t nv = (ow + kBlock - 1) / kBlock * kBlock;
  if (src + nv * C <= dyend) {
    for (; k < nv; k += kBlock) {
      if constexpr (C == 6) {
        split16_6(src + k * C, dst + k, cs);
      } else {  // Split3: two blends and a vpermps a plane (pixel_transpose::split<3>: more)
        vec in[3], out[3];
#pragma GCC unroll 3
        for (int c = 0; c < 3; ++c) in[c] = load(src + k * C + c * L);
        stride2::Split3::split(in, out);
#pragma GCC unroll 3
        for (int c = 0; c < 3; ++c) store(dst + c * cs + k, out[c]);
      }
    }
    k = ow;
  }
  if (k < ow && C == 6 && ow >= 2 * L) {
    for (; k + 2 * L <= ow; k += 2 * L) split16_6(src + k * C, dst + k, cs);
    if (k < ow) split16_6(src + (ow - 2 * L) * C, dst + ow - 2 * L, cs);
    k = ow;
  } else if (k < ow && ow >= L) {
    k = pixel_transpose::split_rows<C>(src, ow, dst, cs);
    if (k < ow) pixel_transpose::split_rows<C>(src + (ow - L) * C, L, dst + ow - L, cs);
    k = ow;
  }
  for (; k < ow; ++k)
#pragma GCC unroll 6
    for (int co = 0; co < C; ++co) dst[co * cs + k] = src[k * C + co];
#pragma GCC unroll 6
  for (int co = 0; co < C; ++co) dst[co * cs + ow] = 0.f;
}

// vacc[((ky*3 + kx)*C + ci)*C + co] += the lane sums of one item. x plane (a, phase, ci) at
// xb + ((a*2 + phase)*C + ci)*XS, dy plane co at dp + co*DS, rows of P floats; nq floats, a
// multiple of 8.
template <int C, typename Prefetch>
void item_sums(const float* xb, int64_t XS, const float* dp, int64_t DS, int64_t P, int64_t nq,
               vec* vacc, Prefetch&& prefetch) {
  constexpr int CB = 3;
  static_assert(C % CB == 0, "whole blocks");
  for (int ci = 0; ci < C; ++ci)
    for (int ky = 0; ky < 3; ++ky) {
      const int a = ky % 2;
      const float* e = xb + ((a * 2) * C + ci) * XS + (ky / 2) * P;
      const float* o = xb + ((a * 2 + 1) * C + ci) * XS + (ky / 2) * P;
      for (int c0 = 0; c0 < C; c0 += CB) {
        vec acc[3][CB];
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 3
          for (int c = 0; c < CB; ++c) acc[kx][c] = vec{};
        const float* dr = dp + c0 * DS;
        for (int64_t q = 0; q < nq; q += L) {
          prefetch();
          vec d[CB];
#pragma GCC unroll 3
          for (int c = 0; c < CB; ++c) d[c] = load(dr + c * DS + q);
          const vec x0 = load(e + q), x1 = load(o + q), x2 = load(e + q + 1);
#pragma GCC unroll 3
          for (int c = 0; c < CB; ++c) {
            acc[0][c] += x0 * d[c];
            acc[1][c] += x1 * d[c];
            acc[2][c] += x2 * d[c];
          }
        }
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 3
          for (int c = 0; c < CB; ++c) vacc[((ky * 3 + kx) * C + ci) * C + c0 + c] += acc[kx][c];
      }
    }
}

template <int C>
void weights_c(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  const int64_t H = g.h, W = g.w, OH = g.oh, OW = g.ow, pt = g.win.pt, pl = g.win.pl;
  const int64_t P = OW + 1;
  const Items items(g.n, OH, P, C, kItemFloats);
  // Reads run up to nq + P + 1 floats past a plane's first row (ky = 2, kx = 2).
  const int64_t XS = (items.rows_max + 2) * P + 2 * L, DS = (items.rows_max + 1) * P + 2 * L;
  const int threads =
      g.n * OH * OW * 9 * C * C < kParallelWork ? 1 : std::max(1, get_num_threads());
  const bool far = 4 * g.n * H * W * C >= kPrefetchFrom;
  constexpr int64_t wsize = 9 * C * C, psize = wsize + C;
  std::vector<double> part((size_t)(threads * psize), 0.0);
  int used = 1;
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    std::vector<float> xbuf, dbuf;
    std::vector<vec> vacc;
    std::vector<double> dacc;
    errors.run([&] {
      // Zeroed once: the margins past an item's rows hold zeros or earlier items' (finite)
      // x floats, met only by zero dy.
      xbuf.assign((size_t)(4 * C * XS), 0.f);
      dbuf.assign((size_t)(C * DS), 0.f);
      vacc.assign((size_t)psize, vec{});
      dacc.assign((size_t)psize, 0.0);
    });
    int64_t pixels = 0;
    auto flush = [&] {
      for (int64_t e = 0; e < psize; ++e) {
        double s = 0.0;
        for (int i = 0; i < L; ++i) s += vacc[e][i];
        dacc[e] += s;
        vacc[e] = vec{};
      }
      pixels = 0;
    };
    // Row r of parity a's planes: input row iy of image n (zeros outside x).
    auto x_row = [&](int a, int64_t r, int64_t n, int64_t iy) {
      float* even = xbuf.data() + (a * 2) * C * XS + r * P;
      float* odd = even + C * XS;
      if (iy < 0 || iy >= H) {
        for (int ci = 0; ci < C; ++ci) {
          std::memset(even + ci * XS, 0, sizeof(float) * P);
          std::memset(odd + ci * XS, 0, sizeof(float) * P);
        }
        return;
      }
      split_x_row<C>(x + (n * H + iy) * W * C, W, pl, P, even, odd, XS, x, x + g.n * H * W * C);
    };
#pragma omp for schedule(static)
    for (int64_t i = 0; i < items.count; ++i) {
      if (errors.failed()) continue;
      int64_t n0, images, oy0, lines;
      items.at(i, n0, images, oy0, lines);
      for (int64_t m = 0; m < images; ++m) {
        const int64_t n = n0 + m, b = m * (lines + 1);
        for (int64_t l = 0; l < lines; ++l)
          split_dy_row<C>(dy + ((n * OH + oy0 + l) * OW) * C, OW, dbuf.data() + (b + l) * P, DS,
                          dy + g.n * OH * OW * C);
        for (int64_t l = 0; l <= lines; ++l) x_row(0, b + l, n, 2 * (oy0 + l) - pt);
        for (int64_t l = 0; l < lines; ++l) x_row(1, b + l, n, 2 * (oy0 + l) + 1 - pt);
        if (m + 1 < images)  // the separator: zero dy (parity 1's row there: finite floats)
          for (int co = 0; co < C; ++co)
            std::memset(dbuf.data() + co * DS + (b + lines) * P, 0, sizeof(float) * P);
      }
      const int64_t rows = images * (lines + 1) - 1, nq = (rows * P + L - 1) / L * L;
      for (int co = 0; co < C; ++co)
        std::memset(dbuf.data() + co * DS + rows * P, 0, sizeof(float) * (nq - rows * P));
      // The bias gradient: two chains a plane.
      for (int co = 0; co < C; ++co) {
        const float* dp = dbuf.data() + co * DS;
        vec s0 = vacc[wsize + co], s1{};
        int64_t q = 0;
        for (; q + 2 * L <= nq; q += 2 * L) {
          s0 += load(dp + q);
          s1 += load(dp + q + L);
        }
        if (q < nq) s0 += load(dp + q);
        vacc[wsize + co] = s0 + s1;
      }
      // The next item's x and dy into L2 while this one computes, from 1 MiB of x: without
      // it the split waited on x's loads (perf, N=256 28x28 C=6: split_x_row 29% of the
      // samples, on its loads; with it 0.82 of the time at 28x28, 0.57 at 56x56). From 0
      // bytes it lost below (N=256 14x14 C=3 1.15, 7x7 C=6 1.20, N=32 28x28 C=6 1.29).
      stride2::LinePrefetch<> px, pd;
      if (far && i + 1 < items.count) {
        int64_t n1, images1, oy1, lines1;
        items.at(i + 1, n1, images1, oy1, lines1);
        const int64_t r0 = std::max<int64_t>(0, 2 * oy1 - pt);
        const int64_t r1 = std::min(H, 2 * (oy1 + lines1) + 1 - pt);
        const int64_t steps = C * 3 * (C / 3) * (nq / L);
        if (items.whole) {
          px.set(x + n1 * H * W * C, x + (n1 + images1) * H * W * C, steps);
        } else {
          px.set(x + (n1 * H + r0) * W * C, x + (n1 * H + std::max(r0, r1)) * W * C, steps);
        }
        pd.set(dy + (n1 * OH + oy1) * OW * C, dy + (n1 * OH + oy1 + images1 * lines1) * OW * C,
               steps);
      }
      if (far)
        item_sums<C>(xbuf.data(), XS, dbuf.data(), DS, P, nq, vacc.data(), [&] {
          px.step();
          pd.step();
        });
      else
        item_sums<C>(xbuf.data(), XS, dbuf.data(), DS, P, nq, vacc.data(), [] {});
      pixels += images * lines * OW;
      if (pixels >= kFlushPixels) flush();
    }
    if (!errors.failed()) {
      flush();
      for (int64_t e = 0; e < psize; ++e) part[t * psize + e] = dacc[e];
    }
  });
  errors.rethrow();
  for (int64_t e = 0; e < psize; ++e) {
    double s = 0.0;
    for (int tt = 0; tt < used; ++tt) s += part[tt * psize + e];
    if (e < wsize) dw[e] = (float)s;
    else if (db) db[e - wsize] = (float)s;
  }
}

}  // namespace

bool s2w_avx2_shape(const ConvGeometry& g) {
  const Window2d& v = g.win;
  // C = 3 runs on few_channel_s2w_rows3_avx2.cpp (the planes here, weights_c<3>, lost to
  // few_channel_s2_weights.cpp's from 50 columns and to the rows kernel everywhere).
  return g.groups == 1 && g.c == g.oc && (g.c == 3 || g.c == 6) && v.kh == 3 && v.kw == 3 &&
         v.sh == 2 && v.sw == 2 && v.dh == 1 && v.dw == 1 && v.pt >= 0 && v.pt <= 2 &&
         v.pl >= 0 && v.pl <= 2 && g.n > 0 && g.h > 0 && g.w > 0 && g.oh > 0 && g.ow > 0;
}

bool s2w_avx2_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                      float* db) {
  if (!s2w_avx2_shape(g)) return false;
  if (g.c == 3) return s2w_rows3_avx2(g, dy, x, dw, db);
  if (s2w_rows6_avx2(g, dy, x, dw, db)) return true;
  weights_c<6>(g, dy, x, dw, db);
  return true;
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool s2w_avx2_shape(const ConvGeometry&) { return false; }
bool s2w_avx2_weights(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

}  // namespace fastconv::cpu::detail

#endif
