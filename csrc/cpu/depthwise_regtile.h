// Depthwise 3x3, stride 1, undilated, below AVX-512 (avx2 and baseline levels): one output
// row in register tiles of kRegTile output columns x one register of channels (f32xR: 8
// lanes at avx2, 4 at baseline), called by depthwise.cpp's gather_row for the forward and the
// stride-1 backward data (its head comment has the pass as a whole).
//
// Why: the 16-lane tiles (tile3) are sized for 32 zmm registers. At avx2 a 16-lane vector is
// two ymm of 16, and tile3's 9 weight vectors + 6 accumulators (2 columns) took 30 ymm, so
// GCC spilled and reloaded them around every FMA: N=1 112x112x64 ran at 34 GFLOP/s of the
// ~105 that sgemm reaches (the sweep of 07h). Here, per tile and channel register, P = 8
// accumulators (8 independent FMA chains: 2 FMA pipes x 4 cycles of latency), and per kernel
// row its 3 weights and the P + 2 input columns, each column loaded once and used by the up
// to 3 outputs that read it: 13 of the 16 registers, 3 * (P + 5) = 39 loads for 9 * P = 72
// FMAs, so the FMA pipes are the bound, not the loads. A tile walks every channel register
// in turn before the next tile, so the loads go along memory as in tile3_all.
// Sums: bias, then the taps in (ky, kx) order, one chain per output (tile3 adds three
// per-row chains at the end): the same terms, float rounding apart.

#pragma once
#include <algorithm>

#include "cpu/depthwise_gather.h"

namespace fastconv::cpu::detail {

namespace {

#if !defined(__AVX512F__)
constexpr int kRegTile = 8;

// Loads / stores of n <= kRegLanes floats: Full plain, else through a zeroed register.
template <bool Full>
inline f32xR ldR(const float* p, int n) {
  if constexpr (Full) {
    (void)n;
    return loadR(p);
  } else {
    f32xR v{};
    std::memcpy(&v, p, sizeof(float) * (size_t)n);
    return v;
  }
}
template <bool Full>
inline void stR(float* p, f32xR v, int n) {
  if constexpr (Full) {
    (void)n;
    storeR(p, v);
  } else {
    std::memcpy(p, &v, sizeof(float) * (size_t)n);
  }
}

// Output columns [ox, ox + P) of one row, channels [c0, c0 + n): out = b + sum of the 9 taps.
// Checked: some input columns of the tile lie outside [0, iw) and read as zero vectors.
template <int SW, int P, bool Checked, bool Full>
__attribute__((always_inline)) inline void regtile3(const Gather& q, const float* const* rows, const float* w,
                                                    const float* bias, int64_t c0, int n, int64_t ox, float* out) {
  constexpr int kCols = (P - 1) * SW + 3;
  const int64_t C = q.c, ix0 = ox * SW - q.pl;
  const f32xR b = bias ? ldR<Full>(bias + c0, n) : f32xR{};
  f32xR acc[P];
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p) acc[p] = b;
#pragma GCC unroll 3
  for (int ky = 0; ky < 3; ++ky) {
    const f32xR w0 = ldR<Full>(w + (3 * ky) * C + c0, n), w1 = ldR<Full>(w + (3 * ky + 1) * C + c0, n),
                w2 = ldR<Full>(w + (3 * ky + 2) * C + c0, n);
    const float* r = rows[ky] + c0 + ix0 * C;
    // Column j feeds output (j - kx) / SW through tap kx where that divides; for each
    // output the taps arrive in kx order.
#pragma GCC unroll 32
    for (int j = 0; j < kCols; ++j) {
      const f32xR col = !Checked || (ix0 + j >= 0 && ix0 + j < q.iw) ? ldR<Full>(r + j * C, n) : f32xR{};
      if (j >= 2 && (j - 2) % SW == 0 && (j - 2) / SW < P) acc[(j - 2) / SW] += col * w2;
      if (j >= 1 && (j - 1) % SW == 0 && (j - 1) / SW < P) acc[(j - 1) / SW] += col * w1;
      if (j % SW == 0 && j / SW < P) acc[j / SW] += col * w0;
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p) stR<Full>(out + (ox + p) * C + c0, acc[p], n);
}

// Columns [ox, ox + P) of one row, every channel register in turn, each requesting its share
// of the next row's new input when that comes from memory (pf.far, as tile3_all).
template <int SW, int P, bool Checked>
void regtile3_all(const Gather& q, const float* const* rows, const float* w, const float* bias,
                  const RowPrefetch& pf, int64_t ox, float* out) {
  const int64_t nb = (q.c + kRegLanes - 1) / kRegLanes, units = q.ow * nb;
  int64_t c0 = 0, u = ox * nb;
  for (; c0 + kRegLanes <= q.c; c0 += kRegLanes, u += P) {
    if (pf.far) pf.slice(u, u + P, units);
    regtile3<SW, P, Checked, true>(q, rows, w, bias, c0, kRegLanes, ox, out);
  }
  if (c0 < q.c) {
    if (pf.far) pf.slice(u, u + P, units);
    regtile3<SW, P, Checked, false>(q, rows, w, bias, c0, (int)(q.c - c0), ox, out);
  }
}

// One output row of a 3x3, stride-SW, undilated pass (no activation: below AVX-512 the
// activations run on the row after it, act_in_register).
template <int SW>
void regtile_row3(const Gather& q, const float* const* rows, const float* w, const float* bias,
                  const RowPrefetch& pf, float* out) {
  for (int64_t ox = 0; ox < q.ow; ox += kRegTile) {
    const int p = (int)std::min<int64_t>(kRegTile, q.ow - ox);
    const bool checked = ox < q.lo || ox + p > q.hi;
    auto run = [&](auto pc) {
      constexpr int Pc = decltype(pc)::value;
      if (checked) regtile3_all<SW, Pc, true>(q, rows, w, bias, pf, ox, out);
      else regtile3_all<SW, Pc, false>(q, rows, w, bias, pf, ox, out);
    };
    switch (p) {
      case 1: run(std::integral_constant<int, 1>()); break;
      case 2: run(std::integral_constant<int, 2>()); break;
      case 3: run(std::integral_constant<int, 3>()); break;
      case 4: run(std::integral_constant<int, 4>()); break;
      case 5: run(std::integral_constant<int, 5>()); break;
      case 6: run(std::integral_constant<int, 6>()); break;
      case 7: run(std::integral_constant<int, 7>()); break;
      default: run(std::integral_constant<int, kRegTile>()); break;
    }
  }
}
#endif

}  // namespace

}  // namespace fastconv::cpu::detail
