// Sixteen-lane float/int vectors (GCC/Clang vector extensions) for the channel loops of the
// bandwidth-bound kernels. Loops of a compile-time 16 iterations get fully unrolled into
// scalar code before GCC's vectoriser sees them, so the pooling kernels spell their vectors
// out; with -march=native on an AVX-512 machine each is one zmm register, elsewhere the
// compiler splits it. Loads and stores go through memcpy: any alignment, no aliasing UB.
#pragma once
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastconv::cpu {

constexpr int64_t kLanes = 16;
typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }
inline u8x16 load16(const uint8_t* p) {
  u8x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(uint8_t* p, u8x16 v) { std::memcpy(p, &v, sizeof v); }
// uint8 <-> int32 lanes. GCC 12 builds __builtin_convertvector(u8x16 -> i32x16) from 16
// scalar extracts (measured: max-pool backward 3x slower than its traffic), so AVX-512 gets
// the one-instruction intrinsics.
inline i32x16 widen16(const uint8_t* p) {
#if defined(__AVX512F__)
  return (i32x16)_mm512_maskz_cvtepu8_epi32(0xFFFF, _mm_loadu_si128((const __m128i*)p));
#else
  i32x16 v;
  for (int k = 0; k < 16; ++k) v[k] = p[k];
  return v;
#endif
}
inline void narrow16(uint8_t* p, i32x16 v) {
#if defined(__AVX512F__)
  _mm_storeu_si128((__m128i*)p, _mm512_mask_cvtepi32_epi8(_mm_setzero_si128(), 0xFFFF, (__m512i)v));
#else
  for (int k = 0; k < 16; ++k) p[k] = (uint8_t)v[k];
#endif
}
inline f32x16 splat16(float x) { return f32x16{} + x; }
inline i32x16 splat16(int32_t x) { return i32x16{} + x; }

}  // namespace fastconv::cpu
