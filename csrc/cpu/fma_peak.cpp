// FMA peak probe: see fma_peak.h.
#include "cpu/fma_peak.h"

#include <immintrin.h>

#include <cstring>

namespace fastconv::cpu {

namespace {

// kChains independent chains, more than FMA latency (4 cycles) x FMA ports (2) on current x86
// cores, so the loop runs at the FMA throughput, not its latency: 24 with 32 vector registers
// (AVX-512), 12 with 16 (avx2, baseline), where 24 would leave chains in memory.
template <typename Vec, int kChains, typename Step>
int64_t chains(int64_t iters, Vec init, Step step) {
  Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = init;
  for (int64_t t = 0; t < iters; ++t) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = step(acc[i]);
  }
  Vec s = acc[0];
  for (int i = 1; i < kChains; ++i) s = s + acc[i];
  float lanes[sizeof(Vec) / sizeof(float)];  // keeps the chains live
  std::memcpy(lanes, &s, sizeof lanes);
  volatile float sink = lanes[0];
  (void)sink;
  return iters * kChains * (int64_t)(sizeof(Vec) / sizeof(float)) * 2;
}

}  // namespace

std::vector<int> fma_peak_widths() {
#if defined(__AVX512F__)
  return {128, 256, 512};
#elif defined(__AVX__) && defined(__FMA__)
  return {128, 256};
#else
  return {128};
#endif
}

int64_t fma_peak_loop(int bits, int64_t iters) {
  // x < 1 and a tiny y: the chains converge to a normal number, never overflow or denormals
  switch (bits) {
    case 128: {
      const __m128 x = _mm_set1_ps(0.999999f), y = _mm_set1_ps(1e-7f);
#if defined(__FMA__)
      return chains<__m128, 12>(iters, _mm_set1_ps(1.f), [&](__m128 a) { return _mm_fmadd_ps(a, x, y); });
#else
      return chains<__m128, 12>(iters, _mm_set1_ps(1.f),
                                [&](__m128 a) { return _mm_add_ps(_mm_mul_ps(a, x), y); });
#endif
    }
#if defined(__AVX__) && defined(__FMA__)
    case 256: {
      const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
#if defined(__AVX512F__)
      // 32 registers (ymm16-31 with AVX-512VL): the same 24 chains as the 512-bit loop
      return chains<__m256, 24>(iters, _mm256_set1_ps(1.f), [&](__m256 a) { return _mm256_fmadd_ps(a, x, y); });
#else
      return chains<__m256, 12>(iters, _mm256_set1_ps(1.f), [&](__m256 a) { return _mm256_fmadd_ps(a, x, y); });
#endif
    }
#endif
#if defined(__AVX512F__)
    case 512: {
      const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
      return chains<__m512, 24>(iters, _mm512_set1_ps(1.f), [&](__m512 a) { return _mm512_fmadd_ps(a, x, y); });
    }
#endif
    default:
      return 0;
  }
}

}  // namespace fastconv::cpu
