// A float exp the compiler can vectorise. libm's expf is a call per element (glibc only
// offers its SIMD variants under -ffast-math), which made the softmax loop 10x slower than
// its memory traffic. Max relative error ~2e-7 (a few ulp) over the normal range.
//
// exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n*ln2 in [-ln2/2, ln2/2] (ln2 split in
// two so n*ln2_hi is exact), exp(r) by its degree-7 Taylor polynomial (truncation < 1e-8).
// Results below FLT_MIN flush to 0; above FLT_MAX give inf; NaN stays NaN.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/simd.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastconv::cpu {

inline float exp_vec(float x) {
  // Written so that NaN fails both comparisons and becomes a finite xc (the int conversion
  // below is then always defined); NaN is restored at the end. No libm calls: vectorisable.
  float xc = x > -87.5f ? x : -87.5f;
  xc = xc < 89.f ? xc : 89.f;  // n <= 128; above ln(FLT_MAX) = 88.72 the product overflows to inf
  // Round to nearest by the 1.5*2^23 trick: no libm call, so the loop stays vectorisable.
  const float shifter = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  float r = xc - n * 0.693145751953125f;
  r = r - n * 1.42860682030941723e-6f;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  // 2^(n-1) from its exponent bits, times 2: covers n in [-125, 128] without overflowing
  // the exponent field; n = -126 gives bits 0, i.e. 0 (underflow).
  const int32_t bits = ((int32_t)n + 126) << 23;
  const float scale = __builtin_bit_cast(float, bits);
  const float y = p * scale * 2.f;
  return x != x ? x : y;
}

// exp_vec on vectors of any width F (the same operations, the same results; a NaN's payload
// may differ). Spelled with vectors, the clamps are min/max (GCC if-converted the scalar
// version's into masked arithmetic, ~25% slower in L1), and two more steps go:
// - (c > x ? c : x) is maxps(c, x), which keeps x when it is NaN: a NaN runs through n, r
//   and p into the result, and the final NaN select of exp_vec is not needed (on 16 lanes
//   GCC emits a compare and a masked move for it: clamp_low / clamp_high spell maxps out);
// - round(x / ln2) is read from the bits of t = x / ln2 + 1.5 * 2^23 (they are
//   0x4B400000 + n, and the 0x4B400000 shifts out of 32 bits below), not by an int
//   conversion, which for a NaN n would be out of range.
// 24 -> 19 vector operations per exp, 16 with AVX-512's vscalefps on 16 lanes (whose
// results below FLT_MIN are subnormals, not 0); timings in RESULTS.md (2026-12-07, helper S).

// max(x, lo) and min(x, hi) that keep a NaN x. GCC lowers (x < lo ? lo : x) on 16 lanes to a
// compare and a masked move (it does not match maxps(lo, x), whose NaN rule, "the second
// operand", is the same): two operations per clamp where the intrinsic is one. Softmax forward
// 1.07-1.13x, sigmoid 1.16x, tanh 1.13x (1 thread, Zen 4, paired, 2026-12-07). The 256-bit
// intrinsics at the avx2 level measured mixed (softmax 0.93-1.09x), so there only callers
// that measured faster ask for them (kMinMax256: sigmoid and tanh, activation.cpp act_run).
// On 8 lanes GCC 12 emits a compare and a vblendvps per clamp, both on the chain of one exp,
// whose loop is bound by latency (Zen 3: bias + sigmoid over 4704 floats in L1, 0.545 ->
// 0.470 ns a float with vmaxps / vminps; the same bits, NaN and +-inf included).
template <typename F, bool kMinMax256 = false>
inline F clamp_low(F x, float lo) {
#if defined(__AVX512F__)
  if constexpr (sizeof(F) == 64) return (F)_mm512_max_ps(_mm512_set1_ps(lo), (__m512)x);
#endif
#if defined(__AVX2__)
  if constexpr (kMinMax256 && sizeof(F) == 32) return (F)_mm256_max_ps(_mm256_set1_ps(lo), (__m256)x);
#endif
  return x < lo ? F{} + lo : x;
}
template <typename F, bool kMinMax256 = false>
inline F clamp_high(F x, float hi) {
#if defined(__AVX512F__)
  if constexpr (sizeof(F) == 64) return (F)_mm512_min_ps(_mm512_set1_ps(hi), (__m512)x);
#endif
#if defined(__AVX2__)
  if constexpr (kMinMax256 && sizeof(F) == 32) return (F)_mm256_min_ps(_mm256_set1_ps(hi), (__m256)x);
#endif
  return x > hi ? F{} + hi : x;
}

template <typename F, bool kMinMax256 = false>
inline F exp_lanes(F x) {
#if defined(__AVX512F__)
  constexpr bool kScalef = sizeof(F) == 64;
#else
  constexpr bool kScalef = false;
#endif
  // vscalefps (below) rounds to subnormals where the exponent bits flush to 0, hence its
  // lower clamp: 2^-150.04 = exp(-104) rounds to 0, and so does -inf.
  constexpr float kLow = kScalef ? -104.f : -87.5f;
  typedef uint32_t U __attribute__((vector_size(sizeof(F))));
  F xc = clamp_low<F, kMinMax256>(x, kLow);  // -inf -> kLow (2^n underflows to 0)
  xc = clamp_high<F, kMinMax256>(xc, 89.f);  // +inf -> 89 (overflows to inf)
  const F shifter = F{} + 12582912.0f;
  const F t = xc * 1.44269504088896341f + shifter;
  const F n = t - shifter;
  F r = xc - n * 0.693145751953125f;
  r = r - n * 1.42860682030941723e-6f;
  F p = F{} + 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
#if defined(__AVX512F__)
  // p * 2^n in one instruction (overflow to inf) for the four steps below.
  if constexpr (kScalef) return (F)_mm512_scalef_ps((__m512)p, (__m512)n);
#endif
  const U bits = ((U)t + 126u) << 23;  // (n + 126) << 23: 2^(n-1), as exp_vec
  return p * (F)bits * 2.f;
}

// fn applied to a 16-lane vector in pieces one register wide (simd.h f32xR): below AVX-512
// GCC 12 lowers the 16-lane compare-and-select of exp_lanes to scalar code (sigmoid on
// LeNet's (256, 28, 28, 6) conv output: 4.5 ms at the avx2 level against 0.54 at avx512).
template <typename Fn>
inline f32x16 by_register(f32x16 x, Fn fn) {
  if constexpr (kRegLanes == 16) {
    return fn(x);
  } else {
    f32x16 out;
    for (int i = 0; i < 16; i += kRegLanes) {
      f32xR piece;
      std::memcpy(&piece, (const float*)&x + i, sizeof piece);
      piece = fn(piece);
      std::memcpy((float*)&out + i, &piece, sizeof piece);
    }
    return out;
  }
}

inline f32x16 exp16(f32x16 x) {
  return by_register(x, [](auto v) { return exp_lanes(v); });
}

// tanh without libm (std::tanh is a call per element: bias+tanh ran at 1% of copy bandwidth).
// |x| >= 0.55: 1 - 2/(exp(2|x|) + 1), where the result is >= 0.5 so nothing cancels (error a
// few ulp from exp_vec); below, the odd Taylor series to x^17 (next term < 5e-9 relative at
// 0.55). Both are computed and one selected, so the loop stays branch-free. exp overflow gives
// 2/inf = 0, i.e. +-1; NaN stays NaN (it fails the |x| < 0.55 test and exp_vec keeps it).
inline float tanh_vec(float x) {
  const float ax = std::fabs(x);
  const float e = exp_vec(2.f * ax);
  const float big = std::copysign(1.f - 2.f / (e + 1.f), x);
  const float x2 = x * x;
  float p = 6404582.f / 10854718875.f;
  p = p * x2 - 929569.f / 638512875.f;
  p = p * x2 + 21844.f / 6081075.f;
  p = p * x2 - 1382.f / 155925.f;
  p = p * x2 + 62.f / 2835.f;
  p = p * x2 - 17.f / 315.f;
  p = p * x2 + 2.f / 15.f;
  p = p * x2 - 1.f / 3.f;
  const float small = std::copysign(x + x * x2 * p, x);  // keeps tanh(-0) = -0
  return ax < 0.55f ? small : big;
}

// 16-lane twins of the activation formulas above (same operations, same results).
inline f32x16 sigmoid16(f32x16 z) { return 1.0f / (1.0f + exp16(-z)); }

template <typename F, bool kMinMax256 = false>
inline F tanh_lanes(F x) {
  using I = decltype(x < x);
  const auto abs = [](F v) { return (F)((I)v & 0x7fffffff); };
  const auto copysign = [](F mag, F sign) {
    return (F)(((I)mag & 0x7fffffff) | ((I)sign & (int32_t)0x80000000));
  };
  const F ax = abs(x);
  const F e = exp_lanes<F, kMinMax256>(2.f * ax);
  const F big = copysign(1.f - 2.f / (e + 1.f), x);
  const F x2 = x * x;
  F p = F{} + 6404582.f / 10854718875.f;
  p = p * x2 - 929569.f / 638512875.f;
  p = p * x2 + 21844.f / 6081075.f;
  p = p * x2 - 1382.f / 155925.f;
  p = p * x2 + 62.f / 2835.f;
  p = p * x2 - 17.f / 315.f;
  p = p * x2 + 2.f / 15.f;
  p = p * x2 - 1.f / 3.f;
  const F small = copysign(x + x * x2 * p, x);
  return ax < 0.55f ? small : big;
}

inline f32x16 tanh16(f32x16 x) {
  return by_register(x, [](auto v) { return tanh_lanes(v); });
}

}  // namespace fastconv::cpu
