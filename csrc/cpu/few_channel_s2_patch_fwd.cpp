// The forward of 3x3 stride-2 convs with C = 6 in and out and fewer than 8 output columns,
// straight from the NHWC rows (AVX-512).
//
// Why: on the column-phase planes (few_channel_s2_planes.cpp) a 7x7 or 14x14 image (4 or 7
// output columns) is mostly per-image packing: 9 or 15 input rows split by whole registers of
// 16 column pairs for 4-8 pairs used, and the p2 copy stalled on the split's stores (perf, N=256
// 7x7: 22% of the pass); the sweep had N=256 7x7 at 0.19, 14x14 at 0.29 (threshold 0.37).
//
// Here an output pixel's three patch rows are loaded as in few_channel_s2_patch.cpp's weight
// pass (16 floats a row, and the rows' last 2 floats merged into one vector; masked loads: the
// padding is never read), each multiplied by the weight vectors of the 6 output channels (24
// multiply-adds a pixel into 6 lane accumulators), and 8 pixels' 48 accumulators summed into
// 3 NHWC vectors by a transpose-add tree (Tree: 4 levels of two-source permutes and adds,
// then one permute to NHWC order); bias added, stored whole (rows under 8 pixels through a
// copy). A non-finite weight would meet the masked (zero) lanes of the padding (0 * inf):
// such calls stay on the planes.
// Paired (benchmarks/ab_s2c.py, 1 thread, CPU time, Zen 4 at load 7-8, against the planes),
// N=256: 7x7 0.83-0.85, 14x14 0.64-0.81 of the time; from 8 output columns it lost or drew
// (28x28 1.02-1.05, 56x56 1.22 without and 0.88 with a row prefetch, N=32 112x112 1.05-1.16):
// the planes keep those.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/few_channel_s2_blocks.h"
#include "cpu/few_channel_s2_patch.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

using s2blocks::L;
using s2blocks::vec;

inline vec mload(__mmask16 m, const float* p) { return (vec)_mm512_maskz_loadu_ps(m, p); }

// Transpose-add tree of 16 vectors to one: level l (group size s = 8 >> l) turns a, b (groups
// of 2s lanes, item g of each) into groups of s lanes: a's items and b's interleaved.
struct Tree {
  __m512i i1[4], i2[4], fix;
  Tree() {
    std::vector<std::vector<int>> vecs(16);  // the items of each vector's groups, simulated
    for (int i = 0; i < 16; ++i) vecs[i] = {i};
    int cnt = 16;
    for (int l = 0; l < 4; ++l) {
      const int s = 8 >> l;
      alignas(64) int32_t a1[16], a2[16];
      for (int j = 0; j < 16; ++j) {
        const int grp = j / s, w = j % s;
        a1[j] = (grp % 2 ? 16 : 0) + (grp / 2) * 2 * s + w;
        a2[j] = a1[j] + s;
      }
      i1[l] = _mm512_load_si512(a1);
      i2[l] = _mm512_load_si512(a2);
      std::vector<std::vector<int>> nx;
      for (int v = 0; v < cnt; v += 2) {
        std::vector<int> g;
        for (size_t k = 0; k < vecs[v].size(); ++k)
          g.push_back(vecs[v][k]), g.push_back(vecs[v + 1][k]);
        nx.push_back(g);
      }
      vecs = nx;
      cnt /= 2;
    }
    alignas(64) int32_t f[16];
    for (int j = 0; j < 16; ++j)
      for (int q = 0; q < 16; ++q)
        if (vecs[0][j] == q) f[q] = j;
    fix = _mm512_load_si512(f);
  }
  template <int LV>
  vec combine(vec a, vec b) const {
    return (vec)_mm512_add_ps(_mm512_permutex2var_ps((__m512)a, i1[LV], (__m512)b),
                              _mm512_permutex2var_ps((__m512)a, i2[LV], (__m512)b));
  }
};

// Item i (0..15) of a set into the binary counter part[]; returns the reduced vector at i = 15.
template <int I>
inline void push(const Tree& t, vec* part, vec v) {
  if constexpr (I % 2 == 0) {
    part[0] = v;
  } else {
    v = t.combine<0>(part[0], v);
    if constexpr ((I >> 1) % 2 == 0) {
      part[1] = v;
    } else {
      v = t.combine<1>(part[1], v);
      if constexpr ((I >> 2) % 2 == 0) {
        part[2] = v;
      } else {
        v = t.combine<2>(part[2], v);
        if constexpr ((I >> 3) % 2 == 0) part[3] = v;
        else part[3] = t.combine<3>(part[3], v);
      }
    }
  }
}

constexpr int C = 6;

struct Px {
  const float* const* rows;
  const uint16_t* mask;
  const uint8_t* tail;
  const __mmask16* valid;
  const vec* wa;  // [ky*6 + co]
  const vec* wb;  // [co]
};

template <bool ALL_ROWS>
inline void pixel(const Px& P, int64_t ox, vec* acc) {
  const __mmask16 m = P.mask[ox];
  vec xv[3];
#pragma GCC unroll 3
  for (int ky = 0; ky < 3; ++ky)
    xv[ky] = mload(ALL_ROWS ? m : (__mmask16)(m & P.valid[ky]), P.rows[ky] + 2 * C * ox);
  vec t{};
#pragma GCC unroll 3
  for (int ky = 0; ky < 3; ++ky) {
    const unsigned rv = ALL_ROWS ? 0xffffu : P.valid[ky];
    const __mmask16 mt = (__mmask16)(P.tail[ox] & (3u << (2 * ky)) & rv);
    t = (vec)_mm512_mask_loadu_ps((__m512)t, mt, P.rows[ky] + 2 * C * ox + L - 2 * ky);
  }
#pragma GCC unroll 6
  for (int co = 0; co < C; ++co) {
    vec a = xv[0] * P.wa[co];
    a += xv[1] * P.wa[C + co];
    a += xv[2] * P.wa[2 * C + co];
    acc[co] = a + t * P.wb[co];
  }
}

// 8 pixels from ox: 48 sums in NHWC order to out (3 vectors, bias added).
template <typename Get>
inline void eight(Get&& get, const Tree& tr, const vec* bias, float* out) {
  vec part[3][4];
  vec res[3];
#pragma GCC unroll 8
  for (int p = 0; p < 8; ++p) {
    vec acc[C];
    get(p, acc);
#pragma GCC unroll 6
    for (int co = 0; co < C; ++co) {
      const int q = p * C + co;
      // q's set and index, compile-time after the unroll
      switch (q % 16) {
#define FC_PUSH(I) case I: push<I>(tr, part[q / 16], acc[co]); break;
        FC_PUSH(0) FC_PUSH(1) FC_PUSH(2) FC_PUSH(3) FC_PUSH(4) FC_PUSH(5) FC_PUSH(6) FC_PUSH(7)
        FC_PUSH(8) FC_PUSH(9) FC_PUSH(10) FC_PUSH(11) FC_PUSH(12) FC_PUSH(13) FC_PUSH(14)
        FC_PUSH(15)
#undef FC_PUSH
      }
    }
  }
#pragma GCC unroll 3
  for (int k = 0; k < 3; ++k) {
    res[k] = (vec)_mm512_permutex2var_ps((__m512)part[k][3], tr.fix, (__m512)part[k][3]) + bias[k];
    s2blocks::store(out + k * L, res[k]);
  }
}

}  // namespace

bool s2_patch_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                      float* y, Activation act) {
  if (g.c != C || g.ow >= 8 || !s2_patch_shape(g) || !all_finite(w, 9 * C * C)) return false;
  static const Tree tr;
  const int64_t W = g.w, H = g.h, OW = g.ow, OH = g.oh, pl = g.win.pl, pt = g.win.pt;
  std::vector<uint16_t> mask;
  std::vector<uint8_t> tail;
  s2_patch_row_masks(g, C, L, mask, tail);
  vec wa[3 * C], wb[C], bias[3];
  for (int ky = 0; ky < 3; ++ky)
    for (int co = 0; co < C; ++co) {
      vec v{};
      for (int k = 0; k < L; ++k) v[k] = w[((ky * 3 + k / C) * C + k % C) * C + co];
      wa[ky * C + co] = v;
    }
  for (int co = 0; co < C; ++co) {
    vec v{};
    for (int ky = 0; ky < 3; ++ky)
      for (int j = 0; j < 2; ++j) v[2 * ky + j] = w[((ky * 3 + 2) * C + 4 + j) * C + co];
    wb[co] = v;
  }
  for (int k = 0; k < 3; ++k)
    for (int l = 0; l < L; ++l) bias[k][l] = b ? b[(k * L + l) % C] : 0.f;
  uint16_t m8[8] = {};
  uint8_t t8[8] = {};
  for (int64_t k = 0; k < std::min<int64_t>(OW, 8); ++k) m8[k] = mask[k], t8[k] = tail[k];
  // Up to 4 output columns: one stream of an image's OH*OW output pixels, 8 at a time across
  // row ends (a 7x7 image's 4x4 outputs are 2 whole groups; a group per row computed 4 pixels
  // for nothing and went through a copy: paired 0.71 of that time at N=256 7x7; at 14x14, 7
  // columns, the per-pixel row set-up lost, 1.32); the last group again from the end, or
  // through a copy under 8 pixels.
  if (OW <= 4) {
    const int64_t total = OH * OW;
    parallel_region(s2blocks::threads_for(g), [&] {
      note_team();
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.n; ++n) {
        float* yi = y + n * total * C;
        for (int64_t q0 = 0; q0 < total; q0 += 8) {
          const int64_t s0 = std::min(q0, std::max<int64_t>(0, total - 8));
          const float* rw[8][3];
          __mmask16 vd[8][3];
          int64_t oxs[8];
          for (int p = 0; p < 8; ++p) {
            const int64_t q = s0 + p, oy = q / OW;
            oxs[p] = q < total ? q % OW : 0;
            for (int ky = 0; ky < 3; ++ky) {
              const int64_t r = 2 * oy + ky - pt;
              const bool in = q < total && r >= 0 && r < H;
              vd[p][ky] = in ? (__mmask16)0xFFFF : (__mmask16)0;
              rw[p][ky] = x + ((n * H + (in ? r : 0)) * W - pl) * C;
            }
          }
          auto get = [&](int p, vec* acc) {
            const Px P{rw[p], mask.data(), tail.data(), vd[p], wa, wb};
            pixel<false>(P, oxs[p], acc);
          };
          if (total >= 8) {
            eight(get, tr, bias, yi + s0 * C);
          } else {
            float tmp[8 * C];
            eight(get, tr, bias, tmp);
            std::memcpy(yi, tmp, sizeof(float) * total * C);
          }
        }
        if (act != Activation::Linear) activation_inplace(total * C, yi, act);
      }
    });
    return true;
  }
  parallel_region(s2blocks::threads_for(g), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < g.n * OH; ++it) {
      const int64_t n = it / OH, oy = it % OH;
      const float* rows[3];
      __mmask16 valid[3];
      bool all = true;
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t r = 2 * oy + ky - pt;
        const bool in = r >= 0 && r < H;
        all = all && in;
        valid[ky] = in ? (__mmask16)0xFFFF : (__mmask16)0;
        rows[ky] = x + ((n * H + (in ? r : 0)) * W - pl) * C;
      }
      float* yr = y + (n * OH + oy) * OW * C;
      // One group of 8 pixels (OW < 8), those past the row masked off, through a copy.
      const Px Q{rows, m8, t8, valid, wa, wb};
      float tmp[8 * C];
      if (all) eight([&](int p, vec* acc) { pixel<true>(Q, p, acc); }, tr, bias, tmp);
      else eight([&](int p, vec* acc) { pixel<false>(Q, p, acc); }, tr, bias, tmp);
      std::memcpy(yr, tmp, sizeof(float) * OW * C);
      if (act != Activation::Linear) activation_inplace(OW * C, yr, act);
    }
  });
  return true;
}

#else

bool s2_patch_forward(const ConvGeometry&, const float*, const float*, const float*, float*,
                      Activation) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
