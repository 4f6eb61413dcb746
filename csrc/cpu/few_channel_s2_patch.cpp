// The weight gradient of 3x3 stride-2 convs with C = 3 or 6 channels in and out straight from
// the NHWC rows (AVX-512): no column-phase planes.
//
// Why: on the planes (few_channel_s2_weights.cpp) the split of x into 6*C column-phase planes
// cost about what the multiply-adds cost (perf, N=256 56x56 C=3, 1 thread, Zen 4: the pack
// and dy split ~1/3 of the pass, the multiply-adds ~1/2); the sweep had every C=3 weight pass
// at 0.25-0.27 of the sgemm ceiling (sweep_2026-12-07d_zen4.md, threshold 0.36).
//
// C = 6 ran on direct_conv.cpp's generic path (pair split of x into planes, dy to a stream,
// tap_dot): 0.24-0.31 in the same sweep; C = 3 under 14 columns on few_channel_rows.cpp.
// Paired, 1 thread, CPU time, Zen 4 at load 5-7, ms before/after: C=3 N=256 56x56 1.31/0.78,
// 112x112 5.86/3.09, 28x28 0.30/0.18, 7x7 0.069/0.022; C=6 56x56 3.96/1.93, 112x112
// 11.6/7.1, 14x14 0.265/0.132, 7x7 0.120/0.052 (benchmarks/ab_s2c.py).
//
// Here an output pixel (oy, ox)'s patch row ky is 3C contiguous floats of x (C = 3): columns
// 2*ox - pl .. 2*ox - pl + 2, 3 channels each, lane k = kx*3 + ci. So
//   dw[ky, kx, ci, co] = lane kx*3 + ci of  sum over pixels of  row_ky(pixel) * dy[pixel, co]
// with one masked load of those 9 floats per (pixel, ky) (lanes 9..15 masked off: zeros; at
// the row ends the lanes of the padding's columns too) and dy[pixel, co] broadcast: per pixel
// 3 loads, 3 broadcasts and 9 multiply-adds into 9 lane accumulators (ky, co), 9 of 16 lanes
// working (from 28 output columns the three rows packed in two vectors: row_pixels3). C = 6:
// 18 floats a row, the first 16 as one vector, the last 2 of the three rows in one more
// (Acc). The padding is never read (masked lanes and rows left out): NaN and inf in x or dy
// reach dw exactly where the reference puts them.
//
// Lane sums are flushed into doubles every kFlushPixels pixels per thread (as the planes'
// weight pass), the threads' doubles added in thread order (static schedule: deterministic
// for a fixed thread count). db: dy's sum in the same pass, 48 floats (16 pixels) a step.
#include "cpu/few_channel_s2_patch.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/few_channel_s2_blocks.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

using s2blocks::L;
using s2blocks::vec;

inline vec mload(__mmask16 m, const float* p) { return (vec)_mm512_maskz_loadu_ps(m, p); }

constexpr int64_t kFlushPixels = int64_t(1) << 16;

// Accumulators of C channels: A[ky*C + co] (lanes k < min(3C, 16) of patch row ky: kx = k / C,
// ci = k % C), and for C = 6 the row's last 2 floats (kx = 2, ci = 4, 5) of the three rows
// packed in one vector, lanes 2*ky + j: B[co].
template <int C>
struct Acc {
  static constexpr int kB = 3 * C > L ? C : 0;
  vec a[3 * C + kB];
};

// One output row's pixels [0, ow): A[ky*C + co] += row_ky(pixel) * dy[pixel, co] (and B).
// rows[ky] points at x's row 2*oy + ky - pt shifted by -C*pl floats (column -pl); mask[ox]
// the lanes of pixel ox's first 16 (C = 3: 9) floats inside the row, tail[ox] (C = 6) 0x3f
// when its third column is inside the row, else 0. ALL_ROWS: whether every ky row is inside
// x (else valid[ky] masks the others to nothing). Per pixel at C = 6: 3 loads, 3 masked
// 2-float loads merged into one vector, 24 multiply-adds (20.25 at full lanes).
template <int C, bool ALL_ROWS>
inline void row_pixels(const float* const* rows, const uint16_t* mask, const uint8_t* tail,
                       const float* d, int64_t ow, const __mmask16* valid, Acc<C>& acc,
                       stride2::LinePrefetch<>& pf) {
  constexpr int kA = 3 * C, kB = Acc<C>::kB;
  vec a[kA + kB];
#pragma GCC unroll 32
  for (int k = 0; k < kA + kB; ++k) a[k] = acc.a[k];
  for (int64_t ox = 0; ox < ow; ++ox, d += C) {
    pf.step();
    const __mmask16 m = mask[ox];
    vec xv[3];
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky)
      xv[ky] = mload(ALL_ROWS ? m : (__mmask16)(m & valid[ky]), rows[ky] + 2 * C * ox);
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky)
#pragma GCC unroll 8
      for (int co = 0; co < C; ++co) a[ky * C + co] += xv[ky] * (d[co] - vec{});
    if constexpr (kB > 0) {
      // Row ky's floats 16, 17 into lanes 2*ky, 2*ky + 1 (masked loads: nothing else read).
      vec t{};
#pragma GCC unroll 3
      for (int ky = 0; ky < 3; ++ky) {
        const unsigned rv = ALL_ROWS ? 0xffffu : valid[ky];
        const __mmask16 mt = (__mmask16)(tail[ox] & (3u << (2 * ky)) & rv);
        t = (vec)_mm512_mask_loadu_ps((__m512)t, mt, rows[ky] + 2 * C * ox + L - 2 * ky);
      }
#pragma GCC unroll 8
      for (int co = 0; co < C; ++co) a[kA + co] += t * (d[co] - vec{});
    }
  }
#pragma GCC unroll 32
  for (int k = 0; k < kA + kB; ++k) acc.a[k] = a[k];
}

// C = 3: the three 9-float patch rows packed in two vectors, 27 of 32 lanes (three vectors
// of 9 lanes before): P[co] lanes 0..8 row 0, 9..15 row 1's floats 0..6; Q[co] lanes 0, 1
// row 1's floats 7, 8, lanes 2..10 row 2: 4 masked loads (two merging), 3 broadcasts, 6
// multiply-adds a pixel (9 before). acc.a[co] is P, acc.a[3 + co] Q. Paired against the 9-lane
// rows (1 thread, CPU time, Zen 4 at load 5-9, three runs of 3-5 rounds): N=32 112x112
// 0.92-0.93, N=32 56x56 0.95-0.97, N=256 56x56 0.94-1.00, N=256 112x112 0.97-1.00, but
// 28x28 0.99-1.00 and 14x14 1.05 (the merging loads' latency over short rows): from 28
// output columns.
template <bool ALL_ROWS>
inline void row_pixels3(const float* const* rows, const uint16_t* mask, const float* d,
                        int64_t ow, const __mmask16* valid, Acc<3>& acc,
                        stride2::LinePrefetch<>& pf) {
  vec a[6];
#pragma GCC unroll 6
  for (int k = 0; k < 6; ++k) a[k] = acc.a[k];
  for (int64_t ox = 0; ox < ow; ++ox, d += 3) {
    pf.step();
    const unsigned m = mask[ox];
    const unsigned v0 = ALL_ROWS ? 0xffff : valid[0], v1 = ALL_ROWS ? 0xffff : valid[1],
                   v2 = ALL_ROWS ? 0xffff : valid[2];
    const float* r0 = rows[0] + 6 * ox;
    const float* r1 = rows[1] + 6 * ox;
    const float* r2 = rows[2] + 6 * ox;
    vec pv = mload((__mmask16)(m & v0), r0);
    pv = (vec)_mm512_mask_loadu_ps((__m512)pv, (__mmask16)(((m & 0x7f) << 9) & v1), r1 - 9);
    vec qv = mload((__mmask16)(((m >> 7) & 3) & v1), r1 + 7);
    qv = (vec)_mm512_mask_loadu_ps((__m512)qv, (__mmask16)((m << 2) & v2), r2 - 2);
#pragma GCC unroll 3
    for (int co = 0; co < 3; ++co) {
      const vec dv = d[co] - vec{};
      a[co] += pv * dv;
      a[3 + co] += qv * dv;
    }
  }
#pragma GCC unroll 6
  for (int k = 0; k < 6; ++k) acc.a[k] = a[k];
}

template <int C>
void weights_c(const ConvGeometry& g, const float* dy, const float* x, float* dw, float* db) {
  constexpr int kDw = 9 * C * C, kPart = kDw + C;  // a thread's doubles: dw, then db
  constexpr int kA = 3 * C, kLanesA = 3 * C < L ? 3 * C : L, kB = Acc<C>::kB;
  const int64_t W = g.w, H = g.h, OW = g.ow, OH = g.oh, pl = g.win.pl, pt = g.win.pt;
  std::vector<uint16_t> mask;
  std::vector<uint8_t> tail;
  s2_patch_row_masks(g, C, kLanesA, mask, tail);
  const bool packed = C == 3 && OW >= 28;  // row_pixels3
  const int threads = s2blocks::threads_for(g);
  // The x rows of the output row `ahead` rows on prefetched into L2 a line or so a pixel
  // (stride2::LinePrefetch; from 1 MiB of x): without it the passes over L3 and DRAM waited
  // on their loads (paired, 1 thread, CPU time, Zen 4 at load 7, C = 3 against the planes:
  // N=256 56x56 1.05, 112x112 1.14 of the time; with it 0.60, 0.53). `ahead` rows: at least
  // ~96 pixels of work.
  const bool far = 4 * g.n * H * W * C >= stride2::kPrefetchFromBytes;
  const int64_t ahead = std::max<int64_t>(2, (96 + OW - 1) / OW);
  std::vector<double> part((size_t)threads * kPart, 0.0);  // a thread without rows adds 0
  parallel_region(threads, [&] {
    note_team();
    Acc<C> acc{};
    vec dbv[3] = {};
    int64_t pending = 0;
    auto flush = [&] {
      double* mine = part.data() + omp_get_thread_num() * kPart;
      if (packed) {  // float f of the 27 (ky*9 + k) at P lane f, Q lane f - 16
        for (int co = 0; co < C; ++co)
          for (int f = 0; f < 27; ++f)
            mine[f * C + co] += f < L ? acc.a[co][f] : acc.a[3 + co][f - L];
      } else {
        for (int ky = 0; ky < 3; ++ky)
          for (int co = 0; co < C; ++co)
            for (int k = 0; k < kLanesA; ++k)
              mine[(ky * 3 * C + k) * C + co] += acc.a[ky * C + co][k];
      }
      for (int co = 0; co < kB; ++co)
        for (int ky = 0; ky < 3; ++ky)
          for (int j = 0; j < 2; ++j)
            mine[(ky * 3 * C + L + j) * C + co] += acc.a[kA + co][2 * ky + j];
      for (int j = 0; j < 3; ++j)
        for (int l = 0; l < L; ++l) mine[kDw + (j * L + l) % C] += dbv[j][l];
      acc = Acc<C>{};
      for (auto& v : dbv) v = vec{};
      pending = 0;
    };
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
      const float* d = dy + (n * OH + oy) * OW * C;
      stride2::LinePrefetch<> pf;
      if (far && it + ahead < g.n * OH) {  // the rows row it + ahead reads first
        const int64_t n1 = (it + ahead) / OH, oy1 = (it + ahead) % OH;
        const int64_t r0 = std::max<int64_t>(0, 2 * oy1 - pt + (oy1 > 0));
        const int64_t r1 = std::min(H, 2 * oy1 + 3 - pt);
        pf.set(x + (n1 * H + r0) * W * C, x + (n1 * H + std::max(r0, r1)) * W * C, OW);
      }
      if constexpr (C == 3) {
        if (packed && all) row_pixels3<true>(rows, mask.data(), d, OW, valid, acc, pf);
        else if (packed) row_pixels3<false>(rows, mask.data(), d, OW, valid, acc, pf);
        else if (all) row_pixels<C, true>(rows, mask.data(), tail.data(), d, OW, valid, acc, pf);
        else row_pixels<C, false>(rows, mask.data(), tail.data(), d, OW, valid, acc, pf);
      } else {
        if (all) row_pixels<C, true>(rows, mask.data(), tail.data(), d, OW, valid, acc, pf);
        else row_pixels<C, false>(rows, mask.data(), tail.data(), d, OW, valid, acc, pf);
      }
      if (db) {  // lane l of dbv[j] sums channel (16 j + l) % C (48 = 16 C / gcd)
        const int64_t count = OW * C;
        int64_t q = 0;
        for (; q + 3 * L <= count; q += 3 * L)
          for (int j = 0; j < 3; ++j) dbv[j] += s2blocks::load(d + q + j * L);
        for (int j = 0; j < 3 && q < count; ++j, q += L)
          dbv[j] += q + L <= count ? s2blocks::load(d + q) : s2blocks::load_first(d + q, count - q);
      }
      pending += OW;
      if (pending >= kFlushPixels) flush();
    }
    flush();
  });
  for (int k = 0; k < kPart; ++k) {
    double s = 0.0;
    for (int t = 0; t < threads; ++t) s += part[(size_t)t * kPart + k];
    if (k < kDw) dw[k] = (float)s;
    else if (db) db[k - kDw] = (float)s;
  }
}

}  // namespace

bool s2_patch_shape(const ConvGeometry& g) {
  const Window2d& v = g.win;
  return g.groups == 1 && g.c == g.oc && v.kh == 3 && v.kw == 3 && v.dh == 1 && v.dw == 1 &&
         v.sh == 2 && v.sw == 2 && v.pt >= 0 && v.pt <= 2 && v.pl >= 0 && v.pl <= 2 &&
         g.n > 0 && g.oh > 0 && g.ow > 0 && g.h > 0 && g.w > 0 &&
         (g.c == 3 || g.c == 6);
}

bool s2_patch_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                               float* db) {
  if (!s2_patch_shape(g)) return false;
  if (g.c == 3) return weights_c<3>(g, dy, x, dw, db), true;
  return weights_c<6>(g, dy, x, dw, db), true;
}

#else

bool s2_patch_shape(const ConvGeometry&) { return false; }

bool s2_patch_backward_weights(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
