// exp_lanes (fast_exp.h) for x <= 0 or NaN, softmax's x - max(row), at the avx2 level
// (softmax_fwd_blocks.cpp, softmax_fwd_planes.cpp, softmax_rows.cpp's wide rows): the same bits
// with three operations fewer. Its upper clamp (89) never applies; its lower one, (x < -87.5 ?
// -87.5 : x), is vmaxps(-87.5, x), which also keeps a NaN x (maxps returns its second operand
// when either is NaN); and the +126 of its exponent bits moves into the rounding constant: t =
// x / ln2 + (1.5 * 2^23 + 126) rounds exactly as t - 126 did (the two differ by an even
// integer, and both stay in [2^23, 2^24): an ulp of 1), so n = t - that constant is the same
// and t's bits are 0x4B400000 + n + 126, whose low 9 bits shifted left by 23 are exp_lanes'
// (n + 126) << 23 (0 <= n + 126 <= 126 here).
#pragma once
#include <cstdint>

#include "cpu/simd.h"

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>

namespace fastconv::cpu::detail {

inline f32xR exp_nonpos(f32xR x) {
  typedef uint32_t U __attribute__((vector_size(32)));
  const f32xR xc = (f32xR)_mm256_max_ps(_mm256_set1_ps(-87.5f), (__m256)x);
  const f32xR shifter = f32xR{} + (12582912.0f + 126.0f);
  const f32xR t = xc * 1.44269504088896341f + shifter;
  const f32xR n = t - shifter;
  f32xR r = xc - n * 0.693145751953125f;
  r = r - n * 1.42860682030941723e-6f;
  f32xR p = f32xR{} + 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const U bits = (U)t << 23;  // 2^(n-1), as exp_lanes
  return p * (f32xR)bits * 2.f;
}

}  // namespace fastconv::cpu::detail

#endif
