// Max (with the argmax) and average pooling forwards over tiling windows (kh == sh, kw == sw,
// no padding: 2x2 stride 2) at few channels (C < 8) for the avx2 level only: the vectors run
// along the input rows, as the avx512 level's forward_rows16 (pool_tiling.cpp) does with 16
// lanes. P = min(8 / C, 16 / (kw*C)) neighbouring outputs per 8-lane vector, lane p*C + k
// being channel k of output ox + p; window column b of that lane is float (p*kw + b)*C + k of
// the 16 floats from the group's first cell of the window row, i.e. of two plain loads (lo,
// hi), so each cell is two in-register permutes (vpermps) and a blend.
//
// Why: pool_max.cpp / pool_avg.cpp's packed forward (max_forward_task_packed8,
// avg_forward_task_packed8) gathers each cell with vgatherdps for C < 5 (P > 1). On a 2-vCPU
// AMD EPYC without AVX-512 (family 25 model 1: Zen 3), 1 thread, thread CPU time, 86% of the
// 2x2 max pool's samples sat on the gather: (256, 56, 56, 3) 8.7 ms against 0.70 ms for
// np.copyto of its bytes, (256, 56, 56, 1) 1.7 ms; the average pool (256, 56, 56, 3) 7.8 ms.
// See benchmarks/RESULTS.md, 2026-12-07 helper P (stop 37), for the paired figures.
//
// The same cells in the same row-major order with the same comparisons (pool_beats: first
// maximum, last NaN) and the same additions from +0 with the same 1/count as the packed
// forward, so the same floats and argmax.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/pool_index.h"
#include "cpu/pool_tasks.h"
#include "cpu/pool_tiling.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)

bool pool_rows8_applies(const PoolGeometry& g) {
  const Window2d& w = g.win;
  return g.c >= 1 && g.c < 8 && w.kh == w.sh && w.kw == w.sw && w.pt == 0 && w.pb == 0 &&
         w.pl == 0 && w.pr == 0 && w.dh == 1 && w.dw == 1 && w.kh >= 1 && w.kw >= 1 &&
         g.oh * w.kh <= g.h && g.ow * w.kw <= g.w && w.kh * w.kw <= 255 && w.kw * g.c <= 16;
}

namespace {

// How a window row's cells come out of its floats (lo = 8 floats from the group's first cell,
// hi = the next 8). kw == 2 modes: the two cells by one in-lane shuffle each (C = 1, 2),
// whose lanes come out in the order of _mm256_shuffle_ps (each 128-bit half holds two outputs
// of lo, then two of hi), put back in output order once per group (fix_order: every step in
// between is lane by lane); or by 128-bit halves (C = 4: a window row is lo and hi exactly).
// kDirect: one output per vector (C = 5..7), each cell one plain load of its C channels.
// kPermute: the general table (two vpermps and a blend per cell).
enum Mode { kPermute, kShuffle1, kShuffle2, kHalves, kDirect };

inline __m256 fix_order(__m256 v) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
}
inline __m256i fix_order(__m256i v) { return _mm256_permute4x64_epi64(v, 0xD8); }

// Window row `a`'s cells of one group into v[0 .. kx); src: the group's first cell of that row.
template <int kMode, int KW>
inline void row_cells(const float* src, const float* x_end, int64_t c, int64_t kx, const __m256i* cells,
                      const __m256* his, __m256* v) {
  if constexpr (kMode == kDirect) {
    // cell b's 8 floats from src + b*c: the lanes past c are not used
    const int64_t need = (kx - 1) * c + 8;
    if (src + need <= x_end) {
      for (int64_t b = 0; b < (KW ? KW : kx); ++b) v[b] = _mm256_loadu_ps(src + b * c);
    } else {  // the tensor's last floats: no read past it
      alignas(32) float buf[32] = {};
      std::memcpy(buf, src, sizeof(float) * (size_t)(x_end - src));
      for (int64_t b = 0; b < (KW ? KW : kx); ++b) v[b] = _mm256_loadu_ps(buf + b * c);
    }
    return;
  }
  __m256 lo, hi;
  if (src + 16 <= x_end) {  // past the row's windows: floats of later rows, not used
    lo = _mm256_loadu_ps(src), hi = _mm256_loadu_ps(src + 8);
  } else {  // the tensor's last floats: no read past it
    alignas(32) float buf[16] = {};
    std::memcpy(buf, src, sizeof(float) * (size_t)(x_end - src));
    lo = _mm256_load_ps(buf), hi = _mm256_load_ps(buf + 8);
  }
  if constexpr (kMode == kShuffle1) {
    v[0] = _mm256_shuffle_ps(lo, hi, 0x88), v[1] = _mm256_shuffle_ps(lo, hi, 0xDD);
  } else if constexpr (kMode == kShuffle2) {
    v[0] = _mm256_shuffle_ps(lo, hi, 0x44), v[1] = _mm256_shuffle_ps(lo, hi, 0xEE);
  } else if constexpr (kMode == kHalves) {
    v[0] = _mm256_permute2f128_ps(lo, hi, 0x20), v[1] = _mm256_permute2f128_ps(lo, hi, 0x31);
  } else {
    for (int64_t b = 0; b < (KW ? KW : kx); ++b)
      v[b] = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, cells[b]), _mm256_permutevar8x32_ps(hi, cells[b]), his[b]);
  }
}

// KW, KH: the window's size at compile time (2x2: the cell loops unrolled), 0 at run time.
// kFar: software prefetch of the next output row's window rows (see forward below).
template <bool kMax, bool kFar, int kMode, int KW, int KH>
void forward_rows8(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  const int64_t C = g.c, kh = g.win.kh, kw = g.win.kw;
  const int64_t P = std::min(8 / C, 16 / (kw * C));
  // kPermute: window column b's lane sources among the 16 floats (lo, hi); vpermps reads the
  // low three bits of an index, so one index vector serves both registers, his picks one
  __m256i cell[16];
  __m256 from_hi[16];
  for (int64_t b = 0; b < kw; ++b) {
    int32_t idx[8] = {}, hi[8] = {};
    for (int64_t l = 0; l < P * C; ++l) {
      idx[l] = (int32_t)((l / C) * kw * C + b * C + l % C);
      hi[l] = idx[l] >= 8 ? -1 : 0;
    }
    cell[b] = _mm256_loadu_si256((const __m256i*)idx);
    from_hi[b] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i*)hi));
  }
  const __m256 scale = _mm256_set1_ps(pool_inv_count({0, kh}, {0, kw}));
  const int64_t h0 = g.h, oh0 = g.oh, ow0 = g.ow, x_row0 = g.w * C, y_row0 = g.ow * C;
  const float* x_end0 = x + g.n * g.h * g.w * C;
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    // sizes, tables and pointers in locals of the body: a may-alias store would otherwise make
    // the compiler reload them through the closure after each one (as forward_rows16)
    const int64_t h = h0, oh = oh0, ow = ow0, c = C, p = P, xr_n = x_row0, yr_n = y_row0;
    const int64_t ky = KH ? KH : kh, kx = KW ? KW : kw;
    __m256i cells[16];
    __m256 his[16];
    if constexpr (kMode == kPermute)
      for (int64_t b = 0; b < kx; ++b) cells[b] = cell[b], his[b] = from_hi[b];
    const float* xs = x;
    const float* x_end = x_end0;
    float* ys = y;
    uint8_t* as = arg;
    const __m256 sc = scale;
    const int64_t image_end = (img + 1) * oh * yr_n;  // this image's outputs end here
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* xr = xs + (img * h + oy * ky) * xr_n;
      const int64_t o_row = (img * oh + oy) * yr_n;
      for (int64_t ox = 0; ox < ow; ox += p) {
        const int64_t e = ox * kx * c;
        __m256 best = _mm256_setzero_ps(), acc = _mm256_setzero_ps();
        __m256i which = _mm256_setzero_si256();
        for (int64_t a = 0; a < ky; ++a) {
          __m256 v[16];
          if (kFar && oy + 1 < oh)  // the same floats of the next output row's window rows
            _mm_prefetch((const char*)(xr + (a + ky) * xr_n + e), _MM_HINT_T0);
          row_cells<kMode, KW>(xr + a * xr_n + e, x_end, c, kx, cells, his, v);
          for (int64_t b = 0; b < kx; ++b) {
            if constexpr (kMax) {
              if (a == 0 && b == 0) {
                best = v[0];
                continue;
              }
              // pool_beats: v > best, or v is NaN
              const __m256 win = _mm256_or_ps(_mm256_cmp_ps(v[b], best, _CMP_GT_OQ), _mm256_cmp_ps(v[b], v[b], _CMP_UNORD_Q));
              best = _mm256_blendv_ps(best, v[b], win);
              which = _mm256_blendv_epi8(which, _mm256_set1_epi32((int32_t)(a * kx + b)), _mm256_castps_si256(win));
            } else {
              acc = _mm256_add_ps(acc, v[b]);
            }
          }
        }
        const int64_t o = o_row + ox * c;
        __m256 r = kMax ? best : _mm256_mul_ps(acc, sc);
        if constexpr (kMode == kShuffle1 || kMode == kShuffle2) r = fix_order(r);
        // 8 floats where the image's outputs have room (lanes past the group land on outputs
        // written afterwards): AVX2's masked store is microcoded on AMD (pool_packed.h)
        const bool room = o + 8 <= image_end;
        if (room) {
          _mm256_storeu_ps(ys + o, r);
        } else {
          alignas(32) float buf[8];
          _mm256_store_ps(buf, r);
          std::memcpy(ys + o, buf, sizeof(float) * (size_t)(std::min(p, ow - ox) * c));
        }
        if (kMax && as) {  // window positions < 256: the saturating packs keep them
          if constexpr (kMode == kShuffle1 || kMode == kShuffle2) which = fix_order(which);
          const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(which), _mm256_extracti128_si256(which, 1));
          const __m128i w8 = _mm_packus_epi16(w16, w16);
          if (room) {
            _mm_storel_epi64((__m128i*)(as + o), w8);
          } else {
            alignas(16) uint8_t bytes[16];
            _mm_store_si128((__m128i*)bytes, w8);
            std::memcpy(as + o, bytes, (size_t)(std::min(p, ow - ox) * c));
          }
        }
      }
    }
  });
}

template <bool kMax, bool kFar>
void forward_mode(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  const int64_t C = g.c;
  const bool two = g.win.kh == 2 && g.win.kw == 2;
  if (two && C == 1) return forward_rows8<kMax, kFar, kShuffle1, 2, 2>(g, x, y, arg);
  if (two && C == 2) return forward_rows8<kMax, kFar, kShuffle2, 2, 2>(g, x, y, arg);
  if (two && C == 4) return forward_rows8<kMax, kFar, kHalves, 2, 2>(g, x, y, arg);
  if (C > 4) {  // one output per vector
    if (two) return forward_rows8<kMax, kFar, kDirect, 2, 2>(g, x, y, arg);
    return forward_rows8<kMax, kFar, kDirect, 0, 0>(g, x, y, arg);
  }
  if (two) return forward_rows8<kMax, kFar, kPermute, 2, 2>(g, x, y, arg);
  forward_rows8<kMax, kFar, kPermute, 0, 0>(g, x, y, arg);
}

template <bool kMax>
void forward(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  // An input of 8 MiB or more streams in kh interleaved runs of one row each, which the
  // hardware prefetchers follow badly (as forward_rows16 at avx512): prefetched one output
  // row ahead. 2x2, paired, ms, without -> with: max (256, 56, 56, 3) 1.96 -> 1.24, (256, 56,
  // 56, 6) 3.24 -> 1.91, average (256, 56, 56, 6) 2.55 -> 1.77; but at 4.8 MB (still in L3)
  // max (256, 28, 28, 6) 0.26-0.32 -> 0.29-0.32.
  const bool far = g.n * g.h * g.w * g.c * (int64_t)sizeof(float) >= ((int64_t)8 << 20);
  if (far) return forward_mode<kMax, true>(g, x, y, arg);
  forward_mode<kMax, false>(g, x, y, arg);
}

// Backward over the same tiling windows with kw == 2 at C = 1, 2, 4 (V = 1) and C = 3, 6
// (V = 3): dx row iy = oy*kh + a repeats each entry of dy row oy twice (window columns 0, 1),
// C channels at a time; kept where the saved argmax is cell a*2 + b (max), scaled by 1/count
// (average). Every 8V dx floats take 4V consecutive dy entries, vector k of such a period the
// 8 entries from base[k] permuted by pat[k], so the V patterns (and the window columns) are
// constants held in registers. TiledRows8 (pool_packed.h), which this replaces for those
// channel counts, read its table through memory and took the row's last vector through a
// masked load and a copy: 2x2 max, (256, 56, 56, 1), ~35 cycles per 8 dx floats.
// The same values as TiledRows8: +0 + (dy or +0) for max, +0 + dy * (1 / (kh*kw)) rounded
// before the add for average.
// 8 dx floats of backward_rows8 from the 8 dy entries (and argmax bytes) at dp (ap), permuted
// by pat; t: each lane's window cell.
template <bool kMax>
inline __m256 backward_vector(const float* dp, const uint8_t* ap, const float* dy_end, __m256i pat, __m256i t,
                              __m256 scale) {
  __m256 d;
  __m256i am;
  if (dp + 8 <= dy_end) {  // entries past the period feed no lane
    d = _mm256_loadu_ps(dp);
    if constexpr (kMax) am = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)ap));
  } else {  // dy's (and the argmax's) last entries: no read past them
    alignas(32) float fb[8] = {};
    std::memcpy(fb, dp, sizeof(float) * (size_t)(dy_end - dp));
    d = _mm256_load_ps(fb);
    if constexpr (kMax) {
      alignas(16) uint8_t ab[16] = {};
      std::memcpy(ab, ap, (size_t)(dy_end - dp));
      am = _mm256_cvtepu8_epi32(_mm_load_si128((const __m128i*)ab));
    }
  }
  d = _mm256_permutevar8x32_ps(d, pat);
  if constexpr (kMax) {
    const __m256 hit = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_permutevar8x32_epi32(am, pat), t));
    return _mm256_add_ps(_mm256_setzero_ps(), _mm256_and_ps(hit, d));
  } else {
    __m256 term = _mm256_mul_ps(d, scale);
    asm("" : "+x"(term));  // rounded before the add, as avg_backward_tiled8
    return _mm256_add_ps(_mm256_setzero_ps(), term);
  }
}

template <bool kMax, int V>
void backward_rows8(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx) {
  const int64_t C = g.c, kh = g.win.kh, kw = 2;
  __m256i pat[V], col[V];
  int64_t base[V];
  for (int k = 0; k < V; ++k) {
    int32_t src[8], cl[8];
    for (int l = 0; l < 8; ++l) {
      const int64_t e = 8 * k + l, ix = e / C;
      src[l] = (int32_t)((ix / kw) * C + e % C), cl[l] = (int32_t)(ix % kw);
    }
    base[k] = *std::min_element(src, src + 8);
    for (int l = 0; l < 8; ++l) src[l] -= (int32_t)base[k];  // < 8: C = 1, 2, 3, 4, 6
    pat[k] = _mm256_loadu_si256((const __m256i*)src), col[k] = _mm256_loadu_si256((const __m256i*)cl);
  }
  const float inv = 1.0f / (float)(kh * kw);
  const int64_t h0 = g.h, oh0 = g.oh, ow0 = g.ow, w0 = g.w;
  const float* dy_end0 = dy + g.n * g.oh * g.ow * C;
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    // sizes, tables and pointers in locals of the body (see forward_rows8)
    const int64_t h = h0, oh = oh0, ow = ow0, c = C, ky = kh, dx_row = w0 * C, dy_row = ow0 * C;
    // Whole periods, then whole vectors up to the row's covered floats: the lanes past them
    // land on the columns in no window or the next row, both written afterwards; only the
    // image's last row ends in the scalar tail (2x2, (256, 14, 14, 6): 84 floats a row, 12 of
    // them in the scalar tail of every row before, 0.35 -> 0.15 ms).
    const int64_t covered = ow * kw * c, periods = covered / (8 * V);
    __m256i p[V], cl[V];
    int64_t b[V];
    for (int k = 0; k < V; ++k) p[k] = pat[k], cl[k] = col[k], b[k] = base[k];
    const __m256 scale = _mm256_set1_ps(inv);
    const float* dys = dy;
    const float* dy_end = dy_end0;
    const uint8_t* args = arg;
    float* out = dx + img * h * dx_row;
    const float* out_end = out + h * dx_row;
    for (int64_t iy = 0; iy < h; ++iy, out += dx_row) {
      const int64_t oy = iy / ky;
      if (oy >= oh) {  // below the last window
        std::memset(out, 0, sizeof(float) * (size_t)dx_row);
        continue;
      }
      const int64_t a = iy - oy * ky, o = (img * oh + oy) * dy_row;
      if (!kMax && V == 1 && a > 0 && covered >= 8) {
        // average: every row of a window row block is the same dx (dy * 1/count of the same
        // outputs): copy the block's first row, hot in L1, instead of recomputing it. 2x2,
        // paired, 1 thread, avx2, Zen 3, copy / recompute: (256, 28, 28, 1) 0.84, 0.84,
        // (256, 28, 28, 2) 0.82, 0.86; at V = 3 no faster: (256, 28, 28, 3) 1.02, 1.08.
        const float* src = out - a * dx_row;
        int64_t e = 0;
        for (; e + 8 <= covered; e += 8) _mm256_storeu_ps(out + e, _mm256_loadu_ps(src + e));
        if (e < covered) _mm256_storeu_ps(out + covered - 8, _mm256_loadu_ps(src + covered - 8));
        for (e = covered; e < dx_row; ++e) out[e] = 0.f;  // columns in no window
        continue;
      }
      const float* d_row = dys + o;
      const uint8_t* a_row = kMax ? args + o : nullptr;
      __m256i t[V];
      for (int k = 0; k < V; ++k) t[k] = _mm256_add_epi32(cl[k], _mm256_set1_epi32((int32_t)(a * kw)));
      for (int64_t q = 0; q < periods; ++q) {  // whole periods
        const int64_t d0 = q * 4 * V;
        for (int k = 0; k < V; ++k)
          _mm256_storeu_ps(out + q * 8 * V + 8 * k,
                           backward_vector<kMax>(d_row + d0 + b[k], kMax ? a_row + d0 + b[k] : nullptr, dy_end, p[k], t[k], scale));
      }
      int64_t e = periods * 8 * V;
      for (int k = 0; k < V && e < covered && out + e + 8 <= out_end; ++k, e += 8) {  // the last, partial one
        const int64_t d0 = periods * 4 * V;
        _mm256_storeu_ps(out + e, backward_vector<kMax>(d_row + d0 + b[k], kMax ? a_row + d0 + b[k] : nullptr, dy_end, p[k], t[k], scale));
      }
      for (; e < covered; ++e) {  // the image's last floats
        const int64_t ix = e / c, k = e % c, src = (ix / kw) * c + k;
        float v;
        if constexpr (kMax) v = 0.f + (a_row[src] == a * kw + ix % kw ? d_row[src] : 0.f);
        else {
          volatile float term = d_row[src] * inv;  // rounded before the add
          v = 0.f + term;
        }
        out[e] = v;
      }
      for (e = covered; e < dx_row; ++e) out[e] = 0.f;  // columns in no window
    }
  });
}

}  // namespace

void max_forward_rows8(const PoolGeometry& g, const float* x, float* y, uint8_t* arg) {
  forward<true>(g, x, y, arg);
}

void avg_forward_rows8(const PoolGeometry& g, const float* x, float* y) {
  if (avg_c3_applies(g)) return avg_forward_c3(g, x, y);  // 2x2 at C = 3: pool_avg_c3.cpp
  forward<false>(g, x, y, nullptr);
}

bool pool_rows8_backward_applies(const PoolGeometry& g) {
  return pool_rows8_applies(g) && g.win.kw == 2 && (g.c <= 4 || g.c == 6);
}

void max_backward_rows8(const PoolGeometry& g, const float* dy, const uint8_t* arg, float* dx) {
  if (g.c == 3 || g.c == 6) return backward_rows8<true, 3>(g, dy, arg, dx);
  backward_rows8<true, 1>(g, dy, arg, dx);
}

void avg_backward_rows8(const PoolGeometry& g, const float* dy, float* dx) {
  if (g.c == 3 || g.c == 6) return backward_rows8<false, 3>(g, dy, nullptr, dx);
  backward_rows8<false, 1>(g, dy, nullptr, dx);
}

#endif

}  // namespace fastconv::cpu::detail
