// Sixteen-lane float/int vectors (GCC/Clang vector extensions) for the channel loops of the
// bandwidth-bound kernels. Loops of a compile-time 16 iterations get fully unrolled into
// scalar code before GCC's vectoriser sees them, so the pooling kernels spell their vectors
// out; with -march=native on an AVX-512 machine each is one zmm register, elsewhere the
// compiler splits it. Loads and stores go through memcpy: any alignment, no aliasing UB.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastconv::cpu {

constexpr int64_t kLanes = 16;
typedef float f32x16 __attribute__((vector_size(64)));

// The level's own register: the compute-bound kernels (direct_conv.cpp) block their
// accumulators by its width and the number of such registers, so each level's code fits its
// register file. A 16-lane vector at the avx2 level is two ymm out of 16, and GCC spilled the
// blockings sized for 32 zmm (LeNet conv2's forward 18x slower than at avx512, slower than
// the baseline's). AVX-512: 16 floats, 32 registers; AVX2: 8, 16; SSE2 (baseline): 4, 16.
#if defined(__AVX512F__)
constexpr int kRegLanes = 16;
constexpr int kVectorRegisters = 32;
#elif defined(__AVX__)
constexpr int kRegLanes = 8;
constexpr int kVectorRegisters = 16;
#else
constexpr int kRegLanes = 4;
constexpr int kVectorRegisters = 16;
#endif
typedef float f32xR __attribute__((vector_size(4 * kRegLanes)));
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
// the one-instruction intrinsics, and AVX2 a two-instruction equivalent (the avx2 level
// had the same 16 extracts).
inline i32x16 widen16(const uint8_t* p) {
#if defined(__AVX512F__)
  return (i32x16)_mm512_maskz_cvtepu8_epi32(0xFFFF, _mm_loadu_si128((const __m128i*)p));
#elif defined(__AVX2__)
  const __m128i b = _mm_loadu_si128((const __m128i*)p);
  const __m256i halves[2] = {_mm256_cvtepu8_epi32(b), _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8))};
  i32x16 v;
  std::memcpy(&v, halves, sizeof v);
  return v;
#else
  i32x16 v;
  for (int k = 0; k < 16; ++k) v[k] = p[k];
  return v;
#endif
}
inline void narrow16(uint8_t* p, i32x16 v) {
#if defined(__AVX512F__)
  _mm_storeu_si128((__m128i*)p, _mm512_mask_cvtepi32_epi8(_mm_setzero_si128(), 0xFFFF, (__m512i)v));
#elif defined(__AVX2__)
  // lanes are 0..255 (window positions): saturating packs keep them; packus_epi32 works per
  // 128-bit half (lanes 0-3, 8-11, 4-7, 12-15), the permute restores the order
  __m256i halves[2];
  std::memcpy(halves, &v, sizeof v);
  const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(halves[0], halves[1]), 0xD8);
  _mm_storeu_si128((__m128i*)p, _mm_packus_epi16(_mm256_castsi256_si128(w16),
                                                 _mm256_extracti128_si256(w16, 1)));
#else
  for (int k = 0; k < 16; ++k) p[k] = (uint8_t)v[k];
#endif
}
// An empty asm that claims to modify v, so GCC keeps it in a register as computed (no folding
// it into each use). Only where a 16-lane vector is one register (AVX-512); elsewhere there is
// no such register for the operand, and nothing to prevent.
template <typename V>
inline void opaque(V& v) {
#if defined(__AVX512F__)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// A plain (unmasked) load for a value that feeds a select `mask ? v : 0`. GCC folds such a
// select into a masked load from memory (vmovups m, zmm{k}{z}); on this Zen 5 that made
// relu backward 2x slower than the same loop without the select. The empty asm makes the
// loaded value opaque, so the select stays a register operation.
inline f32x16 load16_plain(const float* p) {
  f32x16 v = load16(p);
  opaque(v);
  return v;
}

// The same for one register of the level (f32xR): kernels whose loops must not put 16-lane
// vectors through the stack at the avx2 and baseline levels (GCC 12 splits them into ymm/xmm
// halves stored and reloaded) walk in these instead. At avx512 f32xR is f32x16.
inline f32xR loadR(const float* p) {
  f32xR v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeR(float* p, f32xR v) { std::memcpy(p, &v, sizeof v); }
inline f32xR loadR_plain(const float* p) {
  f32xR v = loadR(p);
  opaque(v);
  return v;
}

inline f32x16 splat16(float x) { return f32x16{} + x; }
inline i32x16 splat16(int32_t x) { return i32x16{} + x; }

// True when p[0 .. n) holds no NaN and no inf: v * 0 is (+-)0 for a finite v and NaN for
// the others, so the sum stays zero exactly when every value is finite (no branch per
// element; vectorised). For the fast paths that must hand non-finite data to an exact one.
// In the level's own registers (f32xR), four independent sums: a 16-lane sum at the avx2
// level went through the stack every step (GCC 12 splits it into ymm halves stored and
// reloaded), and the check of Winograd's V took half of run_forward<4> there (ResNet-18
// CIFAR 32x32 64->64 forward, b64: 12% of the layer); one chain waits out the add latency.
inline bool all_finite(const float* p, int64_t n) {
  f32xR a0{}, a1{}, a2{}, a3{};
  int64_t i = 0;
  for (; i + 4 * kRegLanes <= n; i += 4 * kRegLanes) {
    a0 += loadR(p + i) * 0.f;
    a1 += loadR(p + i + kRegLanes) * 0.f;
    a2 += loadR(p + i + 2 * kRegLanes) * 0.f;
    a3 += loadR(p + i + 3 * kRegLanes) * 0.f;
  }
  for (; i + kRegLanes <= n; i += kRegLanes) a0 += loadR(p + i) * 0.f;
  const f32xR acc = (a0 + a1) + (a2 + a3);
  float s = 0.f;
  for (int k = 0; k < kRegLanes; ++k) s += acc[k];
  for (; i < n; ++i) s += p[i] * 0.f;
  return s == 0.f;
}

// ---- streaming (non-temporal) output ----
// A plain store first reads the line it writes (read-for-ownership), so an op writing one
// array moves it twice; non-temporal stores skip that read and leave the inputs in cache.
// Measured worth it only for outputs that no longer fit in cache anyway: smaller ones are
// better left in L2/L3 for the next op. Kernels fill a row (or run of rows) into a
// thread-local scratch buffer in L1/L2 and stream_copy it out, then stream_fence().
// The threshold (default 16 MiB) is a runtime setting (threads.cpp; _C.set_stream_threshold)
// so tests can force the streaming path on small arrays and benchmarks can compare.
int64_t get_stream_threshold();

inline bool stream_output(int64_t bytes) { return bytes >= get_stream_threshold(); }

// A thread's scratch buffer of at least n floats (grows, never shrinks).
inline float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < n) buf.resize((size_t)n);
  return buf.data();
}

// dst[0 .. n) = src[0 .. n): plain stores up to the first 64-byte boundary of dst and after
// the last full line, non-temporal 64-byte stores between.
inline void stream_copy(float* dst, const float* src, int64_t n) {
#if defined(__AVX512F__)
  int64_t i = 0;
  for (; i < n && ((uintptr_t)(dst + i) & 63) != 0; ++i) dst[i] = src[i];
  for (; i + kLanes <= n; i += kLanes) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
#else
  std::memcpy(dst, src, sizeof(float) * (size_t)n);
#endif
}

// Orders this thread's non-temporal stores before whatever reads the output next.
inline void stream_fence() {
#if defined(__AVX512F__)
  _mm_sfence();
#endif
}

}  // namespace fastconv::cpu
