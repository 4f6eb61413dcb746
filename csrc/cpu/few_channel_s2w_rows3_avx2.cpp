// The weight pass of 3x3 stride-2 convs with C = 3 channels in and out at avx2, straight from
// the NHWC rows (no planes): few_channel_s2_patch.cpp's idea in 8-float registers.
//
// Why: on column-phase planes (few_channel_s2_weights.cpp; few_channel_s2w_avx2.cpp's first
// version at commit cf4fd24) the split of x cost about 40% of what the multiply-adds cost at
// C = 3 (perf, N=256 14x14: split_x_row 30% of the samples), and that version's zero column
// and rows between images left 1/4 of the lanes idle at 14x14. Paired against the route
// before (that version under 50 columns, few_channel_s2_weights.cpp from 50; 1 thread, CPU
// time, the AVX2-only EPYC, N=256 unless given): 7x7 0.64, 14x14 0.85, 28x28 0.95, 44x44
// 0.84, 56x56 0.73, 112x112 0.68, N=32 28x28 0.99, N=32 56x56 0.88, N=32 112x112 0.86.
//
// Here output pixel (oy, ox)'s patch row ky is 9 contiguous floats of x: columns 2*ox - pl ..
// 2*ox - pl + 2, 3 channels each (float k: kx = k / 3, ci = k % 3). Its first 8 are one load;
// the three rows' 9th floats (kx = 2, ci = 2) go into lanes 0..2 of a fourth register. Then
//   acc[ky][co] += row_ky[0..8) * dy[pixel, co],  acc[3][co] += (9th floats) * dy[pixel, co]
// 12 FMAs a pixel for 81 multiply-adds (the planes: 13.5 with their idle lanes, plus the
// split), 3 broadcasts, the accumulators in registers over a thread's rows. (12 accumulators,
// 4 x registers and a broadcast are 17 of 16 registers; the x rows as FMA memory operands
// instead, 9 loads a pixel, took 1.25-1.33x the time of what GCC makes of the 17.) Pixels
// whose patch crosses the row's ends load by masks
// (vmaskmovps: the lanes outside the row read nothing, give 0); a row outside x reads a zero
// row. The lanes hold exactly the reference's taps, so NaN and inf reach dw where the
// reference puts them. Lane sums flushed to doubles per thread every kFlushPixels pixels,
// the threads' doubles added in thread order (deterministic for a fixed thread count).
#include "cpu/few_channel_s2w.h"

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

constexpr int64_t kParallelWork = 1 << 21;  // as direct_conv.cpp
constexpr int64_t kFlushPixels = 1 << 13;

struct Acc {
  __m256 a[4][3];
};

}  // namespace

bool s2w_rows3_avx2(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                    float* db) {
  if (!s2w_avx2_shape(g) || g.c != 3) return false;
  constexpr int C = 3;
  constexpr int kDw = 81, kPart = kDw + C;
  const int64_t H = g.h, W = g.w, OH = g.oh, OW = g.ow, pl = g.win.pl, pt = g.win.pt;
  // Pixels whose patch lies inside the row: 2*ox - pl >= 0 and 2*ox - pl + 2 <= W - 1.
  const int64_t in0 = std::min(OW, (pl + 1) / 2);
  const int64_t in1 = std::max(in0, std::min(OW, (W - 3 + pl) >= 0 ? (W - 3 + pl) / 2 + 1 : 0));
  std::vector<int32_t> mask((size_t)(8 * OW));  // pixel ox's lane masks at 8*ox
  std::vector<uint8_t> nine((size_t)OW);
  for (int64_t ox = 0; ox < OW; ++ox) {
    for (int k = 0; k < 8; ++k) {
      const int64_t col = 2 * ox - pl + k / 3;
      mask[(size_t)(8 * ox + k)] = col >= 0 && col < W ? -1 : 0;
    }
    const int64_t last = 2 * ox - pl + 2;
    nine[(size_t)ox] = last >= 0 && last < W;
  }
  // A zero row for the rows outside x (read up to float 6*ox + 8 of the last pixel).
  const std::vector<float> zeros((size_t)(6 * OW + 16), 0.f);
  const int threads =
      g.n * OH * OW * 9 * C * C < kParallelWork ? 1 : std::max(1, get_num_threads());
  // The x rows of the output row `ahead` rows on prefetched into L2 (from 1 MiB of x), as
  // few_channel_s2_patch.cpp.
  const bool far = 4 * g.n * H * W * C >= stride2::kPrefetchFromBytes;
  const int64_t ahead = std::max<int64_t>(2, (96 + OW - 1) / OW);
  std::vector<double> part((size_t)threads * kPart, 0.0);
  int used = 1;
  parallel_region(threads, [&] {
    note_team();
#pragma omp single
    used = omp_get_num_threads();
    Acc acc{};
    __m256 dbv[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t pending = 0;
    auto flush = [&] {
      double* mine = part.data() + omp_get_thread_num() * kPart;
      alignas(32) float l[8];
      for (int ky = 0; ky < 3; ++ky)
        for (int co = 0; co < 3; ++co) {
          _mm256_store_ps(l, acc.a[ky][co]);
          for (int k = 0; k < 8; ++k) mine[((ky * 3 + k / 3) * 3 + k % 3) * 3 + co] += l[k];
        }
      for (int co = 0; co < 3; ++co) {
        _mm256_store_ps(l, acc.a[3][co]);
        for (int ky = 0; ky < 3; ++ky) mine[((ky * 3 + 2) * 3 + 2) * 3 + co] += l[ky];
      }
      for (int j = 0; j < 3; ++j) {
        _mm256_store_ps(l, dbv[j]);
        for (int k = 0; k < 8; ++k) mine[kDw + (8 * j + k) % 3] += l[k];
      }
      acc = Acc{};
      for (auto& v : dbv) v = _mm256_setzero_ps();
      pending = 0;
    };
    // Thread t's output rows [it0, it1) (static chunks: the accumulators stay in registers
    // across rows; a function call per row segment storing and reloading its 12 was 1.2x
    // the time at 14x14).
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t total = g.n * OH, chunk = (total + nt - 1) / nt;
    const int64_t it0 = std::min(total, t * chunk), it1 = std::min(total, it0 + chunk);
    __m256 a[4][3];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
#pragma GCC unroll 3
      for (int co = 0; co < 3; ++co) a[k][co] = _mm256_setzero_ps();
    for (int64_t it = it0; it < it1; ++it) {
      const int64_t n = it / OH, oy = it % OH;
      const float* rows[3];
      for (int ky = 0; ky < 3; ++ky) {
        const int64_t r = 2 * oy + ky - pt;
        rows[ky] = r >= 0 && r < H ? x + ((n * H + r) * W - pl) * C : zeros.data();
      }
      const float* r0 = rows[0];
      const float* r1 = rows[1];
      const float* r2 = rows[2];
      const float* d = dy + it * OW * C;
      if (far && it + ahead < it1) {  // the rows row it + ahead reads first
        const int64_t n1 = (it + ahead) / OH, oy1 = (it + ahead) % OH;
        const int64_t q0 = std::max<int64_t>(0, 2 * oy1 - pt + (oy1 > 0));
        const int64_t q1 = std::min(H, 2 * oy1 + 3 - pt);
        for (const char* p = (const char*)(x + (n1 * H + q0) * W * C);
             p < (const char*)(x + (n1 * H + std::max(q0, q1)) * W * C); p += 64)
          __builtin_prefetch(p, 0, 2);
      }
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int64_t off = 6 * ox;
        const float* dp = d + 3 * ox;
        if (ox >= in0 && ox < in1) {
          const __m256 v3 =
              _mm256_setr_ps(r0[off + 8], r1[off + 8], r2[off + 8], 0.f, 0.f, 0.f, 0.f, 0.f);
          const __m256 x0 = _mm256_loadu_ps(r0 + off), x1 = _mm256_loadu_ps(r1 + off),
                       x2 = _mm256_loadu_ps(r2 + off);
#pragma GCC unroll 3
          for (int co = 0; co < 3; ++co) {
            const __m256 dv = _mm256_broadcast_ss(dp + co);
            a[0][co] = _mm256_fmadd_ps(x0, dv, a[0][co]);
            a[1][co] = _mm256_fmadd_ps(x1, dv, a[1][co]);
            a[2][co] = _mm256_fmadd_ps(x2, dv, a[2][co]);
            a[3][co] = _mm256_fmadd_ps(v3, dv, a[3][co]);
          }
        } else {  // the patch crosses a row end: masked loads
          const bool n9 = nine[(size_t)ox];
          const __m256 v3 = _mm256_setr_ps(n9 ? r0[off + 8] : 0.f, n9 ? r1[off + 8] : 0.f,
                                           n9 ? r2[off + 8] : 0.f, 0.f, 0.f, 0.f, 0.f, 0.f);
          const __m256i m = _mm256_loadu_si256((const __m256i*)(mask.data() + 8 * ox));
          const __m256 x0 = _mm256_maskload_ps(r0 + off, m);
          const __m256 x1 = _mm256_maskload_ps(r1 + off, m);
          const __m256 x2 = _mm256_maskload_ps(r2 + off, m);
#pragma GCC unroll 3
          for (int co = 0; co < 3; ++co) {
            const __m256 dv = _mm256_broadcast_ss(dp + co);
            a[0][co] = _mm256_fmadd_ps(x0, dv, a[0][co]);
            a[1][co] = _mm256_fmadd_ps(x1, dv, a[1][co]);
            a[2][co] = _mm256_fmadd_ps(x2, dv, a[2][co]);
            a[3][co] = _mm256_fmadd_ps(v3, dv, a[3][co]);
          }
        }
      }
      if (db) {  // lane l of dbv[j] sums channel (8 j + l) % 3
        const int64_t count = OW * C;
        int64_t q = 0;
        for (; q + 24 <= count; q += 24)
          for (int j = 0; j < 3; ++j) dbv[j] = _mm256_add_ps(dbv[j], _mm256_loadu_ps(d + q + 8 * j));
        for (int j = 0; j < 3 && q < count; ++j, q += 8) {
          // the last partial registers by masked loads (a scalar copy into a stack register
          // and its reload, no store forwarding, was 30% of an N=256 14x14 C=3 pass)
          const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
          const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)std::min<int64_t>(8, count - q)), lane);
          dbv[j] = _mm256_add_ps(dbv[j], _mm256_maskload_ps(d + q, m));
        }
      }
      pending += OW;
      if (pending >= kFlushPixels) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k)
#pragma GCC unroll 3
          for (int co = 0; co < 3; ++co) acc.a[k][co] = a[k][co], a[k][co] = _mm256_setzero_ps();
        flush();
      }
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
#pragma GCC unroll 3
      for (int co = 0; co < 3; ++co) acc.a[k][co] = a[k][co];
    flush();
  });
  s2w_sum_parts(part.data(), used, kPart, kDw, dw, db);
  return true;
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool s2w_rows3_avx2(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

}  // namespace fastconv::cpu::detail

#endif
