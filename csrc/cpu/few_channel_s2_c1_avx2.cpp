// 3x3 stride-2 convs with one channel in and out, all three passes straight from the NHWC
// rows, at the avx2 level (8-lane ymm): few_channel_s2_c1.cpp's three kernels for a CPU
// without AVX-512.
//
// Why: at avx2 the C = 1 passes ran on the column-phase planes (few_channel_s2_planes.cpp):
// each input row packed into three planes and stored, then loaded again by the 9 taps, where
// the multiply-adds are 9 per output. On an AVX2-only EPYC (family 25 model 1, 1 thread) the
// planes took 0.45 ms for an N=256 56x56 forward (the AVX-512 rows kernel ~0.14 on Zen 4).
// The same scheme as the AVX-512 file, 8 outputs a vector: the 17 input columns a vector of
// outputs needs from each input row are two loads and a scalar (masked loads,
// vmaskmovps, at the row ends: the masked lanes are not read), split in registers (even,
// odd, even one on) and multiplied at once; forward and weight pass take two output rows
// per 5 input rows. Columns and rows outside x are zeros multiplied like the reference's
// padding, so NaN and inf land where the reference puts them. The masks are made once per
// call per vector of a row (a table of OW / 8 + 1 entries), not per row. Paired against the
// planes (1 thread, CPU time, that EPYC, N=256): forward 56x56 0.82, 112x112 0.65; backward
// data 28x28 0.82, 56x56 0.63, 112x112 0.60; weights 28x28 0.57, 56x56 0.71, 112x112 0.63.
#include "cpu/few_channel_s2_c1.h"

#if defined(__AVX2__) && !defined(__AVX512F__)

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/few_channel_s2.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

using stride2::L;
using stride2::vec;

static_assert(L == 8, "one ymm of outputs");

// The input rows 2*oy - pt + k (k < 5) of image n that output rows oy and oy + 1 read (the
// last two only when `two`), null outside the image.
inline void pair_rows(const ConvGeometry& g, const float* x, int64_t n, int64_t oy, bool two,
                      const float* (&rows)[5]) {
  for (int k = 0; k < 5; ++k) {
    const int64_t r = 2 * oy + k - g.win.pt;
    rows[k] = r >= 0 && r < g.h && (k < 3 || two) ? x + (n * g.h + r) * g.w : nullptr;
  }
}

// The vmaskmovps mask of lanes [lo, hi) of 8, clipped (all-ones lanes active).
inline __m256i lanes(int64_t lo, int64_t hi) {
  lo = std::clamp<int64_t>(lo, 0, L);
  hi = std::clamp<int64_t>(hi, 0, L);
  alignas(32) int32_t m[L];
  for (int i = 0; i < L; ++i) m[i] = i >= lo && i < hi ? -1 : 0;
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

inline vec load_m(const float* p, __m256i m) { return (vec)_mm256_maskload_ps(p, m); }
// Lanes [lo, hi) of v to p + lo. Not vmaskmovps: its store form is microcoded on AMD (the
// data pass of an N=256 28x28 map, every vector of its 14-column rows masked, took 1.6x the
// planes' time with it); the register goes to the stack and the lanes are copied one by one
// (each load inside the one store: forwarded).
inline void store_lanes(float* p, vec v, int lo, int hi) {
  if (lo == 0 && hi == L) return _mm256_storeu_ps(p, (__m256)v);
  alignas(32) float t[L];
  _mm256_store_ps(t, (__m256)v);
  for (int i = lo; i < hi; ++i) p[i] = t[i];
}
inline int clip(int64_t v) { return (int)std::clamp<int64_t>(v, 0, L); }

struct Split {
  vec e, o, n;
};
// The masks of the vector of outputs from column ox (base = 2*ox - pl): its two loads, its
// outputs'; full: both loads and the 17th column inside the row; last: the 17th inside.
struct SplitMasks {
  __m256i a, b, out;
  bool full, last, whole_out;
  int nout;  // outputs in the vector
};
inline std::vector<SplitMasks> vector_masks(const ConvGeometry& g) {
  std::vector<SplitMasks> m;
  for (int64_t ox = 0; ox < g.ow; ox += L) {
    const int64_t base = 2 * ox - g.win.pl;
    m.push_back({lanes(-base, g.w - base), lanes(-base - L, g.w - base - L), lanes(0, g.ow - ox),
                 base >= 0 && base + 2 * L < g.w, base + 2 * L >= 0 && base + 2 * L < g.w,
                 ox + L <= g.ow, clip(g.ow - ox)});
  }
  return m;
}
// Row `row`'s columns base .. base + 2L split: e[i] = x[base + 2i], o[i] = x[base + 2i + 1],
// n[i] = x[base + 2i + 2]; columns outside the row and absent rows are 0.
inline Split split(const float* row, int64_t base, const SplitMasks& m) {
  if (!row) return {vec{}, vec{}, vec{}};
  const float* p = row + base;  // may lie before the row: the masked lanes are not read
  vec a, b;
  float last = 0.f;
  if (m.full) {
    a = (vec)_mm256_loadu_ps(p);
    b = (vec)_mm256_loadu_ps(p + L);
    last = p[2 * L];
  } else {
    a = load_m(p, m.a);
    b = load_m(p + L, m.b);
    if (m.last) last = p[2 * L];
  }
  const vec e = __builtin_shuffle(a, b, stride2::me);
  const vec o = __builtin_shuffle(a, b, stride2::mo);
  const vec n = __builtin_shuffle(e, vec{} + last, stride2::mnext);
  return {e, o, n};
}

int pass_threads(int64_t items, int64_t ow) {
  return items * ow * 9 < (int64_t(1) << 21) ? 1 : std::max(1, get_num_threads());
}

}  // namespace

bool s2_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                   float* y, Activation act) {
  const int64_t pairs = (g.oh + 1) / 2, items = g.n * pairs;
  const int threads = pass_threads(items, g.ow);
  const vec bias = vec{} + (b ? b[0] : 0.f);
  const std::vector<SplitMasks> masks = vector_masks(g);
  parallel_region(threads, [&] {
    note_team();
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
        // Row k feeds output row 0 as ky = k (k <= 2) and output row 1 as ky = k - 2;
        // summed into one chain per output row as each split comes (16 registers: the
        // AVX-512 file's six per-row chains would spill here).
        vec acc0 = bias, acc1 = bias;
#pragma GCC unroll 5
        for (int k = 0; k < 5; ++k) {
          const Split q = split(rows[k], base, sm);
          if (k <= 2) acc0 += q.e * wv[k * 3] + q.o * wv[k * 3 + 1] + q.n * wv[k * 3 + 2];
          if (k >= 2)
            acc1 += q.e * wv[(k - 2) * 3] + q.o * wv[(k - 2) * 3 + 1] + q.n * wv[(k - 2) * 3 + 2];
        }
        if (sm.whole_out) {
          _mm256_storeu_ps(y0 + ox, (__m256)acc0);
          if (two) _mm256_storeu_ps(y0 + g.ow + ox, (__m256)acc1);
        } else {
          store_lanes(y0 + ox, acc0, 0, sm.nout);
          if (two) store_lanes(y0 + g.ow + ox, acc1, 0, sm.nout);
        }
      }
      if (act != Activation::Linear) activation_inplace((1 + two) * g.ow, y0, act);
    }
  });
  return true;
}

// dw[ky*3 + kx] += split rows times dy, two output rows (5 input rows) a step, 9
// accumulators plus the bias sum. Lanes past a row's end are zeroed in dy and in the splits
// (a real x column there could be inf). The lanes are summed in float over a thread's items
// up to kFlushPixels pixels (8192 terms a lane), then into its doubles, added in thread
// order (static schedule: deterministic for a fixed thread count).
bool s2_c1_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                            float* db) {
  constexpr int64_t kFlushPixels = int64_t(1) << 16;
  const int64_t pairs = (g.oh + 1) / 2, items = g.n * pairs;
  const int threads = pass_threads(items, g.ow);
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
        vec dv0, dv1 = vec{};
        if (sm.whole_out) {
          dv0 = (vec)_mm256_loadu_ps(d0 + ox);
          if (two) dv1 = (vec)_mm256_loadu_ps(d0 + g.ow + ox);
        } else {
          dv0 = load_m(d0 + ox, sm.out);
          if (two) dv1 = load_m(d0 + g.ow + ox, sm.out);
        }
        acc[9] += dv0 + dv1;
#pragma GCC unroll 5
        for (int k = 0; k < 5; ++k) {
          Split q = split(rows[k], base, sm);
          if (!sm.whole_out) {
            const __m256 keep = _mm256_castsi256_ps(sm.out);
            q.e = (vec)_mm256_and_ps((__m256)q.e, keep);
            q.o = (vec)_mm256_and_ps((__m256)q.o, keep);
            q.n = (vec)_mm256_and_ps((__m256)q.n, keep);
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

// Backward data by parity, as the AVX-512 file: plane row i of the padded dx gives dx rows
// 2i - pt (taps ky = 0, 2 from dy rows i, i - 1) and 2i + 1 - pt (ky = 1 from row i); per
// vector of 8 dy columns j, four loads (dy[i][j], dy[i][j - 1], dy[i - 1][j], dy[i - 1][j -
// 1], masked to dy's columns), 9 multiply-adds into the four parity vectors, two interleaves
// per dx row and masked stores at column 2j - pl. The caller has checked that w is finite.
bool s2_c1_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const int64_t pt = g.win.pt, pl = g.win.pl;
  const int64_t I = (g.h - 1 + pt) / 2 + 1, items = g.n * I;
  const int threads = pass_threads(items, g.ow);
  struct Masks {
    __m256i d11, d10;
    int lo0, lo1, hi0, hi1;  // the lanes of the two dx stores inside the row
    bool whole;              // every load and store whole
  };
  std::vector<Masks> masks;
  for (int64_t j = 0; 2 * j - pl < g.w; j += L) {
    const int64_t col = 2 * j - pl;
    masks.push_back({lanes(-j, g.ow - j), lanes(1 - j, g.ow - j + 1), clip(-col), clip(g.w - col),
                     clip(-col - L), clip(g.w - col - L),
                     j >= 1 && j + L <= g.ow && col >= 0 && col + 2 * L <= g.w});
  }
  const int64_t nv = (int64_t)masks.size();
  const Masks* mk = masks.data();
  auto put = [&](float* row, int64_t col, const Masks& m, vec e, vec o) {  // pairs from col
    const vec lo = __builtin_shuffle(e, o, stride2::mlo), hi = __builtin_shuffle(e, o, stride2::mhi);
    if (m.whole) {
      _mm256_storeu_ps(row + col, (__m256)lo);
      _mm256_storeu_ps(row + col + L, (__m256)hi);
    } else {
      store_lanes(row + col, lo, m.lo0, m.lo1);
      store_lanes(row + col + L, hi, m.hi0, m.hi1);
    }
  };
  parallel_region(threads, [&] {
    note_team();
    vec k[9];
    for (int t = 0; t < 9; ++t) k[t] = vec{} + w[t];
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / I, i = it % I;
      const int64_t y0 = 2 * i - pt, y1 = y0 + 1;  // the dx rows of parity 0 and 1
      const float* r1 = i < g.oh ? dy + (n * g.oh + i) * g.ow : nullptr;
      const float* r0 = i >= 1 && i - 1 < g.oh ? dy + (n * g.oh + i - 1) * g.ow : nullptr;
      float* dx0 = y0 >= 0 && y0 < g.h ? dx + (n * g.h + y0) * g.w : nullptr;
      float* dx1 = y1 >= 0 && y1 < g.h ? dx + (n * g.h + y1) * g.w : nullptr;
      auto ld = [&](const float* r, int64_t j, __m256i m, bool whole) {  // r[j .. j + L) or 0
        if (!r) return vec{};
        return whole ? (vec)_mm256_loadu_ps(r + j) : load_m(r + j, m);
      };
      for (int64_t v = 0; v < nv; ++v) {
        const int64_t j = v * L;
        const Masks& m = mk[v];
        const vec d11 = ld(r1, j, m.d11, m.whole), d10 = ld(r1, j - 1, m.d10, m.whole);
        const vec d01 = ld(r0, j, m.d11, m.whole), d00 = ld(r0, j - 1, m.d10, m.whole);
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

}  // namespace fastconv::cpu::detail

#endif
