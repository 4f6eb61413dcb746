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

namespace fastconv::cpu {

inline float exp_vec(float x) {
  // Written so that NaN fails both comparisons and becomes a finite xc (the int conversion
  // below is then always defined); NaN is restored at the end. No libm calls: vectorisable.
  float xc = x > -87.5f ? x : -87.5f;
  xc = xc < 88.5f ? xc : 88.5f;
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
  return x > 88.7228f ? INFINITY : (x != x ? x : y);
}

// exp_vec on vectors of any width F (the same operations, bit-identical results). GCC
// if-converts the scalar version's clamps into masked arithmetic when it vectorises the loop;
// spelled with vectors, the clamps are min/max and the loop runs ~25% faster (measured in L1).
template <typename F>
inline F exp_lanes(F x) {
  using I = decltype(x < x);  // the int32 vector of the same width
  F xc = x > -87.5f ? x : F{} - 87.5f;  // NaN -> -87.5; restored at the end
  xc = xc < 88.5f ? xc : F{} + 88.5f;
  const F shifter = F{} + 12582912.0f;
  const F n = (xc * 1.44269504088896341f + shifter) - shifter;
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
  const I bits = (__builtin_convertvector(n, I) + 126) << 23;
  const F y = p * (F)bits * 2.f;
  return x > 88.7228f ? F{} + INFINITY : (x != x ? x : y);
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

template <typename F>
inline F tanh_lanes(F x) {
  using I = decltype(x < x);
  const auto abs = [](F v) { return (F)((I)v & 0x7fffffff); };
  const auto copysign = [](F mag, F sign) {
    return (F)(((I)mag & 0x7fffffff) | ((I)sign & (int32_t)0x80000000));
  };
  const F ax = abs(x);
  const F e = exp_lanes(2.f * ax);
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
