// The per-pixel map of a 1x1 conv with 3 or 6 channels each side at stride 1 on NHWC registers
// as they are (AVX-512 only): no split into channel planes and no merge back. Also the strided
// backward data's map of 3-channel dy pixels onto dx's pixel pairs (CO = 2 CI below).
//
// Why: the planar map (narrow_pointwise_planar.h, map<6, 6, 1>) splits each register of 16
// pixels into 6 planes and merges the 6 result planes back: 36 two-source permutes and 24
// blends for its 36 FMAs (pixel_transpose.h: 3 + 2 per register each way). The sweep's 1x1
// s1 C=6 forward and backward data stayed at 0.32-0.41 of their roofline (threshold 0.42 /
// 0.44; issue 18 item 3). Here output register j of a block of 16 pixels (16 C floats, C
// registers in and out) is computed where it is stored: lane l holds channel o = (16 j + l)
// % C of pixel q = (16 j + l) / C, and for each input channel i one permute of the input
// registers puts x[q, i] in every lane l (from at most 3 neighbouring registers: 40 permutes
// for C = 6, 9 for C = 3), times a weight register whose lane l holds w[i, o]: no blends, and
// the weight and bias registers repeat every C / gcd(16, C) output registers. 1 thread, ms
// planar/flat, paired (benchmarks/RESULTS.md, helper Y stop 33): C=6 N=256 28x28 fwd
// 0.351/0.252, N=256 14x14 bwd-data 0.088/0.063; C=3 N=32 112x112 fwd 0.186/0.150.
// Every lane sums its own pixel's C products in the planar order (bias, then i = 0..C-1), so
// a NaN or inf reaches only its pixel's outputs, as in the other maps.
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>

#include "cpu/narrow_pointwise_planar.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail::flat_map {

#if defined(__AVX512F__)
using pixel_transpose::ivec;
using pixel_transpose::L;
using pixel_transpose::vec;

// CI channels in, CO out: CO == CI, or CO == 2 CI with the output channels from CI on exact
// zeros (a strided backward data whose dx row holds each pixel followed by the one the stride
// skips, W = 2 OW: the skipped pixel's CI zeros are channels CI..2CI-1 of a "pixel pair").
template <int CI, int CO>
struct Flat {
  static_assert(L == 16 && CI >= 2 && (CO == CI || CO == 2 * CI) && CO <= 16);
  static constexpr int kPhases = CO / std::gcd(L, CO);  // output registers before lanes repeat
  // The float of the block's input that lane l of output register j reads for input channel i.
  static constexpr int src(int j, int l, int i) { return (L * j + l) / CO * CI + i; }
  static constexpr bool zero(int j, int l) { return (L * j + l) % CO >= CI; }

  // Lane l: x[src(J, l, I)], from the CI registers of the block x.
  template <int J, int I, size_t... K>
  static inline vec gather(const vec (&x)[CI], std::index_sequence<K...>) {
    constexpr int lo = src(J, 0, I) / L, hi = src(J, L - 1, I) / L;
    if constexpr (lo == hi) {
      return __builtin_shuffle(x[lo], ivec{src(J, (int)K, I) % L...});
    } else if constexpr (hi == lo + 1) {
      return __builtin_shuffle(x[lo], x[hi], ivec{src(J, (int)K, I) - L * lo...});
    } else {  // three registers: two and one, then a blend
      static_assert(hi == lo + 2);
      const vec a = __builtin_shuffle(
          x[lo], x[lo + 1], ivec{(src(J, (int)K, I) < L * hi ? src(J, (int)K, I) - L * lo : 0)...});
      const vec b = __builtin_shuffle(x[hi], ivec{(src(J, (int)K, I) >= L * hi ? src(J, (int)K, I) - L * hi : 0)...});
      return __builtin_shuffle(a, b, ivec{(src(J, (int)K, I) >= L * hi ? L + (int)K : (int)K)...});
    }
  }

  // Output register J; its zero lanes (CO > CI) cleared after the sums, so that an inf's
  // 0 * inf never reaches them.
  template <int J, size_t... I, size_t... K>
  static inline vec out(const vec (&x)[CI], const vec (&wv)[kPhases][CI], const vec (&bv)[kPhases],
                        std::index_sequence<I...>, std::index_sequence<K...> lanes) {
    vec acc = bv[J % kPhases];
    ((acc += gather<J, (int)I>(x, lanes) * wv[J % kPhases][I]), ...);
    if constexpr (CO > CI) acc = (vec)((ivec)acc & ivec{(zero(J, (int)K) ? 0 : -1)...});
    return acc;
  }

  // wv[j][i] lane l = w[i, o], bv[j] lane l = bias[o] for the channel o = (16 j + l) % CO of
  // output register j (0 for o >= CI): a masked load of each row and a permute a register
  // (scalar lane by lane, this setup was a tenth of a 1024-pixel run's time).
  template <size_t... K>
  static inline void setup(const float* w, int64_t ldw, const float* bias, vec (&wv)[kPhases][CI],
                           vec (&bv)[kPhases], std::index_sequence<K...>) {
    vec b[1], row[1];
    planar_dot::load_prefix(bias, CI, b);
    for (int j = 0; j < kPhases; ++j) {
      const ivec lane = ivec{(int)K...} + L * j, o = lane - lane / CO * CO;  // lanes >= CI: 0
      bv[j] = __builtin_shuffle(b[0], o);
      for (int i = 0; i < CI; ++i) {
        planar_dot::load_prefix(w + i * ldw, CI, row);
        wv[j][i] = __builtin_shuffle(row[0], o);
      }
    }
  }

  // A block of 16 pixels; with n < 16 CO floats (a tail), only the first n floats are
  // stored and the registers past them not computed (masked loads of the input's floats).
  template <size_t... J>
  static inline void block(const float* s, float* d, int64_t n, const vec (&wv)[kPhases][CI],
                           const vec (&bv)[kPhases], std::index_sequence<J...>) {
    vec x[CI];
    const auto lanes = std::make_index_sequence<L>();
    const auto ins = std::make_index_sequence<CI>();
    if (n == L * CO) {
#pragma GCC unroll 16
      for (int r = 0; r < CI; ++r) x[r] = pixel_transpose::load(s + r * L);
      (pixel_transpose::store(d + J * L, out<(int)J>(x, wv, bv, ins, lanes)), ...);
      return;
    }
    planar_dot::load_prefix(s, n / CO * CI, x);
    ((J * L < (size_t)n ? planar_dot::store_prefix<1>(d + J * L, {out<(int)J>(x, wv, bv, ins, lanes)},
                                                   n - (int64_t)(J * L))
                        : void()),
     ...);
  }
};

// planar_dot::MapFn's contract at stride 1, tails included (narrow_pointwise_planar.h map):
// dst[r*dst_rs + p*CO + o] = bias[o] + sum_i src[r*src_rs + p*CI + i] * w[i*ldw + o] for
// rows r < rows and p < count (o < CI; with CO = 2 CI the floats o >= CI are 0 and bias,
// w are read for o < CI only); returns count. reg_max, pf, ahead: unused (stride 1 reads
// whole pixels only; the hardware prefetches the streams).
template <int CI, int CO>
int64_t map(const float* src, int64_t src_rs, float* dst, int64_t dst_rs, int64_t rows,
            int64_t count, int64_t, const float* w, int64_t ldw, const float* bias, int64_t,
            int64_t) {
  using F = Flat<CI, CO>;
  vec wv[F::kPhases][CI], bv[F::kPhases];
  F::setup(w, ldw, bias, wv, bv, std::make_index_sequence<L>());
  const auto regs = std::make_index_sequence<CO>();
  for (int64_t r = 0; r < rows; ++r, src += src_rs, dst += dst_rs)
    for (int64_t p = 0; p < count; p += L)
      F::block(src + p * CI, dst + p * CO, std::min<int64_t>(L, count - p) * CO, wv, bv, regs);
  return count;
}
#endif

}  // namespace fastconv::cpu::detail::flat_map
