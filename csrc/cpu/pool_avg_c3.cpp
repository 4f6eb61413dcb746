// 2x2 stride-2 average pool forward at C = 3 (no padding) for the avx2 level: 8 outputs (24
// floats, three ymm registers) per step, each cell's floats fetched by an unaligned load at
// its own offset instead of being permuted out of two row registers.
//
// Why: pool_rows8.cpp's kPermute mode took 2 outputs (6 of 8 lanes) per vector and two
// vpermps and a blend per cell: 12 shuffles per 6 outputs, about a cycle per input float.
// That bound the call, not the memory: (256, 28, 28, 3), 2.4 MB in L2/L3, ran at 0.41 of a
// copy's speed, (256, 56, 56, 3) at 0.30 (sweep 2026-12-07i, 1 thread, Zen 3). Here window
// column b of an output is float 6 * ox + 3 * b + k of the row, so a load at offset B + 3b
// puts cell b where the load at B has cell 0: summing the four loads (two rows, two columns)
// gives the window sums of outputs whose cell 0 lies in the register, lane for lane, with no
// shuffle. A half register's 4 outputs floats (f0 .. f0 + 3 of the group's 24) have their cell 0
// at s(f) = 6 * (f / 3) + f % 3, within 8 floats of s(f0), so each half is one such sum,
// placed by one vpermps; two halves are blended into an output register: 2 shuffles per 8
// output floats instead of 16.
//
// The same additions in the same order as pool_rows8.cpp's forward (from +0, row-major:
// ((((0 + x00) + x01) + x10) + x11) * (1/4)), so the same floats.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/pool_index.h"
#include "cpu/pool_tasks.h"
#include "cpu/pool_tiling.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>

namespace fastconv::cpu::detail {

bool avg_c3_applies(const PoolGeometry& g) {
  const Window2d& w = g.win;
  return pool_rows8_applies(g) && g.c == 3 && w.kh == 2 && w.kw == 2 && g.ow >= 8;
}

namespace {

constexpr int64_t kC = 3, kGroup = 8;  // channels, outputs per step

// s(f): float f of an output group's 24 floats has its window's cell (0, 0) at float s(f)
// of the group's first input row (6 floats per output).
constexpr int src_of(int f) { return 6 * (f / 3) + f % 3; }

}  // namespace

void avg_forward_c3(const PoolGeometry& g, const float* x, float* y) {
  // Per half register j (output floats 4j .. 4j + 3): its load offset and its vpermps indices
  // (lanes 4 (j % 2) .. + 3, the others 0: blended away).
  __m256i idx[6];
  int base[6];
  for (int j = 0; j < 6; ++j) {
    const int f0 = 4 * j;
    base[j] = src_of(f0);
    int32_t v[8] = {};
    for (int l = 0; l < 4; ++l) v[4 * (j % 2) + l] = src_of(f0 + l) - base[j];  // 0 .. 7
    idx[j] = _mm256_loadu_si256((const __m256i*)v);
  }
  const float inv = pool_inv_count({0, 2}, {0, 2});
  const int64_t h0 = g.h, oh0 = g.oh, ow0 = g.ow, x_row0 = g.w * kC, y_row0 = g.ow * kC;
  const float* x_end0 = x + g.n * g.h * g.w * kC;
  const bool far = g.n * g.h * g.w * kC * (int64_t)sizeof(float) >= ((int64_t)8 << 20);
  for_each_task(g.n, kC, g.n * g.h * g.w * kC, [&](int64_t img, int64_t, int64_t) {
    // sizes, tables and pointers in locals of the body (see pool_rows8.cpp's forward_rows8)
    const int64_t h = h0, oh = oh0, ow = ow0, xr_n = x_row0, yr_n = y_row0;
    __m256i id[6];
    int64_t bs[6];
    for (int j = 0; j < 6; ++j) id[j] = idx[j], bs[j] = base[j];
    const float* xs = x;
    const float* x_end = x_end0;
    float* ys = y;
    const __m256 sc = _mm256_set1_ps(inv);
    const float scs = inv;
    const bool pf = far;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* r0 = xs + (img * h + 2 * oy) * xr_n;
      const float* r1 = r0 + xr_n;
      float* yo = ys + (img * oh + oy) * yr_n;
      // whole groups, then one group ending at the row's last output (overlapping the one
      // before: the same values rewritten)
      for (int64_t ox = 0; ox < ow; ox += kGroup) {
        const int64_t o0 = std::min(ox, ow - kGroup), e = 6 * o0;
        // pool_rows8.cpp's kFar, two output rows ahead (this loop runs faster than its): the
        // group's 48 floats, 3 lines, of both window rows. (256, 56, 56, 3), paired, ms: no
        // prefetch 1.17 / 0.84 against one row ahead 0.87 / 0.67; two rows ahead 0.67 / 0.75
        // against one row 0.83 / 0.81.
        if (pf && oy + 2 < oh)
          for (int l = 0; l < 48; l += 16) {
            _mm_prefetch((const char*)(r0 + 4 * xr_n + e + l), _MM_HINT_T0);
            _mm_prefetch((const char*)(r1 + 4 * xr_n + e + l), _MM_HINT_T0);
          }
        float* out = yo + o0 * kC;
        if (r1 + e + 49 <= x_end) {  // the last half's column-1 load reads float 48
          __m256 half[6];
#pragma GCC unroll 6
          for (int j = 0; j < 6; ++j) {
            const float* p0 = r0 + e + bs[j];
            const float* p1 = r1 + e + bs[j];
            __m256 s = _mm256_add_ps(_mm256_setzero_ps(), _mm256_loadu_ps(p0));
            s = _mm256_add_ps(s, _mm256_loadu_ps(p0 + kC));
            s = _mm256_add_ps(s, _mm256_loadu_ps(p1));
            s = _mm256_add_ps(s, _mm256_loadu_ps(p1 + kC));
            half[j] = _mm256_permutevar8x32_ps(s, id[j]);
          }
#pragma GCC unroll 3
          for (int k = 0; k < 3; ++k)
            _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(_mm256_blend_ps(half[2 * k], half[2 * k + 1], 0xF0), sc));
        } else {  // the tensor's last group: no read past x
          for (int f = 0; f < (int)(kGroup * kC); ++f) {
            const int64_t s = e + src_of(f);
            float v = 0.f;
            v += r0[s];
            v += r0[s + kC];
            v += r1[s];
            v += r1[s + kC];
            out[f] = v * scs;
          }
        }
      }
    }
  });
}

}  // namespace fastconv::cpu::detail

#endif
