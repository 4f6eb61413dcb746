// The backward data pass of 3x3 stride-2 convs with C = 3 or 6 channels in and out and
// 'same'-like padding, straight from dy's NHWC pixels (AVX-512): images up to 15 dy
// columns (C = 3 from 5, C = 6 up to 8), and wider ones (up to 4096 dy pixels) from a dx
// of 4 MiB.
//
// Why: on the planes (few_channel_s2_planes.cpp, backward_data_c) every block of plane rows
// is one flat stream at pitch OW + 1 (a zero column per row) within one image: at 7x7 (OW =
// 4) an image's 4 plane rows are 20 positions, 2 vectors (324 multiply-adds each at C = 6)
// for 16 real positions, then its 7 dx rows merged one by one through a staging row (left
// pad 1). The sweep (sweep_2026-12-07e_zen4.md) had C=6 N=256 7x7 at 0.225 of the FMA
// ceiling (the whole sweep's worst case) and 14x14 at 0.268 (threshold 0.39).
//
// Here, when the plane grid is dy's own grid (J = OW pixel pairs per padded dx row, I = OH
// plane rows: 'same' padding), position q of the stream is dy pixel q itself, across rows
// and images: 16 consecutive dy pixels loaded (C registers of NHWC floats) and split to
// planar (pixel_transpose::split), and the 3 other taps of the pixel's 2x2 quad of dx
// pixels (dy one column left, one row up, both) are the same registers shifted by 1, OW and
// OW + 1 positions (two-source permutes of this and the previous vector), the lanes whose
// neighbour lies outside the image zeroed by masks (a table per position mod the image's
// OH*OW pixels). 9*C*C multiply-adds per vector give the 4 parity vectors (dx pixels
// (2i - pt + a, 2j - pl + b)) of each channel, merged per parity to NHWC (merge_pairs: the
// pixel pairs of a dx row) and stored straight into dx by masked stores, one run of
// positions of one plane row at a time (the lanes of the left pad and past the row dropped).
// Every dx pixel is written once (nothing zeroed first); the lanes zeroed by the masks meet
// only finite weights (s2_planes_backward_data checks them first), so NaN and inf in dy reach
// exactly the dx pixels the reference gives them. Threads take whole images (deterministic).
// From 16 dy columns (WIDE) the row above is a second load and split of dy (OW pixels back)
// and the next image's dx is prefetched for writing into L2 a few lines a vector (without it
// N=256 56x56 C=3 took 1.17 and 112x112 1.44 of the planes' time; with it 0.84-0.91 and
// 0.90-0.97; C=6 56x56 0.83-0.92, 112x112 0.93; N=32 112x112 0.92-1.02, a draw).
//
// Paired against the planes (benchmarks/ab_s2c.py, 1 thread, CPU time, Zen 4 at load 7-11),
// time after / before: C=6 N=256 7x7 0.41-0.47, 14x14 0.65-0.79, N=32 7x7 0.48, 14x14
// 0.62-0.72; C=3 N=256 14x14 0.63-0.71, 28x28 0.74-0.87, N=32 14x14 0.62-0.69, 28x28
// 0.69-0.80. C = 3 at 7x7 (4 columns, 16 positions a image: 81 multiply-adds against the
// merges and the masked stores of 8 runs) drew 0.99-1.05: left on the planes; C = 6 from 9
// to 15 columns too (N=256 28x28 0.99-1.21, 1.00 with the wide rows' prefetch; N=32
// 0.81-0.98). Tried, not kept: whole registers loaded without the mask arithmetic when in
// range (1.02-1.09).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "cpu/few_channel_s2.h"
#include "cpu/few_channel_s2_blocks.h"
#include "cpu/few_channel_s2_patch.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

using s2blocks::threads_for;
using stride2::L;
using stride2::vec;

// *p in every lane (a broadcast operand of the multiply-add, see few_channel_s2_planes.cpp).
inline vec bcast(const float* p) { return *p - vec{}; }

// The mask table has one entry per vector of an image's period (OH*OW / gcd(OH*OW, 16)
// vectors): at most kMaxPixels (16 KiB; 112x112 'same' has 3136 dy pixels). Wide rows from
// a dx of kWideFromBytes: paired against the planes, 1 thread, CPU time (Zen 4 at load
// 7-8), N=256 56x56 C=3 0.85, 112x112 0.94, C=6 0.89, 0.93, N=32 112x112 C=3 0.94, C=6
// 0.97, but N=32 56x56 0.98 (C=3) and 1.03 (C=6), and N=1 112x112 1.11-1.17 (the table).
constexpr int64_t kMaxPixels = 4096;
constexpr int64_t kWideFromBytes = int64_t(4) << 20;

inline vec shifted(__mmask16 m, vec prev, __m512i idx, vec cur) {
  return (vec)_mm512_maskz_permutex2var_ps(m, (__m512)prev, idx, (__m512)cur);
}

inline __m512i shift_index(int64_t s) {  // lane l <- position l - s of (prev, cur)
  return _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                          _mm512_set1_epi32((int)(L - s)));
}

// L pixels of dy from src + q*C (positions q < 0 or >= end: zeros) split to planar.
template <int C>
inline void load_split(const float* src, int64_t q, int64_t end, vec (&out)[C]) {
  vec in[C];
  const int64_t lo = std::max<int64_t>(-q * C, 0), hi = (std::min<int64_t>(end, q + L) - q) * C;
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    const int64_t a = std::max<int64_t>(lo - c * L, 0), b = std::min<int64_t>(hi - c * L, L);
    in[c] = a == 0 && b == L ? stride2::load(src + q * C + c * L)
            : a < b ? (vec)_mm512_maskz_loadu_ps((__mmask16)(((1u << b) - 1) & ~((1u << a) - 1)),
                                                 src + q * C + c * L)
                    : vec{};
  }
  pixel_transpose::split<C>(in, out);
}

// WIDE (OW + 1 > L): the row above loaded and split again (up[], its previous vector pup[]),
// and the next image's dx prefetched into L2 while an image computes, a few lines a vector.
template <int C, bool WIDE>
void data_flat(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const int64_t OH = g.oh, OW = g.ow, S = OH * OW, H = g.h, W = g.w;
  const int64_t pt = g.win.pt, pl = g.win.pl;
  // Lane masks of vector k of an image-aligned stream: bit l of the low half set where
  // position 16k + l has a left neighbour in its row, of the high half an upper one.
  const int64_t period = S / std::gcd<int64_t>(S, L);
  std::vector<uint32_t> masks((size_t)period);
  for (int64_t k = 0, col = 0, row = 0; k < period; ++k) {  // (row, col) of position 16k + l
    uint32_t m = 0;
    for (int l = 0; l < L; ++l) {
      if (col) m |= 1u << l;
      if (row) m |= 1u << (16 + l);
      if (++col == OW) col = 0, row = row + 1 == OH ? 0 : row + 1;
    }
    masks[(size_t)k] = m;
  }
  const __m512i i1 = shift_index(1), iw = shift_index(OW), iw1 = shift_index(OW + 1);
  const int threads = threads_for(g);
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t n0 = g.n * t / T, n1 = g.n * (t + 1) / T;  // whole images a thread
    const int64_t total = (n1 - n0) * S;
    const float* src = dy + n0 * S * C;
    vec prev[C], cur[C], up[C], pup[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) prev[c] = pup[c] = up[c] = vec{};
    int64_t n = n0, i = 0, j = 0, k = 0;  // dy pixel and mask of the vector's first lane
    const int64_t image = H * W * C;
    stride2::LinePrefetch<true> pf;
    int64_t pf_image = -1;
    for (int64_t q0 = 0; q0 < total; q0 += L) {
      const int64_t left = std::min<int64_t>(L, total - q0);
      if constexpr (WIDE) {
        if (n != pf_image) {
          pf_image = n;
          if (n + 1 < n1) pf.set(dx + (n + 1) * image, dx + (n + 2) * image, (S + L - 1) / L);
          else pf.clear();
        }
        pf.step();
      }
      load_split<C>(src, q0, total, cur);
      if constexpr (WIDE) load_split<C>(src, q0 - OW, total, up);
      const uint32_t m = masks[(size_t)k];
      k = k + 1 == period ? 0 : k + 1;
      const __mmask16 mc = (__mmask16)m, mr = (__mmask16)(m >> 16), mrc = mc & mr;
      vec e0[C], o0[C], e1[C], o1[C];
#pragma GCC unroll 8
      for (int ci = 0; ci < C; ++ci) e0[ci] = o0[ci] = e1[ci] = o1[ci] = vec{};
      constexpr int CC = C * C;
#pragma GCC unroll 8
      for (int co = 0; co < C; ++co) {
        const vec d11 = cur[co], d10 = shifted(mc, prev[co], i1, cur[co]);
        vec d01, d00;
        if constexpr (WIDE) {
          d01 = (vec)_mm512_maskz_mov_ps(mr, (__m512)up[co]);
          d00 = shifted(mrc, pup[co], i1, up[co]);
        } else {
          d01 = shifted(mr, prev[co], iw, cur[co]);
          d00 = shifted(mrc, prev[co], iw1, cur[co]);
        }
#pragma GCC unroll 8
        for (int ci = 0; ci < C; ++ci) {
          const float* kk = w + ci * C + co;  // tap t: kk[t*C*C] (HWIO)
          e0[ci] += bcast(kk + 0 * CC) * d11;
          e0[ci] += bcast(kk + 2 * CC) * d10;
          e0[ci] += bcast(kk + 6 * CC) * d01;
          e0[ci] += bcast(kk + 8 * CC) * d00;
          o0[ci] += bcast(kk + 1 * CC) * d11;
          o0[ci] += bcast(kk + 7 * CC) * d01;
          e1[ci] += bcast(kk + 3 * CC) * d11;
          e1[ci] += bcast(kk + 5 * CC) * d10;
          o1[ci] += bcast(kk + 4 * CC) * d11;
        }
      }
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) prev[c] = cur[c], pup[c] = up[c];
      vec out[2][2 * C];
      {
        vec planar[2 * C];
#pragma GCC unroll 8
        for (int ci = 0; ci < C; ++ci) planar[ci] = e0[ci], planar[C + ci] = o0[ci];
        stride2::merge_pairs<C>(planar, out[0], true);
#pragma GCC unroll 8
        for (int ci = 0; ci < C; ++ci) planar[ci] = e1[ci], planar[C + ci] = o1[ci];
        stride2::merge_pairs<C>(planar, out[1], true);
      }
      // Runs of positions in one plane row: merged float f of the vector is dx row float
      // f + shift of row 2i - pt + a.
      for (int64_t r = 0, ri = i, rj = j, rn = n; r < left;) {
        const int64_t len = std::min(OW - rj, left - r);
        const int64_t shift = (2 * rj - pl) * C - 2 * C * r;
        const int64_t flo = std::max(2 * C * r, -shift);
        const int64_t fhi = std::min(2 * C * (r + len), W * C - shift);
        const int64_t iy = 2 * ri - pt;  // parity 0's row; parity 1's the next
        const bool s0 = iy >= 0 && iy < H, s1 = iy + 1 >= 0 && iy + 1 < H;
        if (flo < fhi && (s0 || s1)) {
          float* row = dx + ((rn * H + iy) * W) * C + shift;
          const int64_t v0 = flo / L, v1 = (fhi - 1) / L;
          for (int64_t v = v0; v <= v1; ++v) {
            unsigned mk = 0xffffu;
            if (v == v0) mk &= 0xffffu << (flo - v * L);
            if (v == v1) mk &= 0xffffu >> (v * L + L - fhi);
            if (s0) _mm512_mask_storeu_ps(row + v * L, (__mmask16)mk, (__m512)out[0][v]);
            if (s1) _mm512_mask_storeu_ps(row + W * C + v * L, (__mmask16)mk, (__m512)out[1][v]);
          }
        }
        r += len;
        rj += len;
        if (rj == OW) {
          rj = 0;
          if (++ri == OH) ri = 0, ++rn;
        }
      }
      j += L;
      while (j >= OW) {
        j -= OW;
        if (++i == OH) i = 0, ++n;
      }
    }
  });
}

}  // namespace

bool s2_data_flat(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Window2d& v = g.win;
  const bool eligible = g.groups == 1 && g.c == g.oc && (g.c == 3 || g.c == 6) && v.kh == 3 &&
                        v.kw == 3 && v.dh == 1 && v.dw == 1 && v.sh == 2 && v.sw == 2 &&
                        v.pt >= 0 && v.pl >= 0 && g.n > 0 && g.ow >= 1 &&
                        g.oh * g.ow <= kMaxPixels &&
                        g.oh >= 1 && (v.pl + g.w - 1) / 2 + 1 == g.ow &&
                        (v.pt + g.h - 1) / 2 + 1 == g.oh &&
                        (g.c == 6 ? g.ow <= 8 || g.ow + 1 > L : g.ow >= 5);
  if (!eligible) return false;
  const bool wide = g.ow + 1 > L;
  if (wide && 4 * g.n * g.h * g.w * g.c < kWideFromBytes) return false;
  if (g.c == 3) wide ? data_flat<3, true>(g, dy, w, dx) : data_flat<3, false>(g, dy, w, dx);
  else wide ? data_flat<6, true>(g, dy, w, dx) : data_flat<6, false>(g, dy, w, dx);
  return true;
}

#else

bool s2_data_flat(const ConvGeometry&, const float*, const float*, float*) { return false; }

#endif

}  // namespace fastconv::cpu::detail
