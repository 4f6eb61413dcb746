// The depthwise weight pass's pair of rows (depthwise_weights.cpp's weights_pair: 3x3, stride
// and dilation 1, two consecutive output rows of one image) below AVX-512, in registers of
// the level (f32xR: 8 lanes at avx2, 4 at baseline).
//
// Why: weights_pair keeps 9 tap sums, the db sum and a sliding window of 4 x 2 input columns
// in 16-lane vectors: 20 zmm at AVX-512, but at avx2 each is two ymm of 16 (40), so GCC
// spilled and reloaded them around every FMA. Here the 9 + 1 sums and the two dy vectors are
// 12 registers; each of the 12 input columns a pixel reads (4 rows x 3 columns) is loaded
// once into the 13th and feeds the one or two sums that use it (row r is tap row r of the
// first output row, r - 1 of the second): 14 loads for 18 FMAs + 2 adds a pixel, so the FMA
// pipes are the bound. The columns are re-read from L1 rather than slid along in registers
// (the window would need 8 more).
// Weight pass alone (+ db), avx2, paired in one process (x and dy cycled through copies,
// 1 thread, CPU time), after / before: N=32 7x7x512 0.55, N=256 7x7x64 0.39, N=1 28x28x512
// 0.68, N=32 7x7x128 0.39, N=1 112x112x64 0.39, N=32 14x14x24 0.14 (row groups,
// weights_block3_regs), N=32 28x28x6 0.76.
// Sums per tap: over the pixels in order, first row's term then the second's, as
// weights_pair (whose per-pixel pair is (da * a) + (db * a') then added): the same terms,
// float rounding apart.

#pragma once
#include <algorithm>

#include "cpu/depthwise_regtile.h"  // ldR / stR: the level's masked loads and stores

namespace fastconv::cpu::detail {

namespace {

#if !defined(__AVX512F__)
// weights_pair's contract: x4 the pair's four input rows, dya / dyb its dy rows, channels
// [c0, c0 + n) (n <= kRegLanes); part[tap * cpad + c] += the tap's sums, dbpart[c] += the dy
// sums (whole registers: lanes >= n hold zeros, and cpad covers c0 + kRegLanes); pf's slice
// blk of `blocks` requested into L2, a line of each row per pixel.
template <bool Full>
void weights_pair_regs(const Gather& q, const float* const* x4, const float* dya, const float* dyb,
                       int64_t c0, int n, int64_t cpad, float* part, float* dbpart, const RowPrefetch& pf,
                       int64_t blk, int64_t blocks) {
  const int64_t C = q.c, base = c0 - q.pl * C;
  const int64_t pf_lo = pf.bytes * blk / blocks / 64 * 64, pf_hi = pf.bytes * (blk + 1) / blocks;
  int64_t pf_at = pf_lo;
  f32xR acc[9];
  for (auto& a : acc) a = f32xR{};
  f32xR s{};
  const float* r0 = x4[0] + base;
  const float* r1 = x4[1] + base;
  const float* r2 = x4[2] + base;
  const float* r3 = x4[3] + base;
  for (int64_t ox = q.lo; ox < q.hi; ++ox) {
    const f32xR da = ldR<Full>(dya + ox * C + c0, n), db = ldR<Full>(dyb + ox * C + c0, n);
    s += da;
    s += db;
    if (pf_at < pf_hi) {
      for (int k = 0; k < pf.n; ++k) __builtin_prefetch((const char*)pf.rows[k] + pf_at, 0, 2);
      pf_at += 64;
    }
    const int64_t o = ox * C;
#pragma GCC unroll 3
    for (int kx = 0; kx < 3; ++kx) {
      const int64_t ok = o + kx * C;
      acc[kx] += da * ldR<Full>(r0 + ok, n);
      const f32xR t1 = ldR<Full>(r1 + ok, n);
      acc[kx] += db * t1;
      acc[3 + kx] += da * t1;
      const f32xR t2 = ldR<Full>(r2 + ok, n);
      acc[3 + kx] += db * t2;
      acc[6 + kx] += da * t2;
      acc[6 + kx] += db * ldR<Full>(r3 + ok, n);
    }
  }
  auto edge = [&](int64_t ox, const float* const* r, const float* dyrow) {
    const f32xR d = ldR<Full>(dyrow + ox * C + c0, n);
    s += d;
    for (int64_t kx = 0; kx < 3; ++kx) {
      const int64_t ix = ox - q.pl + kx;
      if (ix < 0 || ix >= q.iw) continue;
      for (int64_t ky = 0; ky < 3; ++ky) acc[ky * 3 + kx] += d * ldR<Full>(r[ky] + ix * C + c0, n);
    }
  };
  for (int64_t e = 0; e < q.ow; ++e) {
    if (e == q.lo) e = std::max(q.lo, q.hi);
    if (e >= q.ow) break;
    edge(e, x4, dya);
    edge(e, x4 + 1, dyb);
  }
  for (int k = 0; k < pf.n && pf_at < pf_hi; ++k) prefetch_bytes<true>((const char*)pf.rows[k] + pf_at, pf_hi - pf_at);
  for (int i = 0; i < 9; ++i) storeR(part + i * cpad + c0, loadR(part + i * cpad + c0) + acc[i]);
  if (dbpart) storeR(dbpart + c0, loadR(dbpart + c0) + s);
}
// weights_block's contract for K = 3 (depthwise_weights.cpp: `k` output rows, rows[j] row j's
// 3 input row pointers, dyrows[j] its dy row; any stride and dilation), in registers of the
// level: 9 + 1 sums, the dy vector and one input column at a time (12 of 16), each tap's
// column loaded as it is used (weights_block's 3-column window would need 6 more).
template <bool Full>
void weights_block3_regs(const Gather& q, const float* const (*rows)[kMaxKh], const float* const* dyrows, int k,
                         int64_t c0, int n, int64_t cpad, float* part, float* dbpart) {
  const int64_t C = q.c, xs = q.sw * C, ts = q.dw * C, base = c0 - q.pl * C;
  f32xR acc[9];
  for (auto& a : acc) a = f32xR{};
  f32xR s{};
  for (int j = 0; j < k; ++j) {
    const float* const* r = rows[j];
    const float* dyrow = dyrows[j];
    const float* r0 = r[0] + base;
    const float* r1 = r[1] + base;
    const float* r2 = r[2] + base;
    for (int64_t ox = q.lo; ox < q.hi; ++ox) {
      const f32xR d = ldR<Full>(dyrow + ox * C + c0, n);
      s += d;
      const int64_t o = ox * xs;
#pragma GCC unroll 3
      for (int kx = 0; kx < 3; ++kx) {
        acc[kx] += d * ldR<Full>(r0 + o + kx * ts, n);
        acc[3 + kx] += d * ldR<Full>(r1 + o + kx * ts, n);
        acc[6 + kx] += d * ldR<Full>(r2 + o + kx * ts, n);
      }
    }
    auto edge = [&](int64_t ox) {
      const f32xR d = ldR<Full>(dyrow + ox * C + c0, n);
      s += d;
      for (int64_t kx = 0; kx < 3; ++kx) {
        const int64_t ix = ox * q.sw - q.pl + kx * q.dw;
        if (ix < 0 || ix >= q.iw) continue;
        for (int64_t ky = 0; ky < 3; ++ky) acc[ky * 3 + kx] += d * ldR<Full>(r[ky] + ix * C + c0, n);
      }
    };
    for (int64_t ox = 0; ox < q.lo; ++ox) edge(ox);
    for (int64_t ox = q.hi; ox < q.ow; ++ox) edge(ox);
  }
  for (int i = 0; i < 9; ++i) storeR(part + i * cpad + c0, loadR(part + i * cpad + c0) + acc[i]);
  if (dbpart) storeR(dbpart + c0, loadR(dbpart + c0) + s);
}
#endif

}  // namespace

}  // namespace fastconv::cpu::detail
