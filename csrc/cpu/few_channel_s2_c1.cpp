// 3x3 stride-2 forward with one channel in and out, straight from the NHWC rows (AVX-512).
//
// Why: on the column-phase planes (few_channel_s2_planes.cpp) a C=1 forward spends most of
// its time packing: each input row split into three planes (even columns, odd columns, even
// columns one on) and stored, then loaded again by the 9 taps; the pack was 36% of an N=256
// 56x56 forward's samples in perf, the 9 multiply-adds per 16 outputs little.
//
// Here a vector of 16 outputs of one row reads the 33 input columns it needs from each of
// its 3 input rows as two (masked, at the row's ends) loads and one broadcast, splits them
// in registers (even, odd, even one on: three two-source permutes) and multiplies the 9 taps
// straight away; two output rows at once share their middle input row (5 rows split per 2
// output rows), each output's ky rows in separate accumulators (6 chains of 3). Columns and
// rows outside x are zeros that are multiplied like the reference's zero padding, so NaN and
// inf land where the reference puts them. The last vector of a row is stored masked.
#include "cpu/few_channel_s2_c1.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "cpu/few_channel_s2.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

using stride2::L;
using stride2::vec;

static_assert(L == 16, "one zmm of outputs");

// The input rows 2*oy - pt + k (k < 5) of image n that output rows oy and oy + 1 read (the
// last two only when `two`), null outside the image.
inline void pair_rows(const ConvGeometry& g, const float* x, int64_t n, int64_t oy, bool two,
                      const float* (&rows)[5]) {
  for (int k = 0; k < 5; ++k) {
    const int64_t r = 2 * oy + k - g.win.pt;
    rows[k] = r >= 0 && r < g.h && (k < 3 || two) ? x + (n * g.h + r) * g.w : nullptr;
  }
}

// Lanes [lo, hi) of 16, clipped.
inline __mmask16 lanes(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0);
  hi = std::min<int64_t>(hi, 16);
  if (hi <= lo) return 0;
  return (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// Row r's columns base .. base + 2L split into (even, odd, next): even[i] = x[base + 2i],
// odd[i] = x[base + 2i + 1], next[i] = x[base + 2i + 2]; columns outside [0, w) and rows
// without data (row == nullptr) are 0.
struct Split {
  vec e, o, n;
};
// The masks of the vector of outputs from column ox (base = 2*ox - pl): its two loads, the
// 33rd column's, its outputs'. The same for every row: made once per call (VectorMasks), not
// per row and vector (s2_c1_backward_data measured 0.71-0.86 of the time so).
struct SplitMasks {
  __mmask16 a, b, out;
  bool full, last;
};
inline SplitMasks split_masks(int64_t base, int64_t w, int64_t ox, int64_t ow) {
  const bool full = base >= 0 && base + 2 * L < w;
  return {full ? (__mmask16)0xFFFF : lanes(-base, w - base),
          full ? (__mmask16)0xFFFF : lanes(-base - L, w - base - L), lanes(0, ow - ox), full,
          base + 2 * L >= 0 && base + 2 * L < w};
}
// One SplitMasks per vector of an output row (OW / 16 + 1 at most).
inline std::vector<SplitMasks> vector_masks(const ConvGeometry& g) {
  std::vector<SplitMasks> m;
  for (int64_t ox = 0; ox < g.ow; ox += L) m.push_back(split_masks(2 * ox - g.win.pl, g.w, ox, g.ow));
  return m;
}
inline Split split(const float* row, int64_t base, const SplitMasks& m) {
  if (!row) return {vec{}, vec{}, vec{}};
  const float* p = row + base;  // may lie before the row: the masked lanes are not read
  vec a, b;
  float last = 0.f;
  if (m.full) {
    a = (vec)_mm512_loadu_ps(p);
    b = (vec)_mm512_loadu_ps(p + L);
    last = p[2 * L];
  } else {
    a = (vec)_mm512_maskz_loadu_ps(m.a, p);
    b = (vec)_mm512_maskz_loadu_ps(m.b, p + L);
    if (m.last) last = p[2 * L];
  }
  const vec e = __builtin_shuffle(a, b, stride2::me);
  const vec o = __builtin_shuffle(a, b, stride2::mo);
  const vec n = __builtin_shuffle(e, vec{} + last, stride2::mnext);
  return {e, o, n};
}

}  // namespace

bool s2_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                   float* y, Activation act) {
  const int64_t pairs = (g.oh + 1) / 2, items = g.n * pairs;
  const int threads =
      items * g.ow * 9 < (int64_t(1) << 21) ? 1 : std::max(1, get_num_threads());
  const vec bias = vec{} + (b ? b[0] : 0.f);
  const std::vector<SplitMasks> masks = vector_masks(g);
  parallel_region(threads, [&] {
    note_team();
    // The 9 weights in the thread's registers: an array outside the region is reached
    // through the closure, its address reloaded after every store (y might alias it).
    vec wv[9];
    for (int t = 0; t < 9; ++t) wv[t] = vec{} + w[t];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / pairs, oy = (it % pairs) * 2;
      const bool two = oy + 1 < g.oh;
      const float* rows[5];
      pair_rows(g, x, n, oy, two, rows);
      float* y0 = y + (n * g.oh + oy) * g.ow;
      for (int64_t ox = 0; ox < g.ow; ox += L) {
        const int64_t base = 2 * ox - g.win.pl;
        const SplitMasks& sm = masks[ox / L];
        vec acc[2][3];
        // Row k feeds output row 0 as ky = k (k <= 2) and output row 1 as ky = k - 2 (k >= 2):
        // unrolled, each split is used at once (as an array of splits they went to the stack).
#pragma GCC unroll 5
        for (int k = 0; k < 5; ++k) {
          const Split q = split(rows[k], base, sm);
          if (k <= 2) acc[0][k] = q.e * wv[k * 3] + q.o * wv[k * 3 + 1] + q.n * wv[k * 3 + 2];
          if (k >= 2) acc[1][k - 2] = q.e * wv[(k - 2) * 3] + q.o * wv[(k - 2) * 3 + 1] + q.n * wv[(k - 2) * 3 + 2];
        }
        const __mmask16 m = sm.out;
        _mm512_mask_storeu_ps(y0 + ox, m, (__m512)(bias + acc[0][0] + acc[0][1] + acc[0][2]));
        if (two)
          _mm512_mask_storeu_ps(y0 + g.ow + ox, m, (__m512)(bias + acc[1][0] + acc[1][1] + acc[1][2]));
      }
      if (act != Activation::Linear) activation_inplace((1 + two) * g.ow, y0, act);
    }
  });
  return true;
}

// The weight gradient the same way: dw[ky*3 + kx] += split rows times dy, two output rows
// (5 input rows) a step, 9 accumulators plus the bias sum. Lanes past a row's end are zeroed
// in dy and in the splits (a real x column there could be inf). The lanes are summed in float
// over a thread's items up to kFlushPixels pixels (4096 terms a lane), then into its doubles,
// added in thread order (static schedule: deterministic for a fixed thread count).
bool s2_c1_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                            float* db) {
  constexpr int64_t kFlushPixels = int64_t(1) << 16;
  const int64_t pairs = (g.oh + 1) / 2, items = g.n * pairs;
  const int threads =
      items * g.ow * 9 < (int64_t(1) << 21) ? 1 : std::max(1, get_num_threads());
  std::vector<double> part((size_t)threads * 10, 0.0);
  const std::vector<SplitMasks> masks = vector_masks(g);
  parallel_region(threads, [&] {
    note_team();
    vec sums[10] = {};
    int64_t pending = 0;
    auto flush = [&] {
      double* mine = part.data() + omp_get_thread_num() * 10;
      for (int k = 0; k < 10; ++k) {
        double t = 0.0;
        for (int l = 0; l < L; ++l) t += sums[k][l];
        mine[k] += t;
        sums[k] = vec{};
      }
      pending = 0;
    };
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / pairs, oy = (it % pairs) * 2;
      const bool two = oy + 1 < g.oh;
      const float* rows[5];
      pair_rows(g, x, n, oy, two, rows);
      const float* d0 = dy + (n * g.oh + oy) * g.ow;
      vec acc[10];
      for (int k = 0; k < 10; ++k) acc[k] = sums[k];
      for (int64_t ox = 0; ox < g.ow; ox += L) {
        const int64_t base = 2 * ox - g.win.pl;
        const SplitMasks& sm = masks[ox / L];
        const __mmask16 m = sm.out;
        const vec dv0 = (vec)_mm512_maskz_loadu_ps(m, d0 + ox);
        const vec dv1 = two ? (vec)_mm512_maskz_loadu_ps(m, d0 + g.ow + ox) : vec{};
        acc[9] += dv0 + dv1;
#pragma GCC unroll 5
        for (int k = 0; k < 5; ++k) {
          Split q = split(rows[k], base, sm);
          if (m != 0xFFFF) {
            q.e = (vec)_mm512_maskz_mov_ps(m, (__m512)q.e);
            q.o = (vec)_mm512_maskz_mov_ps(m, (__m512)q.o);
            q.n = (vec)_mm512_maskz_mov_ps(m, (__m512)q.n);
          }
          if (k <= 2) {
            acc[k * 3] += q.e * dv0, acc[k * 3 + 1] += q.o * dv0, acc[k * 3 + 2] += q.n * dv0;
          }
          if (k >= 2) {
            const int t = (k - 2) * 3;
            acc[t] += q.e * dv1, acc[t + 1] += q.o * dv1, acc[t + 2] += q.n * dv1;
          }
        }
      }
      for (int k = 0; k < 10; ++k) sums[k] = acc[k];
      pending += (1 + two) * g.ow;
      if (pending >= kFlushPixels) flush();
    }
    flush();
  });
  for (int k = 0; k < 10; ++k) {
    double t = 0.0;
    for (int th = 0; th < threads; ++th) t += part[th * 10 + k];
    if (k < 9) dw[k] = (float)t;
    else if (db) db[0] = (float)t;
  }
  return true;
}

// Backward data by parity (as backward_data_c in few_channel_s2_planes.cpp), straight from
// the dy rows: plane row i of the padded dx gives dx rows 2i - pt (taps ky = 0, 2 from dy rows
// i, i - 1) and 2i + 1 - pt (ky = 1 from row i); per vector of 16 dy columns j, four loads
// (dy[i][j], dy[i][j - 1], dy[i - 1][j], dy[i - 1][j - 1], masked to dy's columns), 9
// multiply-adds into the four parity vectors, two interleaves per dx row and masked stores at
// column 2j - pl (no dy row copies, no planar staging). The caller has checked that w is
// finite: the zeros outside dy are multiplied by it.
bool s2_c1_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const int64_t pt = g.win.pt, pl = g.win.pl;
  const int64_t I = (g.h - 1 + pt) / 2 + 1, items = g.n * I;
  const int threads =
      items * g.ow * 9 < (int64_t(1) << 21) ? 1 : std::max(1, get_num_threads());
  // The masks of vector v (dy columns j = 16v): its loads at j and j - 1, its two dx stores
  // from column 2j - pl; the same for every row, so made once (per vector they were a
  // third of the loop's instructions: N=256 56x56 perf). Bounded: OW / 16 + 1 entries.
  struct Masks {
    __mmask16 d11, d10, lo, hi;
  };
  std::vector<Masks> masks;
  for (int64_t j = 0; 2 * j - pl < g.w; j += L) {
    const int64_t col = 2 * j - pl;
    masks.push_back({lanes(-j, g.ow - j), lanes(1 - j, g.ow - j + 1), lanes(-col, g.w - col),
                     lanes(-col - L, g.w - col - L)});
  }
  const int64_t nv = (int64_t)masks.size();
  const Masks* mk = masks.data();
  auto put = [&](float* row, int64_t col, const Masks& m, vec e, vec o) {  // pairs from col
    const vec lo = __builtin_shuffle(e, o, stride2::mlo), hi = __builtin_shuffle(e, o, stride2::mhi);
    _mm512_mask_storeu_ps(row + col, m.lo, (__m512)lo);
    _mm512_mask_storeu_ps(row + col + L, m.hi, (__m512)hi);
  };
  parallel_region(threads, [&] {
    note_team();
    vec k[9];  // in registers, as s2_c1_forward's
    for (int t = 0; t < 9; ++t) k[t] = vec{} + w[t];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / I, i = it % I;
      const int64_t y0 = 2 * i - pt, y1 = y0 + 1;  // the dx rows of parity 0 and 1
      const float* r1 = i < g.oh ? dy + (n * g.oh + i) * g.ow : nullptr;
      const float* r0 = i >= 1 && i - 1 < g.oh ? dy + (n * g.oh + i - 1) * g.ow : nullptr;
      float* dx0 = y0 >= 0 && y0 < g.h ? dx + (n * g.h + y0) * g.w : nullptr;
      float* dx1 = y1 >= 0 && y1 < g.h ? dx + (n * g.h + y1) * g.w : nullptr;
      auto ld = [&](const float* r, int64_t j, __mmask16 m) {  // r[j .. j + L) in dy's row, else 0
        return r ? (vec)_mm512_maskz_loadu_ps(m, r + j) : vec{};
      };
      for (int64_t v = 0; v < nv; ++v) {
        const int64_t j = v * L;
        const Masks& m = mk[v];
        const vec d11 = ld(r1, j, m.d11), d10 = ld(r1, j - 1, m.d10);
        const vec d01 = ld(r0, j, m.d11), d00 = ld(r0, j - 1, m.d10);
        if (dx0) {
          const vec e0 = k[0] * d11 + k[2] * d10 + k[6] * d01 + k[8] * d00;
          const vec o0 = k[1] * d11 + k[7] * d01;
          put(dx0, 2 * j - pl, m, e0, o0);
        }
        if (dx1) put(dx1, 2 * j - pl, m, k[3] * d11 + k[5] * d10, k[4] * d11);
      }
    }
  });
  return true;
}

#elif !defined(__AVX2__)  // avx2: few_channel_s2_c1_avx2.cpp

bool s2_c1_backward_data(const ConvGeometry&, const float*, const float*, float*) { return false; }

bool s2_c1_backward_weights(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

bool s2_c1_forward(const ConvGeometry&, const float*, const float*, const float*, float*,
                   Activation) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
