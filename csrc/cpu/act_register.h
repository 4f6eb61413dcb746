// relu / relu6 of a 16-lane vector before its store, shared by the kernels that fuse the
// inference plan's activation into their stores (depthwise.cpp, stem_conv.cpp).
#pragma once
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// act16<A>(v) for A in {Linear, Relu, Relu6}; NaN stays NaN, as relu_nan.
template <Activation A>
inline f32x16 act16(f32x16 v) {
#if defined(__AVX512F__)
  // max/min return their second operand when either is NaN: two instructions, where the
  // compare-and-select below compiles to compares into mask registers and masked moves.
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = (f32x16)_mm512_max_ps(_mm512_setzero_ps(), (__m512)v);
  if constexpr (A == Activation::Relu6) v = (f32x16)_mm512_min_ps(_mm512_set1_ps(6.f), (__m512)v);
#else
  // Both compares are false for NaN.
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = v < 0.f ? f32x16{} : v;
  if constexpr (A == Activation::Relu6) v = v > 6.f ? splat16(6.f) : v;
#endif
  return v;
}

}  // namespace fastconv::cpu::detail
