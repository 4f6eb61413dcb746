// The per-pixel map of a 1x1 conv with IN, OUT <= 8 channels at avx2 (8-float ymm registers,
// 16 of them): a pixel's OUT channels in one register, the IN weight rows held in registers
// for the whole call, R = 8 pixels in flight (8 chains of IN FMAs cover the FMA latency).
//
// Why: below AVX-512 the 5..8-channel maps ran on planar registers (narrow_pointwise_planar.h
// map<C, C, SW>): at C = 6 a register of 8 pixels took 6 loads, 36 FMAs and a split and a merge
// of 6 registers, each output register from 3 pairs of two-source permutes (2 vpermps and a
// blend each at avx2) and 2 blends: over 100 shuffles for 8 pixels, on the two shuffle pipes.
// The sweep's 1x1 s1 C=6 forward and backward data ran at 0.17-0.31 of their roofline (issue
// 18 item 3, 2026-12-07i). narrow_pointwise.cpp's map_group_native (a call per 4 pixels, the
// weights reloaded per call, Cin a run-time loop, each pixel's OUT floats stored through the
// stack: perf, avx2) was faster than the planar map already (1x1 s1 C=6 0.72x) but far from
// the FMAs' pace. Here a pixel costs IN broadcasts, IN FMAs and one store.
// Stores: where the pixels are contiguous in dst (dst_step == OUT) a pixel's 8 lanes are
// stored whole, its lanes OUT..7 running onto the next pixel (at OUT = 3 the next two), which
// are stored after it and overwrite them; the call's last pixels (those whose 8 lanes would
// reach past it), and every pixel where dst has gaps (strided backward data: the skipped
// pixels' zeros), store exactly OUT floats. Nothing outside the call's pixels
// is written. Each lane sums bias, then i = 0..IN-1, as the other maps do (a NaN or inf reaches
// only its own pixel's outputs: lanes OUT..7 of a pixel are never kept).
#pragma once
#include <algorithm>
#include <cstdint>

#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail::pixel_regs {

#if defined(__AVX2__) && !defined(__AVX512F__)
constexpr bool kCompiled = true;

// The first N (1..8) lanes of v to p; nothing past p + N is written.
template <int N>
[[gnu::always_inline]] inline void store_first(float* p, f32xR v) {
  const __m256 y = (__m256)v;
  if constexpr (N == 8) {
    _mm256_storeu_ps(p, y);
    return;
  }
  __m128 lo = _mm256_castps256_ps128(y);
  constexpr int kLow = N >= 4 ? 4 : 0;
  if constexpr (N >= 4) {
    _mm_storeu_ps(p, lo);
    lo = _mm256_extractf128_ps(y, 1);
  }
  constexpr int rest = N - kLow;  // 0..3 floats of `lo` to p + kLow
  if constexpr (rest >= 2) _mm_storel_pi((__m64*)(p + kLow), lo);
  if constexpr (rest == 1) _mm_store_ss(p + kLow, lo);
  if constexpr (rest == 3) _mm_store_ss(p + kLow + 2, _mm_movehl_ps(lo, lo));
}

// dst[p*dst_step + o] = bias[o] + sum_i src[p*src_step + i] * w[i*ldw + o], o < OUT, p < count.
// w's rows and bias hold 8 readable floats each, zero from OUT on.
// PAIRS (a strided backward data's dx row with W = 2 OW): dst_step is 2 OUT, and each pixel
// writes its OUT floats and the OUT zeros of the pixel the stride skips after it (lanes OUT..7
// cleared, then zeros past the register), so that the row needs no zeroing first.
template <int IN, int OUT, bool PAIRS = false>
void map(const float* src, int64_t src_step, float* dst, int64_t dst_step, int64_t count,
         const float* w, int64_t ldw, const float* bias) {
  static_assert(IN >= 1 && IN <= 8 && OUT >= 1 && OUT <= 8 && kRegLanes == 8);
  static_assert(!PAIRS || OUT >= 3);
  // IN weight registers, R accumulators, a broadcast (the bias reloaded where none is left)
  constexpr int R = IN <= 6 ? 8 : 6;
  f32xR wv[IN];
#pragma GCC unroll 8
  for (int i = 0; i < IN; ++i) wv[i] = loadR(w + i * ldw);
  const f32xR b = loadR(bias);
  // floats a pixel writes; pixels after a pixel that its whole store runs onto (2 at OUT = 3)
  constexpr int P = PAIRS ? 2 * OUT : OUT;
  constexpr int kOnto = P >= 8 ? 0 : (8 - P + P - 1) / P;
  const bool overlap = PAIRS || dst_step == OUT;
  if (PAIRS) dst_step = P;
  const f32xR keep = (f32xR)_mm256_cmpgt_epi32(_mm256_set1_epi32(OUT), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  auto put = [&](float* d, f32xR v, bool whole) {
    if constexpr (PAIRS) {
      v = (f32xR)_mm256_and_ps((__m256)v, (__m256)keep);  // exact zeros, whatever lanes OUT..7 held
      if constexpr (P >= 8) {
        storeR(d, v);
        if constexpr (P > 8) store_first<P - 8>(d + 8, f32xR{});
      } else {
        if (whole) return storeR(d, v);
        store_first<P>(d, v);
      }
    } else {
      if (OUT < 8 && whole) return storeR(d, v);
      store_first<OUT>(d, v);
    }
  };
  int64_t p = 0;
  for (; p + R <= count; p += R) {
    const float* s = src + p * src_step;
    float* d = dst + p * dst_step;
    f32xR a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a[r] = b;
#pragma GCC unroll 8
    for (int i = 0; i < IN; ++i)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) a[r] += (f32xR)_mm256_broadcast_ss(s + r * src_step + i) * wv[i];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) put(d + r * dst_step, a[r], overlap && p + r + kOnto < count);
  }
  for (; p < count; ++p) {  // the last count % R pixels one at a time
    const float* s = src + p * src_step;
    f32xR a = b;
#pragma GCC unroll 8
    for (int i = 0; i < IN; ++i) a += (f32xR)_mm256_broadcast_ss(s + i) * wv[i];
    put(dst + p * dst_step, a, overlap && p + kOnto < count);
  }
}
#else
constexpr bool kCompiled = false;
#endif

}  // namespace fastconv::cpu::detail::pixel_regs
