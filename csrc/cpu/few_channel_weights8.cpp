// The weight pass of 3x3 stride-1 'same' convs with C = 1, 3 or 6 channels in and out, at
// the avx2 level (8-lane ymm, 16 registers).
//
// Why: at avx2 these ran on direct_conv.cpp's generic weight pass (C = 3, 6; C = 1 under 64
// columns) or few_channel_rows.cpp (C = 1 from 64 columns), both at 0.14-0.35 of the sgemm
// roofline on an AVX2-only EPYC (Zen 3, sweep_2026-12-07i_zen3.md: N=256 56x56 C=1 1.12 ms,
// C=3 4.8 ms, C=6 17.7 ms). The AVX-512 kernels for them (few_channel_flat.cpp,
// few_channel_planes.cpp) need mask registers and 32 vector registers.
//
// Here each work item (a block of R output rows of one image) deinterleaves its x rows
// (R + 2, zero rows for the padding) and dy rows into planes of 8-float vectors: x plane ci
// of a row holds column ix at float 1 + ix with zeros at 0 and past the row, dy plane co
// holds column ox at float ox, zeros past the row. Then
//   dw[ky, kx, ci, co] = sum over (oy, ox) of xplane[oy + ky][ci][ox + kx] * dyplane[oy][co][ox]
// is, per (ci, group of kernel rows, block of CB output channels), 3 x KG x CB lane
// accumulators held in registers over the item: per vector of 8 outputs 3 KG unaligned x
// loads, CB dy loads and 3 KG CB multiply-adds (C = 3, 6: KG = 1, CB = 3, 9 chains and 13
// registers; C = 1: all three kernel rows, 9 chains). The accumulators are added to a per-
// thread float table per item, flushed to double every kFlushPixels pixels; the per-thread
// doubles summed in thread order (the same bits for a fixed thread count). Paired against
// the old paths (1 thread, CPU time, that EPYC; benchmarks/RESULTS.md, helper F, stop 38):
// N=256 56x56 C=1 0.74, C=3 0.81, C=6 0.78; 112x112 C=6 0.80; 14x14 C=3 0.73, C=6 0.66.
//
// The deinterleave: plane k of 8 pixels (C vectors) takes float C*i + k into lane i; within a
// group of 8 / G consecutive lanes (G the largest power of 2 dividing C) those floats sit at
// distinct positions mod 8, so each group is a blend of its source vectors and one vpermps
// (C = 3: 3 ops a plane; a scalar copy was ~2 loads and stores per pixel and channel).
//
// The padding zeros and the zero lanes past a row's end are multiplied (0 * inf is NaN where
// the reference may have a number), so a call whose x or dy holds a non-finite value returns
// false and the direct path recomputes it; the check (v - v summed) rides on the deinterleave.
#include "cpu/few_channel_weights8.h"

#if defined(__AVX2__) && !defined(__AVX512F__)

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/plane_items8.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

constexpr int L = 8;
typedef float vec __attribute__((vector_size(32)));
inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof v); }

constexpr int64_t kParallelWork = 1 << 21;  // as direct_conv.cpp
// One item's x and dy planes: within L1's 32 KiB, as each (ci, ky, co block) walks them again.
constexpr int64_t kItemFloats = 6144;
// Pixels a thread's float table takes before it is added to its doubles.
constexpr int64_t kFlushPixels = 1 << 13;

// The deinterleave of C channels (see the top), all masks immediates: plane K's lane group
// GI (8 / G lanes) blends its source vectors (picks(S): the positions it takes from vector
// S), then one vpermps puts position (C*i + K) % 8 into lane i.
template <int C>
constexpr int groups_of() { return C % 8 == 0 ? 8 : C % 4 == 0 ? 4 : C % 2 == 0 ? 2 : 1; }
template <int C, int K, int GI>
constexpr int first_source() { return (C * (GI * (8 / groups_of<C>())) + K) / L; }
template <int C, int K, int GI, int S>
constexpr int picks() {
  if (S == first_source<C, K, GI>()) return 0;  // the blend starts from it
  int m = 0;
  for (int i = GI * (8 / groups_of<C>()); i < (GI + 1) * (8 / groups_of<C>()); ++i)
    if ((C * i + K) / L == S) m |= 1 << ((C * i + K) % L);
  return m;
}
template <int IMM>
inline __m256 blend_if(__m256 t, __m256 s) {
  if constexpr (IMM == 0) return t;
  else return _mm256_blend_ps(t, s, IMM);
}
template <int C, int K, int GI, size_t... S>
inline __m256 group_of(const __m256* v, std::index_sequence<S...>) {
  __m256 t = v[first_source<C, K, GI>()];
  ((t = blend_if<picks<C, K, GI, (int)S>()>(t, v[S])), ...);
  return _mm256_permutevar8x32_ps(
      t, _mm256_setr_epi32((C * 0 + K) % L, (C * 1 + K) % L, (C * 2 + K) % L, (C * 3 + K) % L,
                           (C * 4 + K) % L, (C * 5 + K) % L, (C * 6 + K) % L, (C * 7 + K) % L));
}
template <int C, int K, size_t... GI>
inline __m256 plane_of(const __m256* v, std::index_sequence<GI...>) {
  constexpr int G = groups_of<C>(), lanes = 8 / G;
  __m256 out = _mm256_setzero_ps();
  ((out = GI == 0 ? group_of<C, K, (int)GI>(v, std::make_index_sequence<C>())
                  : blend_if<((1 << lanes) - 1) << (GI * lanes)>(
                        out, group_of<C, K, (int)GI>(v, std::make_index_sequence<C>()))),
   ...);
  return out;
}
template <int C, size_t... K>
inline void planes_of(const __m256* v, float* dst, int64_t pitch, std::index_sequence<K...>) {
  ((_mm256_storeu_ps(dst + (int64_t)K * pitch,
                     plane_of<C, (int)K>(v, std::make_index_sequence<groups_of<C>()>()))),
   ...);
}

// Pixels [ix, ix + 8) of src into the planes.
template <int C>
inline void block8(const float* src, int64_t ix, float* dst, int64_t pitch, vec& chk) {
  __m256 v[C];
#pragma GCC unroll 8
  for (int s = 0; s < C; ++s) {
    const vec u = load(src + ix * C + s * L);
    chk += u - u;
    v[s] = (__m256)u;
  }
  if constexpr (C == 1) _mm256_storeu_ps(dst + ix, v[0]);
  else planes_of<C>(v, dst + ix, pitch, std::make_index_sequence<C>());
}

template <int C, size_t... K>
inline void planes_kept(const __m256* v, __m256 keep, float* dst, int64_t pitch, std::index_sequence<K...>) {
  ((_mm256_storeu_ps(dst + (int64_t)K * pitch,
                     _mm256_and_ps(keep, plane_of<C, (int)K>(v, std::make_index_sequence<groups_of<C>()>())))),
   ...);
}

// dst[k*pitch + ix] = src[ix*C + k] for ix < npix, k < C; chk += v - v over the floats read.
// A row's last partial vector is its last 8 pixels again (the same floats rewritten); a row
// under 8 pixels writes 8 floats a plane, zeros past the row (the planes have room, and want
// zeros there): where 8 pixels from src lie inside the tensor (`room`; the pixels past the
// row are the next row's, finite when it is) read in place, the lanes past the row zeroed
// in registers, else through a zeroed copy (its memcpy call and round trip were ~10% of a
// 7x7 C=3 pass). (A scalar tail that added to chk through memory was most of a 14x14 pass.)
template <int C>
void deinterleave(const float* src, int64_t npix, float* dst, int64_t pitch, vec& chk, bool room) {
  vec c = chk;
  if (npix < L && room) {
    __m256 v[C];
#pragma GCC unroll 8
    for (int s = 0; s < C; ++s) {
      const vec u = load(src + s * L);
      c += u - u;
      v[s] = (__m256)u;
    }
    const __m256 keep =
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)npix), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    if constexpr (C == 1) _mm256_storeu_ps(dst, _mm256_and_ps(keep, v[0]));
    else planes_kept<C>(v, keep, dst, pitch, std::make_index_sequence<C>());
  } else if (npix < L) {
    float tmp[L * C] = {};
    std::memcpy(tmp, src, sizeof(float) * npix * C);
    block8<C>(tmp, 0, dst, pitch, c);
  } else {
    int64_t ix = 0;
    for (; ix + L <= npix; ix += L) block8<C>(src, ix, dst, pitch, c);
    if (ix < npix) block8<C>(src, npix - L, dst, pitch, c);
  }
  chk = c;
}

// vacc[((ky*3 + kx)*C + ci)*C + co] += the lane sums of one item: xp + ci*XS the x plane of
// input channel ci, dp + co*DS dy's plane of channel co, both rows of P floats; output float q
// (row q / P) meets x float q + ky*P + kx for tap (ky, kx). nq floats, a multiple of 8.
template <int C, int KG, int CB>
void item_sums(const float* xp, int64_t XS, const float* dp, int64_t DS, int64_t P, int64_t nq,
               vec* vacc) {
  static_assert(C % CB == 0 && 3 % KG == 0, "whole blocks");
  for (int ci = 0; ci < C; ++ci)
    for (int ky0 = 0; ky0 < 3; ky0 += KG)
      for (int c0 = 0; c0 < C; c0 += CB) {
        vec acc[KG][3][CB];
        for (int k = 0; k < KG; ++k)
          for (int kx = 0; kx < 3; ++kx)
            for (int c = 0; c < CB; ++c) acc[k][kx][c] = vec{};
        const float* xr[KG];
        for (int k = 0; k < KG; ++k) xr[k] = xp + ci * XS + (ky0 + k) * P;
        const float* dr = dp + c0 * DS;
        for (int64_t q = 0; q < nq; q += L) {
          vec d[CB];
          for (int c = 0; c < CB; ++c) d[c] = load(dr + c * DS + q);
          for (int k = 0; k < KG; ++k)
            for (int kx = 0; kx < 3; ++kx) {
              const vec xv = load(xr[k] + q + kx);
              for (int c = 0; c < CB; ++c) acc[k][kx][c] += xv * d[c];
            }
        }
        for (int k = 0; k < KG; ++k)
          for (int kx = 0; kx < 3; ++kx)
            for (int c = 0; c < CB; ++c)
              vacc[(((ky0 + k) * 3 + kx) * C + ci) * C + c0 + c] += acc[k][kx][c];
      }
}

template <int C>
bool weights_c(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  constexpr int KG = C == 1 ? 3 : 1, CB = C == 1 ? 1 : 3;
  // Rows of P = W + 2 floats: x column ix at 1 + ix, zeros at 0 and W + 1 (the padding
  // columns, and what an output lane past its row meets); dy column ox at ox, zeros past W.
  // Rows under 14 pixels: P = W + 1, the zero at 0 also the row before's right padding
  // (1 / (W + 1) fewer lanes; paired (stop 39, helper C, N=256): 7x7 C=3 0.96, C=6 0.91).
  const int64_t H = g.h, W = g.w, P = W < 14 ? W + 1 : W + 2;
  // Items of up to T output rows (x: T + 2 rows, dy: T) within kItemFloats (plane_items8.h).
  const PlaneItems items(g.n, H, P, C, kItemFloats);
  const int64_t DS = items.rows_max * P + 2 * L, XS = (items.rows_max + 2) * P + 2 * L;
  const int threads = g.n * H * W * 9 * C * C < kParallelWork ? 1 : std::max(1, get_num_threads());
  constexpr int64_t wsize = 9 * C * C, psize = wsize + C;
  std::vector<double> part((size_t)(threads * psize), 0.0);
  int used = 1;
  std::atomic<bool> bad{false};
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
      xbuf.assign((size_t)(C * XS), 0.f);  // zeroed once: the margins are never written
      dbuf.assign((size_t)(C * DS), 0.f);
      vacc.assign((size_t)psize, vec{});
      dacc.assign((size_t)psize, 0.0);
    });
    vec chk{};
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
    // x row r of the item (its input row iy of image n, or a zero row when iy is outside).
    auto x_row = [&](int64_t r, int64_t n, int64_t iy) {
      float* dst = xbuf.data() + r * P + 1;
      if (iy < 0 || iy >= H) {
        // under 8 floats: 8 zeros (the floats past the row are padding or rewritten after)
        if (W < L)
          for (int c = 0; c < C; ++c) store(dst + c * XS, vec{});
        else
          for (int c = 0; c < C; ++c) std::memset(dst + c * XS, 0, sizeof(float) * W);
        return;
      }
      deinterleave<C>(x + (n * H + iy) * W * C, W, dst, XS, chk, (g.n * H - (n * H + iy)) * W >= L);
    };
    // dy row r of the item: line `line` of dy (image * H + row), or a zero row (line < 0).
    auto dy_row = [&](int64_t r, int64_t line) {
      float* dst = dbuf.data() + r * P;
      if (line < 0) {
        if (W < L)
          for (int c = 0; c < C; ++c) store(dst + c * DS, vec{});
        else
          for (int c = 0; c < C; ++c) std::memset(dst + c * DS, 0, sizeof(float) * W);
        return;
      }
      deinterleave<C>(dy + line * W * C, W, dst, DS, chk, (g.n * H - line) * W >= L);
    };
#pragma omp for schedule(static)
    for (int64_t i = 0; i < items.count; ++i) {
      if (errors.failed() || bad.load(std::memory_order_relaxed)) continue;
      const PlaneItem it = items[i];
      // Output rows of the item: rows of each image, a zero dy row between images.
      const int64_t rows = it.rows();
      for (int64_t m = 0; m < it.images; ++m) {
        const int64_t n = it.n0 + m, b = m * (it.lines + 1);
        if (m == 0) x_row(0, n, it.oy0 - 1);
        for (int64_t l = 0; l < it.lines; ++l) {
          x_row(b + 1 + l, n, it.oy0 + l);
          dy_row(b + l, n * H + it.oy0 + l);
        }
        x_row(b + it.lines + 1, n, it.oy0 + it.lines);  // the next image's top padding too
        if (m + 1 < it.images) dy_row(b + it.lines, -1);
      }
      // Past the last row to the vector's end: zero dy (x there is finite, zeros or old rows).
      const int64_t nq = (rows * P + L - 1) / L * L;
      for (int c = 0; c < C; ++c)
        std::memset(dbuf.data() + c * DS + rows * P, 0, sizeof(float) * (nq - rows * P));
      // The bias gradient: two chains a plane (one dependent add a vector was a sixth of a
      // C = 1 pass).
      for (int c = 0; c < C; ++c) {
        const float* dp = dbuf.data() + c * DS;
        vec s0 = vacc[wsize + c], s1{};
        int64_t q = 0;
        for (; q + 2 * L <= nq; q += 2 * L) {
          s0 += load(dp + q);
          s1 += load(dp + q + L);
        }
        if (q < nq) s0 += load(dp + q);
        vacc[wsize + c] = s0 + s1;
      }
      item_sums<C, KG, CB>(xbuf.data(), XS, dbuf.data(), DS, P, nq, vacc.data());
      pixels += it.images * it.lines * W;
      if (pixels >= kFlushPixels) flush();
    }
    if (!errors.failed()) {
      flush();
      for (int64_t e = 0; e < psize; ++e) part[t * psize + e] = dacc[e];
    }
    float s = 0.f;
    for (int k = 0; k < L; ++k) s += chk[k];
    if (s != 0.f) bad.store(true, std::memory_order_relaxed);
  });
  errors.rethrow();
  if (bad.load()) return false;
  for (int64_t e = 0; e < psize; ++e) {
    double s = 0.0;
    for (int tt = 0; tt < used; ++tt) s += part[tt * psize + e];
    if (e < wsize) dw[e] = (float)s;
    else if (db) db[e - wsize] = (float)s;
  }
  return true;
}

}  // namespace

bool few_channel_weights8_shape(const ConvGeometry& g) {
  const Window2d& v = g.win;
  // Rows of 8..13 columns at C = 3 and under 14 at C = 1 stay on the direct path: N=256 7x7
  // C=1 took 1.58x its time here, C=3 1.03x (N=32 1.19x); C = 6 gains at 7x7 too (0.81).
  // Rows under 8 columns at C = 3 since short rows are split in place (stop 39, helper C,
  // against the direct path: N=256 7x7 0.67, 5x5 0.66, N=32 7x7 0.81; C = 6 7x7 0.69).
  return g.groups == 1 && g.c == g.oc && (g.c == 6 || ((g.c == 1 || g.c == 3) && (g.w >= 14 || (g.c == 3 && g.w < L)))) &&
         v.kh == 3 &&
         v.kw == 3 && v.sh == 1 && v.sw == 1 && v.dh == 1 && v.dw == 1 && v.pt == 1 &&
         v.pb == 1 && v.pl == 1 && v.pr == 1 && g.n > 0 && g.h > 0 && g.w > 0 &&
         g.oh == g.h && g.ow == g.w;
}

bool few_channel_weights8(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                          float* db) {
  if (!few_channel_weights8_shape(g)) return false;
  switch (g.c) {
    case 1: return weights_c<1>(g, dy, x, dw, db);
    case 3: return weights_c<3>(g, dy, x, dw, db);
    case 6: return weights_c<6>(g, dy, x, dw, db);
    default: return false;
  }
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool few_channel_weights8_shape(const ConvGeometry&) { return false; }
bool few_channel_weights8(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

}  // namespace fastconv::cpu::detail

#endif
