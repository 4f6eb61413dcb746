// Shared by strided_pointwise.cpp (forward) and strided_pointwise_weights.cpp (weight pass):
// the channel range, the vector of a pixel's upper channels, the pixel cursor. AVX-512 only.
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

#include "common/geometry.h"

// GCC 12 warns about the undefined upper half of _mm512_castps512_ps256's argument (a known
// false positive of its headers, as in gemm.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace fastconv::cpu::detail::strided_pointwise {

constexpr int64_t kMinChannels = 17, kMaxChannels = 32;  // each side
// x's pixels are prefetched (into L2) this many pixels before their use: a strided conv skips
// rows and pixels, and the hardware prefetchers stop at every jump. 1 thread, ms, forward,
// paired (stop 36), distance 64 / 96 / 128 (prefetcht1): N=256 28x28 C=24 1.68/1.41/1.67,
// N=32 112x112 C=24 2.22/2.18/2.40, N=256 56x56 C=32 8.67/8.72/9.79; at 96 into L1
// (prefetcht0) 1.12-1.24x the time, into L3 (prefetcht2) even.
constexpr int64_t kAheadPixels = 96;
constexpr int64_t kParallelMacs = 1 << 21;  // as conv2d.cpp: below, one thread

// The upper channels 16..Cout-1 of a pixel: 8 lanes (Cout <= 24) or 16.
struct Hi8 {
  using V = __m256;
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V part(__m512 v) { return _mm512_castps512_ps256(v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, V v, __mmask16 m) { _mm256_mask_storeu_ps(p, (__mmask8)m, v); }
  static V load_prefix(const float* p, __mmask16 m) { return _mm256_maskz_loadu_ps((__mmask8)m, p); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V zero() { return _mm256_setzero_ps(); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
};
struct Hi16 {
  using V = __m512;
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V part(__m512 v) { return v; }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, V v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
  static V load_prefix(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V zero() { return _mm512_setzero_ps(); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
};

// Output pixel (n, oy, ox) and the x row its output row reads: pixels in y's order, across
// rows and images.
struct Cursor {
  const float* row;
  int64_t n, oy, ox;
  Cursor(const ConvGeometry& g, const float* x, int64_t p)
      : n(p / (g.oh * g.ow)), oy(p / g.ow % g.oh), ox(p % g.ow) {
    row = x + ((n * g.h + oy * g.win.sh) * g.w) * g.c;
  }
  const float* at(int64_t step) const { return row + ox * step; }
  void next(const ConvGeometry& g, int64_t row_step) {
    if (++ox < g.ow) return;
    ox = 0;
    if (++oy < g.oh) {
      row += row_step;
    } else {  // the next image (its first row; H may be odd)
      oy = 0, ++n;
      row += row_step - (g.oh * g.win.sh - g.h) * g.w * g.c;
    }
  }
};

}  // namespace fastconv::cpu::detail::strided_pointwise

#endif
