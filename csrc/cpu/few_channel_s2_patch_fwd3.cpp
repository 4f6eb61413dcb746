// The forward of 3x3 stride-2 convs with C = 3 in and out, straight from the NHWC rows
// (AVX-512): 16 output pixels of a row at once, their patches transposed in registers.
//
// Why: on the column-phase planes (few_channel_s2_planes.cpp) the C = 3 forward packed x into
// 18 planes per block before its 27 loads and 81 multiply-adds per 16 outputs; the sweep
// (sweep_2026-12-07d_zen4.md) had N=256 112x112 at 0.26, 56x56 0.34, 28x28 0.33, N=32 56x56
// 0.32, 112x112 0.35 (threshold 0.37).
//
// Here, per output row and block of 16 output columns ox0.., the 33 input columns
// 2*ox0 - pl .. 2*ox0 - pl + 32 of each of the 3 input rows are loaded as 6 vectors (32
// pixels, masked at the image's edges: the padding is never read) plus the last pixel;
// pixel_transpose::split<3> makes them 2 planar vectors per channel, and two-source permutes
// pick the even columns (kx = 0), odd (kx = 1) and even one on (kx = 2, the last pixel
// inserted into lane 15): 9 vectors a row, lane j = patch element of output pixel ox0 + j.
// Each is multiplied by the 3 output channels' broadcast weights into accumulator sets of 3
// (one-row items: a set per ky, 9 chains of 9; row pairs: two sets an output row; not 3
// latency-bound chains of 27), summed, bias added, merged to
// NHWC (pixel_transpose::merge<3>) and stored whole (the last block of a row from the row's
// end, overlapping; rows under 16 columns through a masked store). Input rows outside x are
// skipped, so a non-finite weight would not meet the padding (the reference multiplies the
// zeros: 0 * inf): such calls stay on the planes, as in few_channel_s2_patch_fwd.cpp.
// For an x of 16 MiB or more the new input rows of the output row two on are prefetched a
// line per 16-float vector into L2 (see pref); under it the items are pairs of output rows,
// the shared middle input row split once.
// Paired against the planes (benchmarks/ab_s2c.py, 1 thread, CPU time, Zen 4 at load 4-5),
// ms before/after: N=256 112x112 5.09/3.26, 56x56 0.953/0.600, 28x28 0.268/0.170, N=32
// 112x112 0.447/0.316, 56x56 0.120/0.078; every sweep size (7..112, N 1/32/256) 0.63-0.85.
// Not kept: kx = 2 from a masked one-float load and valignd (1.06-1.15 of the time), row
// pairs with the prefetch (into L1 1.21-1.57, into L2 1.07-1.09 at N=256 112x112), the L2
// prefetch from 4 MiB (N=256 56x56 1.11, N=32 112x112 1.13 of the row pairs' time).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/few_channel_s2_blocks.h"
#include "cpu/few_channel_s2_patch.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

constexpr int C = 3;
constexpr int L = 16;
using pvec = pixel_transpose::vec;

inline __m512 mload(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }

struct Idx {
  __m512i even, odd, two;
  Idx() {
    alignas(64) int32_t e[16], o[16], t[16];
    for (int j = 0; j < 16; ++j) e[j] = 2 * j, o[j] = 2 * j + 1, t[j] = std::min(2 * j + 2, 31);
    even = _mm512_load_si512(e);
    odd = _mm512_load_si512(o);
    two = _mm512_load_si512(t);
  }
};

// Block masks: m[k] for the 16 floats k*16.. of the 32 pixels (k < 6), m[6] for the 33rd
// pixel's 3 floats; all-ones inside the image.
struct BlockMask {
  __mmask16 m[7];
};

// One input row's contribution: acc[co] += sum over (kx, ci) of patch * w[ky][kx][ci][co].
template <bool FULL, bool TWO>
__attribute__((always_inline)) inline void row(const float* p, const BlockMask& bm,
                                               const Idx& ix, const float* wk, __m512 (&acc)[C],
                                               const float* wk2, __m512 (&acc2)[C]) {
  pvec in[2][3], pl[2][3];
#pragma GCC unroll 6
  for (int k = 0; k < 6; ++k)
    in[k / 3][k % 3] = (pvec)(FULL ? _mm512_loadu_ps(p + 16 * k) : mload(bm.m[k], p + 16 * k));
  const __m512 last = mload(bm.m[6], p + 96);
  pixel_transpose::split<3>(in[0], pl[0]);
  pixel_transpose::split<3>(in[1], pl[1]);
#pragma GCC unroll 3
  for (int ci = 0; ci < C; ++ci) {
    const __m512 a = (__m512)pl[0][ci], b = (__m512)pl[1][ci];
    __m512 ph[3];
    ph[0] = _mm512_permutex2var_ps(a, ix.even, b);
    ph[1] = _mm512_permutex2var_ps(a, ix.odd, b);
    ph[2] = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(a, ix.two, b), (__mmask16)0x8000,
                                       _mm512_set1_epi32(ci), last);
#pragma GCC unroll 3
    for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 3
      for (int co = 0; co < C; ++co)
      {
        acc[co] = _mm512_fmadd_ps(ph[kx], _mm512_set1_ps(wk[(kx * C + ci) * C + co]), acc[co]);
        if constexpr (TWO)
          acc2[co] = _mm512_fmadd_ps(ph[kx], _mm512_set1_ps(wk2[(kx * C + ci) * C + co]), acc2[co]);
      }
  }
}

// u + v (one output row's two accumulator sets) merged to NHWC and stored: 16 pixels, or
// those of a narrower row (masks m).
__attribute__((always_inline)) inline void put(const __m512 (&u)[C], const __m512 (&v)[C],
                                               float* out, bool whole, const __mmask16* m) {
  pvec pa[C], o[C];
  for (int co = 0; co < C; ++co) pa[co] = (pvec)_mm512_add_ps(u[co], v[co]);
  pixel_transpose::merge<3>(pa, o);
  for (int j = 0; j < C; ++j) {
    if (whole) _mm512_storeu_ps(out + j * L, (__m512)o[j]);
    else _mm512_mask_storeu_ps(out + j * L, m[j], (__m512)o[j]);
  }
}

}  // namespace

bool s2_patch_forward3(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act) {
  if (g.c != C || !s2_patch_shape(g) || !all_finite(w, 9 * C * C)) return false;
  static const Idx ix;
  const int64_t W = g.w, H = g.h, OW = g.ow, OH = g.oh, pl = g.win.pl, pt = g.win.pt;
  const int64_t nb = (OW + L - 1) / L;
  // Block starts: every 16 columns, the last from the row's end when the row has 16 or more.
  std::vector<int64_t> start((size_t)nb);
  std::vector<BlockMask> masks((size_t)nb);
  std::vector<uint8_t> full((size_t)nb);
  for (int64_t k = 0; k < nb; ++k) {
    const int64_t ox0 = OW >= L ? std::min(k * L, OW - L) : 0;
    start[(size_t)k] = ox0;
    bool f = true;
    for (int v = 0; v < 7; ++v) {
      unsigned m = 0;
      for (int l = 0; l < (v < 6 ? 16 : 3); ++l) {
        const int64_t col = 2 * ox0 - pl + (v * 16 + l) / C;
        if (col >= 0 && col < W) m |= 1u << l;
      }
      masks[(size_t)k].m[v] = (__mmask16)m;
      if (v < 6 && m != 0xffffu) f = false;
    }
    full[(size_t)k] = f;
  }
  __m512 bias[C];
  for (int co = 0; co < C; ++co) bias[co] = _mm512_set1_ps(b ? b[co] : 0.f);
  const __mmask16 last_m[3] = {
      (__mmask16)((1u << std::min<int64_t>(16, OW * 3)) - 1),
      (__mmask16)((1u << std::clamp<int64_t>(OW * 3 - 16, 0, 16)) - 1),
      (__mmask16)((1u << std::clamp<int64_t>(OW * 3 - 32, 0, 16)) - 1)};
  const float* xend = x + g.n * H * W * C;
  const int64_t OP = (OH + 1) / 2;  // items: pairs of output rows
  // The prefetch of the next output row's input rows only for an x beyond the L3's share (16
  // MiB): paired against none, N=256 112x112 (38.5 MB) 0.73 of the time, but 56x56 (9.6 MB)
  // 1.10, 28x28 1.09, N=32 112x112 (4.8 MB) 1.02 (those with prefetches into L1). Into L2
  // (_MM_HINT_T1) N=256 112x112 took 0.90 of the L1 prefetch's time (two runs).
  const bool pref = (xend - x) * (int64_t)sizeof(float) >= (int64_t{16} << 20);
  // x beyond the L3's share: items of one output row, prefetching. Else (x in L3) items of
  // two output rows sharing the middle input row's split: paired against one row an item,
  // 0.90-0.93 of the time at N=256 56x56 and 28x28, N=32 56x56; with the prefetch (4 rows
  // ahead) N=256 112x112 took 1.21-1.57.
  if (pref) {
  parallel_region(s2blocks::threads_for(g), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < g.n * OH; ++it) {
      const int64_t n = it / OH, oy = it % OH;
      float* yr = y + it * OW * C;
      // The new input rows of the output row two on (in x's flat order: the next image's
      // when this is near its last), a line per vector of them, into L2 (paired against the
      // next output row's: 0.88-0.91 of the time at N=256 112x112; three on: 1.00).
      const float* pf[2];
      for (int r = 0; r < 2; ++r) pf[r] = x + (n * H + 2 * oy + 5 + r - pt) * W * C;
      const float* rp[3];
      bool in[3];
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t r = 2 * oy + ky - pt;
        in[ky] = r >= 0 && r < H;
        rp[ky] = x + (n * H + (in[ky] ? r : 0)) * W * C;
      }
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t ox0 = start[(size_t)k];
        const BlockMask& bm = masks[(size_t)k];
        // Three named accumulator sets (an indexed acc[ky] with the skipped rows stayed in
        // memory: perf showed the multiply-adds reading and writing the stack).
        __m512 a0[C], a1[C], a2[C];
        for (int co = 0; co < C; ++co)
          a0[co] = bias[co], a1[co] = _mm512_setzero_ps(), a2[co] = _mm512_setzero_ps();
        const float* wk = w;
        const int64_t shift = (2 * ox0 - pl) * C;
        if (full[(size_t)k]) {
          if (in[0]) row<true, false>(rp[0] + shift, bm, ix, wk, a0, wk, a0);
          if (in[1]) row<true, false>(rp[1] + shift, bm, ix, wk + 9 * C, a1, wk, a1);
          if (in[2]) row<true, false>(rp[2] + shift, bm, ix, wk + 18 * C, a2, wk, a2);
        } else {
          if (in[0]) row<false, false>(rp[0] + shift, bm, ix, wk, a0, wk, a0);
          if (in[1]) row<false, false>(rp[1] + shift, bm, ix, wk + 9 * C, a1, wk, a1);
          if (in[2]) row<false, false>(rp[2] + shift, bm, ix, wk + 18 * C, a2, wk, a2);
        }
        for (int r = 0; r < 2; ++r)
          for (int v = 0; v < 6; ++v) {
            const float* q = pf[r] + 2 * ox0 * C + 16 * v;
            if (q >= x && q < xend) _mm_prefetch((const char*)q, _MM_HINT_T1);
          }
        // Summed and stored here, not by put() (a1 + a2 first, then put: paired 1.06 of this
        // time at N=256 112x112, twice).
        pvec pa[C], o[C];
        for (int co = 0; co < C; ++co)
          pa[co] = (pvec)_mm512_add_ps(_mm512_add_ps(a0[co], a1[co]), a2[co]);
        pixel_transpose::merge<3>(pa, o);
        float* out = yr + ox0 * C;
        if (OW >= L) {
          for (int j = 0; j < C; ++j) _mm512_storeu_ps(out + j * L, (__m512)o[j]);
        } else {
          for (int j = 0; j < C; ++j) _mm512_mask_storeu_ps(out + j * L, last_m[j], (__m512)o[j]);
        }
      }
      if (act != Activation::Linear) activation_inplace(OW * C, yr, act);
    }
  });
    return true;
  }
  parallel_region(s2blocks::threads_for(g), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < g.n * OP; ++it) {
      // Two output rows an item: their 5 input rows, the middle one split once for both
      // (ky = 2 of the first, ky = 0 of the second).
      const int64_t n = it / OP, oy = 2 * (it % OP);
      const bool two = oy + 1 < OH;
      float* yr = y + (n * OH + oy) * OW * C;
      const float* rp[5];
      bool in[5];
      for (int r = 0; r < 5; ++r) {
        const int64_t ir = 2 * oy + r - pt;
        in[r] = ir >= 0 && ir < H && (r < 3 || two);
        rp[r] = x + (n * H + (in[r] ? ir : 0)) * W * C;
      }
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t ox0 = start[(size_t)k];
        const BlockMask& bm = masks[(size_t)k];
        const int64_t sh = (2 * ox0 - pl) * C;
        __m512 a0[C], a1[C], b0[C], b1[C];
        for (int co = 0; co < C; ++co)
          a0[co] = b0[co] = bias[co], a1[co] = b1[co] = _mm512_setzero_ps();
        constexpr int KY = 3 * C * C;  // one kernel row's weights
        if (full[(size_t)k]) {
          if (in[0]) row<true, false>(rp[0] + sh, bm, ix, w, a0, w, a0);
          if (in[1]) row<true, false>(rp[1] + sh, bm, ix, w + KY, a1, w, a1);
          if (in[2] && two) row<true, true>(rp[2] + sh, bm, ix, w + 2 * KY, a0, w, b0);
          else if (in[2]) row<true, false>(rp[2] + sh, bm, ix, w + 2 * KY, a0, w, a0);
          if (in[3]) row<true, false>(rp[3] + sh, bm, ix, w + KY, b1, w, b1);
          if (in[4]) row<true, false>(rp[4] + sh, bm, ix, w + 2 * KY, b0, w, b0);
        } else {
          if (in[0]) row<false, false>(rp[0] + sh, bm, ix, w, a0, w, a0);
          if (in[1]) row<false, false>(rp[1] + sh, bm, ix, w + KY, a1, w, a1);
          if (in[2] && two) row<false, true>(rp[2] + sh, bm, ix, w + 2 * KY, a0, w, b0);
          else if (in[2]) row<false, false>(rp[2] + sh, bm, ix, w + 2 * KY, a0, w, a0);
          if (in[3]) row<false, false>(rp[3] + sh, bm, ix, w + KY, b1, w, b1);
          if (in[4]) row<false, false>(rp[4] + sh, bm, ix, w + 2 * KY, b0, w, b0);
        }
        put(a0, a1, yr + ox0 * C, OW >= L, last_m);
        if (two) put(b0, b1, yr + (OW + ox0) * C, OW >= L, last_m);
      }
      if (act != Activation::Linear) activation_inplace((two ? 2 : 1) * OW * C, yr, act);
    }
  });
  return true;
}

#else

bool s2_patch_forward3(const ConvGeometry&, const float*, const float*, const float*, float*,
                       Activation) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
