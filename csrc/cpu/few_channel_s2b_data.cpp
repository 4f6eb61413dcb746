// The backward data pass of 3x3 stride-2 convs with C = 3 or 6 channels in and out and
// 'same'-like padding at the avx2 level: vectors along the flat NHWC dx rows (the
// depthwise_flat8 idea), no planes of dx and no merge.
//
// Why: on the planes (few_channel_s2_planes.cpp, backward_data_c; C = 3) each block of plane
// rows holds 4*C loads and 9*C*C multiply-adds per 8 pixel quads in 16 registers (12 data +
// 5 accumulators: spills), then merge_parities interleaves 2C planar rows back to NHWC per dx
// row: perf on the Zen 3 (1 thread, N=256 14x14 C=3) put 30% of the samples in the merge and
// most of the rest in the multiply-add loop around its spills; the sweep had the pass at
// 0.17-0.23 of the family's median (C = 6 runs the generic direct path at 16 registers:
// 0.165 at 7x7).
//
// Here lane l of the vector at float 8v of a dx row is dx pixel ix = (8v + l) / C, channel
// ci = (8v + l) % C. Padded column px = ix + pl takes, per kernel row ky, tap kx = px % 2
// from dy column jA = px / 2 ("A") and, for even px, kx = 2 from jA - 1 ("B"). Over 3
// vectors (24 floats, the period of C = 3 and 6) the jA of a vector span at most 3 dy
// columns, so for each dy channel co one unaligned load of 8 floats of that channel's planar
// dy row (dy split once per image) and two in-register permutes (vpermps) give the A and B
// values of every lane; the B values of odd px are cleared by a mask (an AND, not a zero
// weight, so a NaN in dy reaches only the dx pixels the reference gives it), likewise
// column -1 at ix = 0 when pl = 0. Weights are lane-patterned vectors per (phase, ky, co,
// A/B), memory operands of the multiply-adds. A column of vectors runs down the image: dy
// row i feeds padded dx rows 2i (ky = 0), 2i + 1 (ky = 1) and 2i + 2 (ky = 2, carried in a
// register to the next row), so each permute serves three rows: per output vector C
// permutes, C/2 ANDs and 3C multiply-adds (the planes: 2.25C multiply-adds, plus the
// merge). Every dx float is written once (masked store for the row's last partial vector).
// Non-finite weights hand back (the masked lanes would multiply them by 0). The next image's
// dx is prefetched for writing a few lines a vector column (without it N=256 28x28 C=3 took
// 0.83-0.90 of the planes' time, 56x56 0.94-1.08, C=6 28x28 1.15-1.33; with it 0.58-0.62,
// 0.73-0.76, 0.87-0.95).
//
// Paired against the build before (benchmarks/ab_s2c.py, 1 thread, CPU time, Zen 3 at avx2,
// 15 x 3 calls), time after / before: C=3 N=256 7x7 0.45, 14x14 0.73, 28x28 0.62, 56x56 0.73,
// 112x112 0.97, N=32 56x56 0.67, 112x112 0.94, N=1 112x112 0.74; C=6 N=256 7x7 0.50,
// 14x14 0.68, 20x20 0.75.
#include "cpu/few_channel_s2b.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/few_channel_s2.h"
#include "cpu/few_channel_s2_blocks.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)

namespace {

// The per-phase permute indices, masks and lane-patterned weights (phase ph: vector 3m + ph,
// floats 8ph .. 8ph + 7 of a 24-float period, 24 / C dx pixels, 12 / C dy columns).
template <int C>
struct Tables {
  alignas(32) int32_t ia[3][8];   // lane's A column - window start
  alignas(32) int32_t ib[3][8];   // B column - window start (odd px: any, masked)
  alignas(32) int32_t mb[3][8];   // all ones where the lane has a B tap (px even)
  alignas(32) int32_t mb0[8];     // vector 0: without column -1 (px = 0 when pl = 0)
  alignas(32) float w[3][3][C][2][8];  // [ph][ky][co][A, B]
  int64_t base[3];                // window start (dy column) of the phase in its period

  Tables(const float* wt, int64_t pl) {
    for (int ph = 0; ph < 3; ++ph) {
      const int64_t first = (8 * ph) / C;  // the phase's first pixel in the period
      base[ph] = (first + pl) / 2 - 1;
      for (int l = 0; l < 8; ++l) {
        const int f = 8 * ph + l, p = f / C, ci = f % C;
        const int64_t q = p + pl, ja = q / 2;
        const bool even = q % 2 == 0;
        ia[ph][l] = (int32_t)(ja - base[ph]);
        ib[ph][l] = even ? (int32_t)(ja - 1 - base[ph]) : ia[ph][l];
        mb[ph][l] = even ? -1 : 0;
        if (ph == 0) mb0[l] = even && q > 0 ? -1 : 0;
        for (int ky = 0; ky < 3; ++ky)
          for (int co = 0; co < C; ++co) {
            w[ph][ky][co][0][l] = wt[((ky * 3 + (even ? 0 : 1)) * C + ci) * C + co];
            w[ph][ky][co][1][l] = even ? wt[((ky * 3 + 2) * C + ci) * C + co] : 0.f;
          }
      }
    }
  }
};

// Vectors [v0, v1) of every dx row of one image, from its planar dy T (channel co at
// T + co*ps, row i at i*OW), the last vector first. A row's last, partial vector is stored
// whole when `spill` (one thread has the image's every column) and the 8 floats stay
// inside the image: its extra lanes land on the next row's first floats, which vector 0
// (or, for rows under 8 floats, the next rows of this pass) writes later. A masked store
// (vmaskmovps) or a mask built on the stack per vector took ~25% of the time (perf, N=256
// 14x14 C=3: 42 floats a row).
template <int C>
void columns(const ConvGeometry& g, const Tables<C>& tb, const float* T, int64_t ps, int64_t v0,
             int64_t v1, bool spill, stride2::LinePrefetch<true>& pf, float* dx) {
  const int64_t OH = g.oh, OW = g.ow, H = g.h, rowf = g.w * C, pt = g.win.pt;
  constexpr int64_t DG = 12 / C;  // dy columns a period
  for (int64_t v = v1 - 1; v >= v0; --v) {
    pf.step();
    const int ph = (int)(v % 3);
    const int64_t off = (v / 3) * DG + tb.base[ph], f0 = 8 * v;
    const __m256i ia = _mm256_load_si256((const __m256i*)tb.ia[ph]);
    const __m256i ib = _mm256_load_si256((const __m256i*)tb.ib[ph]);
    const __m256 mb = _mm256_load_ps((const float*)(v == 0 ? tb.mb0 : tb.mb[ph]));
    const int64_t cnt = std::min<int64_t>(8, rowf - f0);
    // Rows from `whole_to` on take the partial vector by copy.
    const int64_t room = H * rowf - f0 - 8;  // floats after the vector of row 0
    const int64_t whole_to = cnt == 8 ? H : spill && room >= 0 ? room / rowf + 1 : 0;
    const float(*wk)[C][2][8] = tb.w[ph];
    auto put = [&](int64_t py, __m256 r) {
      const int64_t iy = py - pt;
      if (iy < 0 || iy >= H) return;
      float* p = dx + iy * rowf + f0;
      if (iy < whole_to) {
        _mm256_storeu_ps(p, r);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, r);
        std::memcpy(p, tmp, sizeof(float) * cnt);
      }
    };
    __m256 carry = _mm256_setzero_ps();
    for (int64_t i = 0; i < OH; ++i) {
      __m256 e0 = _mm256_setzero_ps(), e1 = e0, o0 = e0, o1 = e0, n0 = e0, n1 = e0;
#pragma GCC unroll 8
      for (int co = 0; co < C; ++co) {
        const __m256 win = _mm256_loadu_ps(T + co * ps + i * OW + off);
        const __m256 a = _mm256_permutevar8x32_ps(win, ia);
        const __m256 b = _mm256_and_ps(_mm256_permutevar8x32_ps(win, ib), mb);
        e0 = _mm256_fmadd_ps(a, _mm256_load_ps(wk[0][co][0]), e0);
        e1 = _mm256_fmadd_ps(b, _mm256_load_ps(wk[0][co][1]), e1);
        o0 = _mm256_fmadd_ps(a, _mm256_load_ps(wk[1][co][0]), o0);
        o1 = _mm256_fmadd_ps(b, _mm256_load_ps(wk[1][co][1]), o1);
        n0 = _mm256_fmadd_ps(a, _mm256_load_ps(wk[2][co][0]), n0);
        n1 = _mm256_fmadd_ps(b, _mm256_load_ps(wk[2][co][1]), n1);
      }
      put(2 * i, _mm256_add_ps(_mm256_add_ps(e0, e1), carry));
      put(2 * i + 1, _mm256_add_ps(o0, o1));
      carry = _mm256_add_ps(n0, n1);
    }
  }
}

// dy image (OH*OW pixels of C floats) to C planar rows at T + co*ps.
template <int C>
void split_image(const float* src, int64_t count, float* T, int64_t ps) {
  const int64_t k = pixel_transpose::split_rows<C>(src, count, T, ps);
  for (int64_t p = k; p < count; ++p)
    for (int co = 0; co < C; ++co) T[co * ps + p] = src[p * C + co];
}

template <int C>
void data_flat8(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Tables<C> tb(w, g.win.pl);
  const int64_t S = g.oh * g.ow, ps = S + 32, nvec = (g.w * C + 7) / 8;
  const bool parallel = s2blocks::threads_for(g) > 1;
  const bool ahead = 4 * g.n * g.h * g.w * C >= stride2::kPrefetchFromBytes;
  // One image on several threads: column ranges of it (each stages the image's dy again).
  const int64_t parts = g.n == 1 && parallel ? std::min<int64_t>(8, std::max<int64_t>(1, nvec / 6)) : 1;
  split_lines(g.n, g.n * parts, parallel, [&](int64_t l0, int64_t l1) {
    if (l0 >= l1) return;
    std::vector<float> buf((size_t)(C * ps + 16), 0.f);
    float* T = buf.data() + 8;  // windows start up to one column before a row
    int64_t staged = -1;
    const int64_t image = g.h * g.w * C;
    stride2::LinePrefetch<true> pf;
    for (int64_t l = l0; l < l1; ++l) {
      const int64_t n = l / parts, part = l % parts;
      if (n != staged) split_image<C>(dy + n * S * C, S, T, ps), staged = n;
      // The next image's dx prefetched for writing while this one computes, a few lines a
      // vector column (as the planes' backward data does).
      if (ahead && parts == 1 && l + 1 < l1) pf.set(dx + (n + 1) * image, dx + (n + 2) * image, nvec);
      else pf.clear();
      columns<C>(g, tb, T, ps, nvec * part / parts, nvec * (part + 1) / parts, parts == 1, pf,
                 dx + n * g.h * g.w * C);
    }
  });
}

}  // namespace

// C = 6 from 28 columns is multiply-add bound on either path, and here the lanes of odd
// columns idle on the B taps (3C multiply-adds per output vector against the direct path's
// 2.25C): paired, 1 thread, CPU time, N=256 28x28 0.87-0.95, 56x56 1.11, N=32 28x28 1.05,
// 112x112 1.03 of the direct path's time, against 0.50 at 7x7, 0.68 at 14x14, 0.75 at 20x20,
// 0.83-0.87 at 22..26 (N=32 24x24 0.86-1.01). C = 3 wins or draws at every width (the
// planes' merge and spills: 0.45 at 7x7 .. 0.94-0.97 at 112x112).
constexpr int64_t kMaxWidth6 = 26;

bool s2b_data_flat8(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Window2d& v = g.win;
  const bool eligible = g.groups == 1 && g.c == g.oc && (g.c == 3 || g.c == 6) && v.kh == 3 &&
                        v.kw == 3 && v.dh == 1 && v.dw == 1 && v.sh == 2 && v.sw == 2 &&
                        v.pt >= 0 && v.pt <= 1 && v.pl >= 0 && v.pl <= 1 && g.n > 0 &&
                        g.h > 0 && g.w > 0 && g.oh >= 1 && g.ow >= 1 &&
                        (v.pl + g.w - 1) / 2 + 1 == g.ow && (v.pt + g.h - 1) / 2 + 1 == g.oh &&
                        g.c * g.oh * g.ow <= (int64_t(1) << 18) &&  // the staged dy: 1 MiB
                        (g.c == 3 || g.w <= kMaxWidth6);
  if (!eligible || !all_finite(w, 9 * g.c * g.c)) return false;
  if (g.c == 3) data_flat8<3>(g, dy, w, dx);
  else data_flat8<6>(g, dy, w, dx);
  return true;
}

#else

bool s2b_data_flat8(const ConvGeometry&, const float*, const float*, float*) { return false; }

#endif

}  // namespace fastconv::cpu::detail
