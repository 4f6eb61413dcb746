// The weight pass of a 1x1 conv with 1..4 channels each side over planar registers: a
// register of pixels of x and of dy at a time is split into channel planes
// (pixel_transpose.h; at stride 2 the even pixels of two registers, few_channel_s2.h), and
// dw[ci, co] gathers Cin*Cout lane sums of whole registers.
//
// Why: narrow_pointwise.cpp's weight pass holds one pixel's Cout channels in a 16-lane vector
// (3 of 16 lanes used at Cout = 3) and broadcasts each x value: Cin FMAs and Cin + 1 loads
// per pixel. Here a register of L pixels costs Cin*Cout FMAs and Cin + Cout loads plus the
// permutes (Cin = Cout = 3: 9 FMAs per 16 pixels where the vector form issued 48). The
// sweep's 1x1 C=3 weight passes ran at 0.09-0.14 of their roofline (issue 18 item 3).
#pragma once
#include <cstdint>

#include "cpu/few_channel_s2.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail::planar_dot {

using pixel_transpose::L;
using pixel_transpose::load;
using pixel_transpose::vec;

constexpr int kMaxChannels = 4;
// Accumulators that leave room for the operands: 24 of 32 zmm, 9 of 16 ymm/xmm (the
// permutes of a split hold up to 2*Cin registers).
constexpr int kAccumulators = kVectorRegisters >= 32 ? 24 : 9;

// L pixels of C channels at src as C planar registers; SW = 2: the even pixels of 2L.
template <int C, int SW>
inline void load_planar(const float* src, vec (&out)[C]) {
  if constexpr (SW == 2) {
    vec a[C], b[C];
    load_planar<C, 1>(src, a);
    load_planar<C, 1>(src + C * L, b);
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) out[c] = __builtin_shuffle(a[c], b[c], stride2::me);
  } else if constexpr (C == 1) {
    out[0] = load(src);
  } else {
    vec in[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) in[c] = load(src + c * L);
    pixel_transpose::split<C>(in, out);
  }
}

// acc[i][o] += sum over pixels p < count rounded down to L of x[p*SW*IN + i] * dy[p*OC + o];
// returns the pixels done. At SW = 2 x's pixels up to 2*count - 1 are read.
template <int IN, int OC, int SW>
int64_t dot(const float* x, const float* dy, int64_t count, f32x16* acc) {
  vec a[IN * OC] = {};
  int64_t p = 0;
  for (; p + L <= count; p += L) {
    vec xp[IN], dp[OC];
    load_planar<IN, SW>(x + p * SW * IN, xp);
    load_planar<OC, 1>(dy + p * OC, dp);
#pragma GCC unroll 16
    for (int i = 0; i < IN * OC; ++i) a[i] += xp[i / OC] * dp[i % OC];
  }
  for (int i = 0; i < IN * OC; ++i) {
    float s = 0.f;
    for (int l = 0; l < L; ++l) s += a[i][l];
    acc[i / OC][i % OC] += s;
  }
  return p;
}

using DotFn = int64_t (*)(const float*, const float*, int64_t, f32x16*);

template <int IN, int SW, int... OC>
constexpr DotFn pick_oc(int oc, std::integer_sequence<int, OC...>) {
  constexpr DotFn t[] = {(IN * (OC + 1) <= kAccumulators ? &dot<IN, OC + 1, SW> : nullptr)...};
  return t[oc - 1];
}
template <int SW, int... IN>
constexpr DotFn pick_in(int in, int oc, std::integer_sequence<int, IN...>) {
  constexpr DotFn (*t[])(int, std::make_integer_sequence<int, kMaxChannels>) = {
      &pick_oc<IN + 1, SW>...};
  return t[in - 1](oc, std::make_integer_sequence<int, kMaxChannels>());
}

// The kernel for Cin = in, Cout = oc, stride sw; nullptr where none is compiled.
inline DotFn pick(int64_t in, int64_t oc, int64_t sw) {
  if (in < 1 || in > kMaxChannels || oc < 1 || oc > kMaxChannels || sw < 1 || sw > 2) return nullptr;
  const auto seq = std::make_integer_sequence<int, kMaxChannels>();
  return sw == 1 ? pick_in<1>((int)in, (int)oc, seq) : pick_in<2>((int)in, (int)oc, seq);
}

}  // namespace fastconv::cpu::detail::planar_dot
