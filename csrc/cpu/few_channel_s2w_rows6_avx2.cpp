// The weight pass of 3x3 stride-2 convs with C = 6 channels in and out at avx2, straight from
// the NHWC rows (no planes), as few_channel_s2w_rows3_avx2.cpp does C = 3.
//
// Why: on column-phase planes (this stop's first version, few_channel_s2w_avx2.cpp at commit
// cf4fd24) the split of x cost shuffles, and the planes' zero column and rows between images
// left lanes idle: at 7x7 16 outputs took 25 lane rows of 5 (64% of the FMAs real), at 14x14
// 78%. Paired against them (1 thread, CPU time, the AVX2-only EPYC): N=256 7x7 0.46, 14x14
// 0.61, 28x28 0.82-0.88, 56x56 0.96, 112x112 0.86, N=32 28x28 0.72, N=1 112x112 0.64.
//
// Here output pixel (oy, ox)'s patch row ky is 18 contiguous floats of x (columns 2*ox - pl ..
// + 2, 6 channels each: float f is kx = f / 6, ci = f % 6): two registers (floats 0..15) and
// floats 16, 17, the three rows' pairs packed into lanes 2*ky, 2*ky + 1 of a seventh register.
// 7 registers x 6 output channels are 42 accumulators: a block of output rows is walked in 4
// passes (kernel row 0, 1, 2: 2 registers x 6 channels, 12 accumulators, 2 loads and 6
// broadcasts a pixel; then the packed floats: 6 accumulators), 42 FMAs a pixel for 324
// multiply-adds, every lane real. Patches crossing a row end load by masks (vmaskmovps), rows
// outside x read a zero row: the lanes hold the reference's taps exactly. Lane sums flushed to
// doubles per thread, the threads' doubles added in thread order.
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
// A block's x rows within this many bytes (its 4 passes read them again from L1 / L2).
constexpr int64_t kBlockBytes = 24 << 10;
}  // namespace

bool s2w_rows6_avx2(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                    float* db) {
  if (!s2w_avx2_shape(g) || g.c != 6) return false;
  constexpr int C = 6;
  constexpr int kDw = 324, kPart = kDw + C;
  const int64_t H = g.h, W = g.w, OH = g.oh, OW = g.ow, pl = g.win.pl, pt = g.win.pt;
  // Pixels whose patch lies inside the row: 2*ox - pl >= 0 and 2*ox - pl + 2 <= W - 1.
  const int64_t in0 = std::min(OW, (pl + 1) / 2);
  const int64_t in1 = std::max(in0, std::min(OW, (W - 3 + pl) >= 0 ? (W - 3 + pl) / 2 + 1 : 0));
  std::vector<int32_t> mask((size_t)(16 * OW));  // pixel ox's two lane masks at 16*ox
  std::vector<uint8_t> third((size_t)OW);        // whether column 2*ox - pl + 2 is in the row
  for (int64_t ox = 0; ox < OW; ++ox) {
    for (int f = 0; f < 16; ++f) {
      const int64_t col = 2 * ox - pl + f / 6;
      mask[(size_t)(16 * ox + f)] = col >= 0 && col < W ? -1 : 0;
    }
    const int64_t last = 2 * ox - pl + 2;
    third[(size_t)ox] = last >= 0 && last < W;
  }
  const std::vector<float> zeros((size_t)(12 * OW + 24), 0.f);
  const int threads =
      g.n * OH * OW * 9 * C * C < kParallelWork ? 1 : std::max(1, get_num_threads());
  const int64_t rows_block =
      std::max<int64_t>(1, std::min<int64_t>(std::max<int64_t>(1, kBlockBytes / (2 * W * C * 4)),
                                             std::max<int64_t>(4, (256 + OW - 1) / OW)));
  const bool far = 4 * g.n * H * W * C >= stride2::kPrefetchFromBytes;
  std::vector<double> part((size_t)threads * kPart, 0.0);
  int used = 1;
  parallel_region(threads, [&] {
    note_team();
#pragma omp single
    used = omp_get_num_threads();
    __m256 tab[7][6];  // the lane accumulators between blocks
    __m256 dbv[3];
    for (auto& r : tab)
      for (auto& v : r) v = _mm256_setzero_ps();
    for (auto& v : dbv) v = _mm256_setzero_ps();
    int64_t pending = 0;
    auto flush = [&] {
      double* mine = part.data() + omp_get_thread_num() * kPart;
      alignas(32) float l[8];
      for (int k = 0; k < 6; ++k)  // kernel row k / 2, floats 8*(k % 2) + lane
        for (int co = 0; co < 6; ++co) {
          _mm256_store_ps(l, tab[k][co]);
          for (int i = 0; i < 8; ++i) {
            const int f = 8 * (k % 2) + i;
            mine[(((k / 2) * 3 + f / 6) * 6 + f % 6) * 6 + co] += l[i];
          }
        }
      for (int co = 0; co < 6; ++co) {  // lane 2*ky + j: kx = 2, ci = 4 + j
        _mm256_store_ps(l, tab[6][co]);
        for (int ky = 0; ky < 3; ++ky)
          for (int j = 0; j < 2; ++j) mine[((ky * 3 + 2) * 6 + 4 + j) * 6 + co] += l[2 * ky + j];
      }
      for (int j = 0; j < 3; ++j) {  // lane l of dbv[j] sums channel (8 j + l) % 6
        _mm256_store_ps(l, dbv[j]);
        for (int i = 0; i < 8; ++i) mine[kDw + (8 * j + i) % 6] += l[i];
      }
      for (auto& r : tab)
        for (auto& v : r) v = _mm256_setzero_ps();
      for (auto& v : dbv) v = _mm256_setzero_ps();
      pending = 0;
    };
    auto row_of = [&](int64_t it, int ky) -> const float* {
      const int64_t n = it / OH, r = 2 * (it % OH) + ky - pt;
      return r >= 0 && r < H ? x + ((n * H + r) * W - pl) * C : zeros.data();
    };
    // Thread t's output rows [it0, it1), static chunks.
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t total = g.n * OH, chunk = (total + nt - 1) / nt;
    const int64_t it0 = std::min(total, t * chunk), it1 = std::min(total, it0 + chunk);
    for (int64_t b0 = it0; b0 < it1; b0 += rows_block) {
      const int64_t b1 = std::min(it1, b0 + rows_block);
      if (far && b1 < it1) {  // the next block's x rows into L2
        const int64_t e1 = std::min(it1, b1 + rows_block);
        const float* p0 = row_of(b1, 0);
        const float* p1 = row_of(e1 - 1, 2);
        if (p0 != zeros.data() && p1 != zeros.data() && p1 > p0)
          for (const char* p = (const char*)p0; p < (const char*)(p1 + W * C); p += 64)
            __builtin_prefetch(p, 0, 2);
      }
      for (int ky = 0; ky < 3; ++ky) {
        __m256 a[2][6];
#pragma GCC unroll 2
        for (int v = 0; v < 2; ++v)
#pragma GCC unroll 6
          for (int co = 0; co < 6; ++co) a[v][co] = tab[2 * ky + v][co];
        for (int64_t it = b0; it < b1; ++it) {
          const float* r = row_of(it, ky);
          const float* d = dy + it * OW * C;
          for (int64_t ox = 0; ox < OW; ++ox) {
            __m256 x0, x1;
            if (ox >= in0 && ox < in1) {
              x0 = _mm256_loadu_ps(r + 12 * ox);
              x1 = _mm256_loadu_ps(r + 12 * ox + 8);
            } else {
              const int32_t* m = mask.data() + 16 * ox;
              x0 = _mm256_maskload_ps(r + 12 * ox, _mm256_loadu_si256((const __m256i*)m));
              x1 = _mm256_maskload_ps(r + 12 * ox + 8, _mm256_loadu_si256((const __m256i*)(m + 8)));
            }
            const float* dp = d + 6 * ox;
#pragma GCC unroll 6
            for (int co = 0; co < 6; ++co) {
              const __m256 dv = _mm256_broadcast_ss(dp + co);
              a[0][co] = _mm256_fmadd_ps(x0, dv, a[0][co]);
              a[1][co] = _mm256_fmadd_ps(x1, dv, a[1][co]);
            }
          }
        }
#pragma GCC unroll 2
        for (int v = 0; v < 2; ++v)
#pragma GCC unroll 6
          for (int co = 0; co < 6; ++co) tab[2 * ky + v][co] = a[v][co];
      }
      {  // floats 16, 17 of the three rows: lanes 2*ky, 2*ky + 1
        __m256 a[6];
#pragma GCC unroll 6
        for (int co = 0; co < 6; ++co) a[co] = tab[6][co];
        for (int64_t it = b0; it < b1; ++it) {
          const float* r0 = row_of(it, 0) + 16;
          const float* r1 = row_of(it, 1) + 16;
          const float* r2 = row_of(it, 2) + 16;
          const float* d = dy + it * OW * C;
          for (int64_t ox = 0; ox < OW; ++ox) {
            __m256 tv = _mm256_setzero_ps();
            if (third[(size_t)ox]) {
              const __m128 lo = _mm_loadh_pi(_mm_castpd_ps(_mm_load_sd((const double*)(r0 + 12 * ox))),
                                             (const __m64*)(r1 + 12 * ox));
              const __m128 hi = _mm_castpd_ps(_mm_load_sd((const double*)(r2 + 12 * ox)));
              tv = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
            }
            const float* dp = d + 6 * ox;
#pragma GCC unroll 6
            for (int co = 0; co < 6; ++co) a[co] = _mm256_fmadd_ps(tv, _mm256_broadcast_ss(dp + co), a[co]);
          }
          if (db) {
            const int64_t count = OW * C;
            int64_t q = 0;
            for (; q + 24 <= count; q += 24)
              for (int j = 0; j < 3; ++j) dbv[j] = _mm256_add_ps(dbv[j], _mm256_loadu_ps(d + q + 8 * j));
            for (int j = 0; j < 3 && q < count; ++j, q += 8) {
              // the last partial registers by masked loads (see few_channel_s2w_rows3_avx2.cpp)
              const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
              const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)std::min<int64_t>(8, count - q)), lane);
              dbv[j] = _mm256_add_ps(dbv[j], _mm256_maskload_ps(d + q, m));
            }
          }
        }
#pragma GCC unroll 6
        for (int co = 0; co < 6; ++co) tab[6][co] = a[co];
      }
      pending += (b1 - b0) * OW;
      if (pending >= kFlushPixels) flush();
    }
    flush();
  });
  s2w_sum_parts(part.data(), used, kPart, kDw, dw, db);
  return true;
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

bool s2w_rows6_avx2(const ConvGeometry&, const float*, const float*, float*, float*) {
  return false;
}

}  // namespace fastconv::cpu::detail

#endif
