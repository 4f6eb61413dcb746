// Depthwise 3x3, stride 1 (and 2 at avx2 from C = 64), undilated, below AVX-512 (avx2,
// baseline): one output row in register tiles of kRegTile = 4 output columns x two registers
// of channels (f32xR: 8 lanes at avx2, 4 at baseline), called by depthwise.cpp's gather_row
// for the forward and the stride-1 backward data (its head comment has the pass as a whole).
//
// Why: the 16-lane tiles (tile3) are sized for 32 zmm registers. At avx2 a 16-lane vector is
// two ymm of 16, and tile3's 9 weight vectors + 6 accumulators (2 columns) took 30 ymm, so
// GCC spilled and reloaded them around every FMA: N=1 112x112x64 ran at 34 GFLOP/s of the
// ~105 that sgemm reaches (the sweep of 07h). Here, per tile and pair of channel registers,
// 8 accumulators (8 independent FMA chains: 2 FMA pipes x 4 cycles of latency), and per
// kernel row its 6 weights and the 6 x 2 input vectors, each loaded once and used by the up
// to 3 outputs that read it: 15 of the 16 registers (GCC 12 still spills a few a tile).
// A tile walks every pair of registers in turn before the next tile, so the loads go along
// memory as in tile3_all.
// Two registers (at avx2 a pixel's whole 64-byte line per store pair), not one register
// and 8 columns (the same 8 chains, fewer loads): paired in one process with x cycled
// through 8 copies (from L3, as a network's previous output), 8 x 1 was 1.19-1.45x
// slower than before at N=1 112x112x48/64, 4 x 2 0.75-1.0 there; 8 x 1 wrote each output
// line in two halves a channel block apart, and read 8 new pixels' lines per block.
// Tried, no clear gain: requests of the next tile's output (prefetchw) or new input
// columns (into L1), of the next row's new input into L2 from 1 MiB (RowPrefetch far).
// Stride 2 (MobileNet's downsampling steps, 2 * P + 1 columns a kernel row): at avx2 paired
// against the block walk (gather_block), forward + relu6, N=1 112x112x32 0.97, x64 0.79,
// 56x56x128 0.90, 28x28x256 0.62, 14x14x512 0.78, 7x7x1024 0.90 (C < 64: no clear gain);
// at baseline 1.0-1.46x slower: those keep the block walk (depthwise.cpp gather_row).
// Sums: bias, then the taps in (ky, kx) order, one chain per output (tile3 adds three
// per-row chains at the end): the same terms, float rounding apart.
// The channels past the last pair of registers: one register at a time, the last partial
// one through a zeroed register (memcpy: slow, but at most one register a tile).

#pragma once
#include <algorithm>

#include "cpu/depthwise_gather.h"

namespace fastconv::cpu::detail {

namespace {

#if !defined(__AVX512F__)
constexpr int kRegTile = 4;

#if defined(__AVX2__)
// Lanes [0, n) of a ymm register set (for vmaskmovps).
inline __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// Loads / stores of n <= kRegLanes floats: Full plain, else masked (zeros in the other lanes):
// at avx2 vmaskmovps; at baseline through a zeroed register (a memcpy of n floats: GCC calls
// memcpy for it, ~20 ns, and C = 3 at avx2 ran 24 ns a pixel that way).
template <bool Full>
inline f32xR ldR(const float* p, int n) {
  if constexpr (Full) {
    (void)n;
    return loadR(p);
  } else {
#if defined(__AVX2__)
    return (f32xR)_mm256_maskload_ps(p, lane_mask(n));
#else
    f32xR v{};
    std::memcpy(&v, p, sizeof(float) * (size_t)n);
    return v;
#endif
  }
}
template <bool Full>
inline void stR(float* p, f32xR v, int n) {
  if constexpr (Full) {
    (void)n;
    storeR(p, v);
  } else {
#if defined(__AVX2__)
    _mm256_maskstore_ps(p, lane_mask(n), (__m256)v);
#else
    std::memcpy(p, &v, sizeof(float) * (size_t)n);
#endif
  }
}

// Output columns [ox, ox + P) of one row, NR channel registers from c0 (n lanes in the last:
// Full, all kRegLanes): out = b + sum of the 9 taps. Checked: some input columns of the tile
// lie outside [0, iw) and read as zero vectors.
template <int SW, int P, int NR, bool Checked, bool Full>
__attribute__((always_inline)) inline void regtile3(const Gather& q, const float* const* rows, const float* w,
                                                    const float* bias, int64_t c0, int n, int64_t ox, float* out) {
  constexpr int kCols = (P - 1) * SW + 3;
  const int64_t C = q.c, ix0 = ox * SW - q.pl;
  auto ldn = [&](const float* p, int k) {  // register k of the group (the last may be partial)
    return k + 1 < NR ? ldR<true>(p + k * kRegLanes, kRegLanes) : ldR<Full>(p + k * kRegLanes, n);
  };
  f32xR acc[P][NR];
#pragma GCC unroll 4
  for (int k = 0; k < NR; ++k) {
    const f32xR b = bias ? ldn(bias + c0, k) : f32xR{};
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) acc[p][k] = b;
  }
#pragma GCC unroll 3
  for (int ky = 0; ky < 3; ++ky) {
    f32xR w0[NR], w1[NR], w2[NR];
#pragma GCC unroll 4
    for (int k = 0; k < NR; ++k)
      w0[k] = ldn(w + (3 * ky) * C + c0, k), w1[k] = ldn(w + (3 * ky + 1) * C + c0, k),
      w2[k] = ldn(w + (3 * ky + 2) * C + c0, k);
    const float* r = rows[ky] + c0 + ix0 * C;
    // Column j feeds output (j - kx) / SW through tap kx where that divides; for each
    // output the taps arrive in kx order.
#pragma GCC unroll 32
    for (int j = 0; j < kCols; ++j) {
#pragma GCC unroll 4
      for (int k = 0; k < NR; ++k) {
        const f32xR col = !Checked || (ix0 + j >= 0 && ix0 + j < q.iw) ? ldn(r + j * C, k) : f32xR{};
        if (j >= 2 && (j - 2) % SW == 0 && (j - 2) / SW < P) acc[(j - 2) / SW][k] += col * w2[k];
        if (j >= 1 && (j - 1) % SW == 0 && (j - 1) / SW < P) acc[(j - 1) / SW][k] += col * w1[k];
        if (j % SW == 0 && j / SW < P) acc[j / SW][k] += col * w0[k];
      }
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 4
    for (int k = 0; k < NR; ++k) {
      float* o = out + (ox + p) * C + c0 + k * kRegLanes;
      if (k + 1 < NR) stR<true>(o, acc[p][k], kRegLanes);
      else stR<Full>(o, acc[p][k], n);
    }
}

// Columns [ox, ox + P) of one row, every group of NR channel registers in turn, each
// requesting its share of the next row's new input when that comes from memory (pf.far, as
// tile3_all).
template <int SW, int P, int NR, bool Checked>
void regtile3_all(const Gather& q, const float* const* rows, const float* w, const float* bias,
                  const RowPrefetch& pf, int64_t ox, float* out) {
  constexpr int64_t kG = NR * kRegLanes;
  const int64_t nb = (q.c + kG - 1) / kG, units = q.ow * nb;
  int64_t c0 = 0, u = ox * nb;
  for (; c0 + kG <= q.c; c0 += kG, u += P) {
    if (pf.far) pf.slice(u, u + P, units);
    regtile3<SW, P, NR, Checked, true>(q, rows, w, bias, c0, kRegLanes, ox, out);
  }
  // The rest one register at a time (the last partial).
  for (; c0 < q.c; c0 += kRegLanes, u += P) {
    if (pf.far) pf.slice(u, u + P, units);
    if (c0 + kRegLanes <= q.c) regtile3<SW, P, 1, Checked, true>(q, rows, w, bias, c0, kRegLanes, ox, out);
    else regtile3<SW, P, 1, Checked, false>(q, rows, w, bias, c0, (int)(q.c - c0), ox, out);
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
      if (checked) regtile3_all<SW, Pc, 2, true>(q, rows, w, bias, pf, ox, out);
      else regtile3_all<SW, Pc, 2, false>(q, rows, w, bias, pf, ox, out);
    };
    switch (p) {
      case 1: run(std::integral_constant<int, 1>()); break;
      case 2: run(std::integral_constant<int, 2>()); break;
      case 3: run(std::integral_constant<int, 3>()); break;
      default: run(std::integral_constant<int, kRegTile>()); break;
    }
  }
}
#endif

}  // namespace

}  // namespace fastconv::cpu::detail
