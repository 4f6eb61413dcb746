// Row softmax at 1..8 classes at the avx2 level, 4 registers of rows (32 rows) a step to 4
// classes and 2 (16 rows) from 5: the planes path of softmax.cpp (softmax_forward_planes: C registers of 8 rows split into C
// planes by pixel_transpose.h, max / exp / sum / 1 / sum / scale down the planes, merged
// back) with 4 or 2 such blocks interleaved, and exp_nonpos (softmax_fwd_exp.h: exp_lanes with three
// operations fewer on x - max <= 0).
//
// Why: one block per step is one dependency chain (split, max, exp, sum, divide, scale,
// merge), and perf put the largest share of softmax_forward's samples on the instruction after
// the divide ((200704, 3), avx2, Zen 3): N=256 28x28 C=3 at 0.16 of a copy's speed and N=32
// 28x28 C=6 at 0.18 after the wider widths moved up (helper S, stop 39: family median 0.377).
//
// The same operations per lane in the same order as softmax_forward_planes: the same bits.
#include <cstdint>

#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"
#include "cpu/softmax_fwd_exp.h"
#include "cpu/softmax_rows.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>

namespace fastconv::cpu::detail {

namespace {

namespace pt = pixel_transpose;

template <int C, int G>
void pairs(int64_t steps, const float* x, float* y) {
  constexpr int64_t kStep = G * pt::L * C;  // floats per step
  parallel_region((steps * kStep >= kParallelGrain) ? 0 : 1, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t off = s * kStep;
      pt::vec p[G][C], m[G], sum[G];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) pt::load_split<C>(x + off + g * pt::L * C, p[g]), m[g] = p[g][0], sum[g] = pt::vec{};
#pragma GCC unroll 8
      for (int j = 1; j < C; ++j)
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) m[g] = p[g][j] > m[g] ? p[g][j] : m[g];
#pragma GCC unroll 8
      for (int j = 0; j < C; ++j)
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) p[g][j] = exp_nonpos(p[g][j] - m[g]), sum[g] += p[g][j];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) sum[g] = 1.f / sum[g];
#pragma GCC unroll 8
      for (int j = 0; j < C; ++j)
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) p[g][j] *= sum[g];
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) pt::merge_store<C>(y + off + g * pt::L * C, p[g]);
    }
  });
}

}  // namespace

int64_t softmax_forward_plane_pairs(int64_t n, int64_t c, const float* x, float* y) {
  switch (c) {
    // 4 registers a step to 4 classes (N=256 28x28 C=3: 0.93 of 2), 2 from 5 (at 6 and 8 the
    // planes of 4 blocks spill: 1.01 / 0.95 of 2)
#define FASTCONV_PAIRS(k)                                    \
  case k: {                                                  \
    constexpr int G = k <= 4 ? 4 : 2;                        \
    const int64_t steps = n / (G * pt::L);                   \
    if (steps > 0) pairs<k, G>(steps, x, y);                 \
    return steps * G * pt::L;                                \
  }
    FASTCONV_PAIRS(1) FASTCONV_PAIRS(2) FASTCONV_PAIRS(3) FASTCONV_PAIRS(4)
    FASTCONV_PAIRS(5) FASTCONV_PAIRS(6) FASTCONV_PAIRS(7) FASTCONV_PAIRS(8)
#undef FASTCONV_PAIRS
    default:
      return 0;
  }
}

}  // namespace fastconv::cpu::detail

#else

namespace fastconv::cpu::detail {

int64_t softmax_forward_plane_pairs(int64_t, int64_t, const float*, float*) { return 0; }

}  // namespace fastconv::cpu::detail

#endif
