// The weight gradient of 3x3 stride-2 convs with C = 3 channels in and out straight from the
// NHWC rows (AVX-512): no column-phase planes.
//
// Why: on the planes (few_channel_s2_weights.cpp) the split of x into 6*C column-phase planes
// cost about what the multiply-adds cost (perf, N=256 56x56 C=3, 1 thread, Zen 4: the pack
// and dy split ~1/3 of the pass, the multiply-adds ~1/2); the sweep had every C=3 weight pass
// at 0.25-0.27 of the sgemm ceiling (sweep_2026-12-07d_zen4.md, threshold 0.36).
//
// Here an output pixel (oy, ox)'s patch row ky is 9 contiguous floats of x: columns
// 2*ox - pl .. 2*ox - pl + 2, 3 channels each, lane k = kx*3 + ci. So
//   dw[ky, kx, ci, co] = lane kx*3 + ci of  sum over pixels of  row_ky(pixel) * dy[pixel, co]
// with one masked load of those 9 floats per (pixel, ky) (lanes 9..15 masked off: zeros; at
// the row ends the lanes of the padding's columns too) and dy[pixel, co] broadcast: per pixel
// 3 loads, 3 broadcasts and 9 multiply-adds into 9 lane accumulators (ky, co), 9 of 16 lanes
// working. The padding is never read (masked lanes and rows left out): NaN and inf in x or
// dy reach dw exactly where the reference puts them.
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
#include "cpu/few_channel_s2_planes.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

#if defined(__AVX512F__)

namespace {

using s2blocks::L;
using s2blocks::vec;

inline vec mload(__mmask16 m, const float* p) { return (vec)_mm512_maskz_loadu_ps(m, p); }

constexpr int C = 3;
constexpr int kDw = 9 * C * C;     // dw's floats
constexpr int kPart = kDw + C;     // a thread's doubles: dw, then db
constexpr int64_t kFlushPixels = int64_t(1) << 16;

// One output row's pixels [0, ow): acc[ky*3 + co] += row_ky(pixel) * dy[pixel, co]. rows[ky]
// points at x's row 2*oy + ky - pt shifted by -3*pl floats (column -pl), masks[ox] the lanes
// of pixel ox's columns inside the row. ROWS: whether every ky row is inside x (else
// valid[ky] masks the others to nothing).
template <bool ALL_ROWS>
inline void row_pixels(const float* const* rows, const uint16_t* masks, const float* d,
                       int64_t ow, const __mmask16* valid, vec* acc, stride2::LinePrefetch<>& pf) {
  vec a[9];
#pragma GCC unroll 9
  for (int k = 0; k < 9; ++k) a[k] = acc[k];
  for (int64_t ox = 0; ox < ow; ++ox, d += C) {
    pf.step();
    const __mmask16 m = masks[ox];
    vec xv[3];
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky)
      xv[ky] = mload(ALL_ROWS ? m : (__mmask16)(m & valid[ky]), rows[ky] + 6 * ox);
    const vec d0 = d[0] - vec{}, d1 = d[1] - vec{}, d2 = d[2] - vec{};
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky) {
      a[ky * 3 + 0] += xv[ky] * d0;
      a[ky * 3 + 1] += xv[ky] * d1;
      a[ky * 3 + 2] += xv[ky] * d2;
    }
  }
#pragma GCC unroll 9
  for (int k = 0; k < 9; ++k) acc[k] = a[k];
}

}  // namespace

bool s2_patch_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                               float* db) {
  if (g.c != C || !s2_planes_shape(g, ConvPass::BackwardWeights)) return false;
  const int64_t W = g.w, H = g.h, OW = g.ow, OH = g.oh, pl = g.win.pl, pt = g.win.pt;
  // Pixel ox's lanes k < 9 whose column 2*ox - pl + k/3 lies in the row (bounded by OW).
  std::vector<uint16_t> masks((size_t)OW);
  for (int64_t ox = 0; ox < OW; ++ox) {
    unsigned m = 0;
    for (int k = 0; k < 9; ++k) {
      const int64_t col = 2 * ox - pl + k / 3;
      if (col >= 0 && col < W) m |= 1u << k;
    }
    masks[(size_t)ox] = (uint16_t)m;
  }
  const int threads = s2blocks::threads_for(g);
  // The x rows of the output row `ahead` rows on prefetched into L2 a line or so a pixel
  // (stride2::LinePrefetch; from 1 MiB of x): without it the passes over L3 and DRAM waited
  // on their loads (paired, 1 thread, CPU time, Zen 4 at load 7, against the planes: N=256
  // 56x56 1.05, 112x112 1.14 of the time). `ahead` rows: at least ~96 pixels of work.
  const bool far = 4 * g.n * H * W * C >= stride2::kPrefetchFromBytes;
  const int64_t ahead = std::max<int64_t>(2, (96 + OW - 1) / OW);
  std::vector<double> part((size_t)threads * kPart, 0.0);  // a thread without rows adds 0
  parallel_region(threads, [&] {
    note_team();
    vec acc[9] = {}, dbv[3] = {};
    int64_t pending = 0;
    auto flush = [&] {
      double* mine = part.data() + omp_get_thread_num() * kPart;
      for (int ky = 0; ky < 3; ++ky)
        for (int co = 0; co < C; ++co)
          for (int k = 0; k < 9; ++k) mine[(ky * 9 + k) * C + co] += acc[ky * 3 + co][k];
      for (int j = 0; j < 3; ++j)
        for (int l = 0; l < L; ++l) mine[kDw + (j * L + l) % C] += dbv[j][l];
      for (auto& v : acc) v = vec{};
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
      if (all) row_pixels<true>(rows, masks.data(), d, OW, valid, acc, pf);
      else row_pixels<false>(rows, masks.data(), d, OW, valid, acc, pf);
      if (db) {  // lane l of dbv[j] sums channel (16 j + l) % 3
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
  return true;
}

#else

bool s2_patch_backward_weights(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
