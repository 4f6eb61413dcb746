// NHWC pixels <-> planar channel rows, one register of pixels at a time, in registers.
//
// Why: the direct path (direct_conv.cpp) runs its 3x3 kernels on planar rows and so copies
// every input row from NHWC into C planar rows and every output block back, one float per
// load/store pair. With C = 3..6 in and out channels these copies, not the 9*C multiply-adds
// per output value, were the cost: a 3x3 stride-1 C=3 forward (N=256 56x56, perf on Emerald
// Rapids) spent a third of its time in the scalar deinterleave, and the scalar write-back
// inside tap_block as much again; the forward ran at 0.27-0.32 of the FMA ceiling.
//
// Here L pixels of C channels (C registers of NHWC floats) become C planar registers and
// back, with two-source permutes and blends: for each output register, a permute per pair of
// input registers gathers the lanes that pair holds (vpermt2ps at AVX-512), and a blend per
// further pair merges them (C = 3: 2 permutes + 1 blend per register, C = 6: 3 + 2), against
// L scalar loads and stores. The masks are compile-time constants at every level (GCC lowers
// them to the level's shuffles: vpermps/vblendps at AVX2, shufps at SSE2).
#pragma once
#include <cstdint>
#include <cstring>
#include <utility>

#include "cpu/simd.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail::pixel_transpose {

constexpr int L = kRegLanes;
typedef f32xR vec;
typedef int32_t ivec __attribute__((vector_size(4 * kRegLanes)));

// Compile-time masks. Split (NHWC -> planar): output register c, lane k holds float
// f = k*C + c of the C input registers, which is register f / L, lane f % L. Merge (planar ->
// NHWC): output register j, lane i holds float f = j*L + i, i.e. pixel f / C of planar
// register f % C. Either way each output lane has one source register s; pair p = s / 2
// permutes registers 2p, 2p + 1 (the last alone when C is odd) to lane position, and the
// blends keep lane i from pair src_pair.
struct Masks {
  int perm[8][4][kRegLanes];   // [output register][pair][lane]: index into (2p, 2p + 1)
  int blend[8][4][kRegLanes];  // [output register][pair >= 1][lane]: i or L + i
};
template <int C, bool SPLIT>
constexpr Masks make_masks() {
  Masks m{};
  for (int o = 0; o < C; ++o)
    for (int i = 0; i < L; ++i) {
      const int f = SPLIT ? i * C + o : o * L + i;
      const int src = SPLIT ? f / L : f % C, lane = SPLIT ? f % L : f / C;
      const int p = src / 2;
      for (int q = 0; q < (C + 1) / 2; ++q) {
        m.perm[o][q][i] = q == p ? (src % 2) * L + lane : 0;
        m.blend[o][q][i] = q == p ? L + i : i;
      }
    }
  return m;
}

template <int C, bool SPLIT>
struct Shuffles {
  static constexpr Masks m = make_masks<C, SPLIT>();
  template <size_t... I>
  static constexpr ivec perm(int o, int q, std::index_sequence<I...>) {
    return ivec{m.perm[o][q][I]...};
  }
  template <size_t... I>
  static constexpr ivec blend(int o, int q, std::index_sequence<I...>) {
    return ivec{m.blend[o][q][I]...};
  }
  // Pair Q's permute and its blend into the result, for output register O (constexpr masks).
  template <int O, int Q>
  static inline vec pair(const vec (&in)[C]) {
    constexpr ivec mask = perm(O, Q, std::make_index_sequence<L>());
    return __builtin_shuffle(in[2 * Q], in[2 * Q + 1 < C ? 2 * Q + 1 : 2 * Q], mask);
  }
  template <int O, int Q>
  static inline vec blend_in(vec r, vec t) {
    constexpr ivec mask = blend(O, Q, std::make_index_sequence<L>());
    return __builtin_shuffle(r, t, mask);
  }
  template <int O, size_t... Q>
  static inline vec one(const vec (&in)[C], std::index_sequence<0, Q...>) {
    vec r = pair<O, 0>(in);
    ((r = blend_in<O, (int)Q>(r, pair<O, (int)Q>(in))), ...);
    return r;
  }
  template <size_t... O>
  static inline void all(const vec (&in)[C], vec (&out)[C], std::index_sequence<O...>) {
    ((out[O] = one<(int)O>(in, std::make_index_sequence<(C + 1) / 2>())), ...);
  }
};

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof v); }

// planar[c][k] = nhwc[k*C + c] for k < L: C registers of NHWC floats to C planar ones.
template <int C>
inline void split(const vec (&nhwc)[C], vec (&planar)[C]) {
  static_assert(C >= 2 && C <= 8);
  Shuffles<C, true>::all(nhwc, planar, std::make_index_sequence<C>());
}
// The inverse: nhwc[k*C + c] = planar[c][k].
template <int C>
inline void merge(const vec (&planar)[C], vec (&nhwc)[C]) {
  static_assert(C >= 2 && C <= 8);
  Shuffles<C, false>::all(planar, nhwc, std::make_index_sequence<C>());
}

// planes[c] lane k = src[k*C + c]: L pixels of C channels (C = 1..8) loaded and split; and
// the inverse, merged and stored. C = 1 is a plain load / store.
template <int C>
inline void load_split(const float* src, vec (&planes)[C]) {
  vec in[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) in[c] = load(src + c * L);
  if constexpr (C == 1) {
    planes[0] = in[0];
  } else {
    split<C>(in, planes);
  }
}
template <int C>
inline void merge_store(float* dst, const vec (&planes)[C]) {
  vec out[C];
  if constexpr (C == 1) {
    out[0] = planes[0];
  } else {
    merge<C>(planes, out);
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) store(dst + c * L, out[c]);
}

// dst[c*plane + (k / L)*block + k % L] = src[k*C + c] for k < count rounded down to L:
// planar rows (block = L) or blocks of C planar registers (plane = L, block = C*L); returns
// the pixels done.
template <int C>
inline int64_t split_rows(const float* src, int64_t count, float* dst, int64_t plane,
                          int64_t block = L) {
  int64_t k = 0;
  for (; k + L <= count; k += L, dst += block) {
    vec in[C], out[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) in[c] = load(src + k * C + c * L);
    split<C>(in, out);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) store(dst + c * plane, out[c]);
  }
  return k;
}

#if defined(__AVX512F__)
// 16 pixels of 9..16 channels: r[i] (pixel i's channels, one register each) <-> r[c] (channel c
// of the 16 pixels), a 16x16 transpose in registers, its own inverse. 64 shuffles in four
// stages: 32-bit interleaves of row pairs, 64-bit of pairs of pairs (r[4g + c], 128-bit lane
// q: rows 4g..4g+3 of column 4q + c), then two rounds of 128-bit lane shuffles.
__attribute__((always_inline)) inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q) {
    t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
    t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {  // [A.q0 A.q2 B.q0 B.q2] and [A.q1 A.q3 B.q1 B.q3]
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
  }
}

// 16 pixels of up to 8 channels in 8 registers, pixel i in r[i]'s lanes 0..7 and pixel 8 + i in
// lanes 8..15 <-> r[c] = channel c of the 16 pixels: an 8x8 transpose in each 256-bit half (its
// own inverse), 24 shuffles where transpose16 takes 64. Stages as transpose16's first two, then
// r[c] and r[4 + c] gather their 128-bit quarters from u[c] and u[4 + c].
__attribute__((always_inline)) inline void transpose16x8(__m512 (&r)[8]) {
  __m512 t[8];
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
    t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
  }
  __m512 u[8];
#pragma GCC unroll 2
  for (int g = 0; g < 2; ++g) {
    const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
  const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_permutex2var_ps(u[c], lo, u[4 + c]);
    r[4 + c] = _mm512_permutex2var_ps(u[c], hi, u[4 + c]);
  }
}
#endif

}  // namespace fastconv::cpu::detail::pixel_transpose
