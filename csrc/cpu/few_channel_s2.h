// Stride-2 NHWC rows of few channels -> planar rows of the two column phases, a register of
// column pairs at a time.
//
// Why: the direct path (direct_conv.cpp) packs every input row a stride-2 conv reads into
// planar rows split by column phase (even columns, odd columns). That copy ran one float per
// load/store pair (pixel_transpose.h's register transposes cover stride 1 only), and in a
// 3x3 stride-2 conv with C = 3..6 channels each side it cost more than the 9*C multiply-adds
// per output that follow it: the few-channel stride-2 passes were the sweep's worst cases
// (benchmarks/RESULTS.md, issue 18 item 3, helper C).
//
// Here 2L pixels of C channels (2C registers) are split into C planar registers per half
// (pixel_transpose::split), then each channel's two halves into its even and odd columns by
// one two-source permute each (vpermt2ps at AVX-512; GCC lowers the constant masks to the
// level's shuffles at avx2 and the baseline).
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail::stride2 {

using pixel_transpose::ivec;
using pixel_transpose::L;
using pixel_transpose::load;
using pixel_transpose::store;
using pixel_transpose::vec;

// Lanes 2i + PHASE of the two sources (a, b): the even (0) or odd (1) columns of 2L.
template <int PHASE>
struct PhaseMask {
  template <size_t... I>
  static constexpr ivec make(std::index_sequence<I...>) {
    return ivec{(2 * (int)I + PHASE)...};
  }
};
// At namespace scope: as locals of the function template below they crash GCC 12.
inline constexpr ivec me = PhaseMask<0>::make(std::make_index_sequence<L>());
inline constexpr ivec mo = PhaseMask<1>::make(std::make_index_sequence<L>());

// The inverse: lane i of the low (HALF 0) or high (1) register of interleaved pairs (e, o)
// (few_channel_s2_planes.cpp's merge_parities for one channel).
template <int HALF>
struct PairMask {
  template <size_t... I>
  static constexpr ivec make(std::index_sequence<I...>) {
    return ivec{(HALF * L / 2 + (int)I / 2 + ((int)I % 2) * L)...};
  }
};
inline constexpr ivec mlo = PairMask<0>::make(std::make_index_sequence<L>());
inline constexpr ivec mhi = PairMask<1>::make(std::make_index_sequence<L>());

// Lanes 1 .. L-1 of a, then lane 0 of b: the even columns one pair on (valignd at AVX-512).
struct NextMask {
  template <size_t... I>
  static constexpr ivec make(std::index_sequence<I...>) {
    return ivec{(1 + (int)I)...};
  }
};
inline constexpr ivec mnext = NextMask::make(std::make_index_sequence<L>());

// The 2C planar vectors of L pixel pairs' channels (planar[ci]: the even pixels' channel ci,
// planar[C + ci]: the odd pixels') to NHWC, whole registers (the pair masks for C = 1,
// pixel_transpose::merge of 2C "channels" up to 8); above 8 each channel's pairs interleaved
// first, then L pixels of C channels twice, the second only where `second` (the row needs
// them).
template <int C>
inline void merge_pairs(const vec (&planar)[2 * C], vec (&nhwc)[2 * C], bool second) {
  if constexpr (C == 1) {
    nhwc[0] = __builtin_shuffle(planar[0], planar[1], mlo);
    nhwc[1] = __builtin_shuffle(planar[0], planar[1], mhi);
  } else if constexpr (2 * C <= 8) {
    pixel_transpose::merge<2 * C>(planar, nhwc);
  } else {
    vec lo[C], hi[C], out[C];
#pragma GCC unroll 8
    for (int ci = 0; ci < C; ++ci) {
      lo[ci] = __builtin_shuffle(planar[ci], planar[C + ci], mlo);
      hi[ci] = __builtin_shuffle(planar[ci], planar[C + ci], mhi);
    }
    pixel_transpose::merge<C>(lo, out);
#pragma GCC unroll 8
    for (int k = 0; k < C; ++k) nhwc[k] = out[k];
    // The second L pixels only where the row needs them: C=6 7x7 (8 of 32 merged pixels
    // needed) and 14x14 took 0.80-0.85 and 0.84-0.90 of the time with the skip, paired.
    if (second) {
      pixel_transpose::merge<C>(hi, out);
#pragma GCC unroll 8
      for (int k = 0; k < C; ++k) nhwc[C + k] = out[k];
    }
  }
}

#if defined(__AVX2__) && !defined(__AVX512F__)
// avx2, C = 3: 8 pixels (3 ymm) to 3 planar ymm, two blends and one vpermps each. Lane k of
// channel c is float 3k + c, register (3k + c) / 8, lane (3k + c) % 8, and as 3 and 8 are
// coprime those lanes are 8 distinct ones: blending the three registers by them puts all 8
// in one register, which one vpermps orders. pixel_transpose::split<3> (a two-source
// permute per register pair, at avx2 two vpermps and a blend, plus a vpermps and a blend for
// the third, the masks reloaded from memory) took about half the samples of an N=256 56x56
// C=3 forward's pack on an AVX2-only EPYC.
struct Split3 {
  static constexpr int blend_mask(int c, int reg) {
    int m = 0;
    for (int k = 0; k < 8; ++k)
      if ((3 * k + c) / 8 == reg) m |= 1 << ((3 * k + c) % 8);
    return m;
  }
  template <int c>
  static inline vec one(const vec (&in)[3]) {
    const __m256 b1 = _mm256_blend_ps((__m256)in[0], (__m256)in[1], blend_mask(c, 1));
    const __m256 b2 = _mm256_blend_ps(b1, (__m256)in[2], blend_mask(c, 2));
    const __m256i idx = _mm256_setr_epi32((3 * 0 + c) % 8, (3 * 1 + c) % 8, (3 * 2 + c) % 8,
                                          (3 * 3 + c) % 8, (3 * 4 + c) % 8, (3 * 5 + c) % 8,
                                          (3 * 6 + c) % 8, (3 * 7 + c) % 8);
    return (vec)_mm256_permutevar8x32_ps(b2, idx);
  }
  static inline void split(const vec (&in)[3], vec (&out)[3]) {
    out[0] = one<0>(in);
    out[1] = one<1>(in);
    out[2] = one<2>(in);
  }
};
#endif

// The even (PHASE 0) or odd (1) lanes of the 16 of (a, b): __builtin_shuffle with me / mo,
// which GCC lowers at avx2 to two vpermd (each mask a load) and a blend; here one vshufps
// (the pairs' even or odd floats of each 128-bit half) and one vpermpd (the halves' 64-bit
// pieces in order).
template <int PHASE>
inline vec phase_of(vec a, vec b) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  const __m256 t = _mm256_shuffle_ps((__m256)a, (__m256)b, PHASE ? 0xdd : 0x88);
  return (vec)_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xd8));
#else
  return __builtin_shuffle(a, b, PHASE ? mo : me);
#endif
}

// even[c*plane + j] = src[(2j)*C + c], odd[c*plane + j] = src[(2j + 1)*C + c] for j < pairs
// rounded down to L; returns the pairs done. ODD false: the even columns only (odd unused).
// NEXT: next[c*plane + j] = even[c*plane + j + 1] too, from the registers (the last lane
// of the last register 0): copied from memory after the split, its loads straddled two
// stores just made (no store forwarding), 60% of the planes' pack in perf (C=3 28x28).
template <int C, bool ODD = true, bool NEXT = false>
inline int64_t split_pairs(const float* src, int64_t pairs, float* even, float* odd, int64_t plane,
                           float* next = nullptr) {
  int64_t j = 0;
  vec prev[C];
  for (; j + L <= pairs; j += L) {
    const float* s = src + 2 * j * C;
    vec a[C], b[C];
    if constexpr (C == 1) {
      a[0] = load(s);
      b[0] = load(s + L);
    } else {
      vec in[C];
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) in[c] = load(s + c * L);
#if defined(__AVX2__) && !defined(__AVX512F__)
      if constexpr (C == 3) Split3::split(in, a);
      else
#endif
        pixel_transpose::split<C>(in, a);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) in[c] = load(s + (C + c) * L);
#if defined(__AVX2__) && !defined(__AVX512F__)
      if constexpr (C == 3) Split3::split(in, b);
      else
#endif
        pixel_transpose::split<C>(in, b);
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const vec e = phase_of<0>(a[c], b[c]);
      store(even + c * plane + j, e);
      if constexpr (ODD) store(odd + c * plane + j, phase_of<1>(a[c], b[c]));
      if constexpr (NEXT) {
        if (j) store(next + c * plane + j - L, __builtin_shuffle(prev[c], e, mnext));
        prev[c] = e;
      }
    }
  }
  if (NEXT && j)
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) store(next + c * plane + j - L, __builtin_shuffle(prev[c], vec{}, mnext));
  return j;
}

// The bytes [p, end) (the next block's rows) prefetched into L2 a few cache lines a step
// while the current block computes, so that the block's first loads (or, WRITE, stores) do
// not wait on L3 or DRAM: the hardware prefetcher sees no accesses to them in between.
// few_channel_s2_planes.cpp and few_channel_s2_c1.cpp carry the measurements.
// Below this many bytes of the tensor prefetched from the prefetch is skipped: the tensor
// stays in the 1 MiB L2 between calls (measured without it at 7x7 and 14x14 C=3, N=256:
// within noise either way, 0.95-1.15 in repeated paired runs of one build against another).
inline constexpr int64_t kPrefetchFromBytes = int64_t(1) << 20;

template <bool WRITE = false>
struct LinePrefetch {
  const char* p = nullptr;
  const char* end = nullptr;
  int64_t rate = 0;  // lines a step
  // [begin, finish) (bytes of floats) over `steps` calls of step().
  void set(const float* begin, const float* finish, int64_t steps) {
    p = (const char*)begin;
    end = (const char*)std::max(begin, finish);
    rate = ((end - p) / 64 + steps) / std::max<int64_t>(1, steps);
  }
  void clear() { p = end = nullptr; }
  void step() {
    for (int64_t k = 0; k < rate && p < end; ++k, p += 64) __builtin_prefetch(p, WRITE, 2);
  }
};

using SplitPairsFn = int64_t (*)(const float*, int64_t, float*, float*, int64_t);

template <int C>
int64_t split_pairs_fn(const float* src, int64_t pairs, float* even, float* odd, int64_t plane) {
  return split_pairs<C>(src, pairs, even, odd, plane);
}

template <size_t... I>
constexpr SplitPairsFn pick(int64_t c, std::index_sequence<I...>) {
  constexpr SplitPairsFn table[] = {&split_pairs_fn<int(I) + 1>...};
  return table[c - 1];
}

// split_pairs for a runtime channel count 1..8; the other counts do nothing (returns 0).
inline int64_t split_pairs_any(const float* src, int64_t c, int64_t pairs, float* even, float* odd,
                               int64_t plane) {
  if (c < 1 || c > 8) return 0;
  return pick(c, std::make_index_sequence<8>())(src, pairs, even, odd, plane);
}

// split_pairs for a row of 0 < pairs < L column pairs (AVX-512: masked loads of its
// 2*pairs*C floats, masked stores of `pairs` lanes; nothing read or written outside them);
// returns the pairs done, 0 at the other levels and under kShortFrom pairs. Why:
// pack_row_planes (direct_conv.cpp) split only rows of >= L pairs by permutes and shorter
// ones one float at a time (deinterleave<6, 2>), 37% of a C=6 28x28 N=256 weight pass in
// perf (14 pairs a row). Paired against that, 1 thread, CPU time, Zen 4 at load 5, C=6 N=256
// weight pass: 28x28 (14 pairs) 1.011/0.809 ms, 14x14 (7) 0.291/0.265, 7x7 (3) 0.130/0.142
// (the full split's permutes for 3 pairs cost more than the 36 scalar copies).
inline constexpr int64_t kShortFrom = 6;
template <int C>
inline int64_t split_pairs_short(const float* src, int64_t pairs, float* even, float* odd,
                                 int64_t plane) {
#if defined(__AVX512F__)
  if (pairs < kShortFrom || pairs >= L) return 0;
  static_assert(L == 16);
  const int64_t n = 2 * pairs * C;  // floats read
  vec in[2 * C];
#pragma GCC unroll 16
  for (int k = 0; k < 2 * C; ++k) {
    const int64_t cnt = std::min<int64_t>(std::max<int64_t>(n - k * L, 0), L);
    in[k] = cnt == L ? load(src + k * L)
                     : (vec)_mm512_maskz_loadu_ps((__mmask16)((1u << cnt) - 1), src + k * L);
  }
  vec a[C], b[C];
  if constexpr (C == 1) {
    a[0] = in[0];
    b[0] = in[1];
  } else {
    vec lo[C], hi[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) lo[c] = in[c], hi[c] = in[C + c];
    pixel_transpose::split<C>(lo, a);
    pixel_transpose::split<C>(hi, b);
  }
  const __mmask16 m = (__mmask16)((1u << pairs) - 1);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    _mm512_mask_storeu_ps(even + c * plane, m, (__m512)__builtin_shuffle(a[c], b[c], me));
    _mm512_mask_storeu_ps(odd + c * plane, m, (__m512)__builtin_shuffle(a[c], b[c], mo));
  }
  return pairs;
#else
  (void)src, (void)pairs, (void)even, (void)odd, (void)plane;
  return 0;
#endif
}

template <size_t... I>
constexpr SplitPairsFn pick_short(int64_t c, std::index_sequence<I...>) {
  constexpr SplitPairsFn table[] = {&split_pairs_short<int(I) + 1>...};
  return table[c - 1];
}

// split_pairs_short for a runtime channel count 1..8; the other counts do nothing (returns 0).
inline int64_t split_pairs_short_any(const float* src, int64_t c, int64_t pairs, float* even,
                                     float* odd, int64_t plane) {
  if (c < 1 || c > 8) return 0;
  return pick_short(c, std::make_index_sequence<8>())(src, pairs, even, odd, plane);
}

}  // namespace fastconv::cpu::detail::stride2
