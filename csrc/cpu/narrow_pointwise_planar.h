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
// The forward map (and backward data's at stride 1) the same way: Cin planar registers in,
// Cout accumulators, merged back to NHWC. 1 thread, ms before/after, the loaded Zen 4
// (benchmarks/RESULTS.md, helper C): C=3 N=256 28x28 fwd 0.325/0.087, bwd-data 0.326/0.091,
// weights 0.494/0.202; stride 2 N=256 56x56 C=3 fwd 1.03/0.52, weights 1.44/0.97.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/few_channel_s2.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail::planar_dot {

using pixel_transpose::ivec;
using pixel_transpose::L;
using pixel_transpose::load;
using pixel_transpose::vec;

constexpr int kMaxChannels = 4;
// Accumulators that leave room for the operands: 24 of 32 zmm, 9 of 16 ymm/xmm (the
// permutes of a split hold up to 2*Cin registers).
constexpr int kAccumulators = kVectorRegisters >= 32 ? 24 : 9;

// R registers of consecutive floats from src (raw[r] = src[r*L .. r*L + L)) as C planar
// registers of L pixels of C channels (R = C); SW = 2 (R = 2C): the even pixels of 2L.
template <int C, int SW>
[[gnu::always_inline]] inline void planar_from(const vec* raw, vec (&out)[C]) {
  if constexpr (SW == 2) {
    vec a[C], b[C];
    planar_from<C, 1>(raw, a);
    planar_from<C, 1>(raw + C, b);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) out[c] = __builtin_shuffle(a[c], b[c], stride2::me);
  } else if constexpr (C == 1) {
    out[0] = raw[0];
  } else {
    vec in[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) in[c] = raw[c];
    pixel_transpose::split<C>(in, out);
  }
}

// L pixels of C channels at src as C planar registers; SW = 2: the even pixels of 2L.
// Always inlined (with planar_from, load_prefix, store_prefix): a call inside a kernel's loop
// spills every accumulator register around it. When the weight pass moved to its own file
// (narrow_pointwise_weights.cpp) GCC stopped inlining load_planar<3, 1> there: 1x1 s2 N=256
// 28x28 C=3 weight pass 0.075 -> 0.104 ms (1 thread, paired, 7 rounds).
template <int C, int SW>
[[gnu::always_inline]] inline void load_planar(const float* src, vec (&out)[C]) {
  vec raw[SW * C];
#pragma GCC unroll 16
  for (int r = 0; r < SW * C; ++r) raw[r] = load(src + r * L);
  planar_from<C, SW>(raw, out);
}

// The first n (< R*L) floats at src as R registers, zero beyond; nothing past src + n is
// read. AVX-512: masked loads. Before, a zeroed copy by memcpy: in a 1x1 s2 weight pass
// with rows of 28 pixels (one register and a 12-pixel tail each) the call, with the
// accumulators spilled around it and a vzeroupper, was half of dot_rows' time (perf, N=256
// 56x56 C=1 on the Zen 4). The other levels keep the copy (no masked loads).
template <int R>
[[gnu::always_inline]] inline void load_prefix(const float* src, int64_t n, vec (&raw)[R]) {
#if defined(__AVX512F__)
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const int64_t m = std::min<int64_t>(std::max<int64_t>(n - r * L, 0), L);
    raw[r] = (vec)_mm512_maskz_loadu_ps((__mmask16)((1u << m) - 1), src + r * L);
  }
#else
  alignas(64) float t[R * L] = {};
  std::memcpy(t, src, sizeof(float) * n);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) raw[r] = load(t + r * L);
#endif
}

// Touches the cache lines of [p, p + floats) ahead of use (narrow_pointwise.cpp, kAhead).
inline void prefetch_floats(const float* p, int64_t floats) {
  for (int64_t i = 0; i < floats; i += 16) __builtin_prefetch(p + i);
}

// The sum of v's lanes by halving (log2 L shuffles and adds). A loop of L scalar adds per
// accumulator, IN*OC of them at the end of every call, was a chain of 144 dependent adds
// per 512-pixel item at C=3: a quarter of dot_rows<3, 3, 1> (perf, 1x1 s1 N=256 28x28 C=3
// weight pass on the Zen 4).
template <size_t... I>
constexpr ivec upper_half(int half, std::index_sequence<I...>) {
  return ivec{((int)I + half) % L...};
}
inline float lane_sum(vec v) {
#pragma GCC unroll 8
  for (int half = L / 2; half >= 1; half /= 2)
    v += __builtin_shuffle(v, upper_half(half, std::make_index_sequence<L>()));
  return v[0];
}

// Lanes k < n all ones, the rest zero.
template <size_t... I>
inline ivec lanes_below(int64_t n, std::index_sequence<I...>) {
  return ivec{((int)I < n ? -1 : 0)...};
}
template <int C>
inline void keep_lanes(vec (&v)[C], ivec keep) {
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) v[c] = (vec)((ivec)v[c] & keep);
}

// acc[i][o] += sum over rows r < rows and pixels p < count of
//   x[r*xs + p*SW*IN + i] * dy[r*ds + p*OC + o];
// returns the pixels done in each row: all of them with tails, else count rounded down to L.
// With pf > 0, pf floats of the x row `ahead` rows on are prefetched as each row starts.
// A row's last count % L pixels (tails) run as one more register: x's floats of those pixels
// only, zero beyond (load_prefix; read in place whole, the register touched the next input row, at
// stride 2 one the conv skips: N=256 112x112 C=1 went from 1.08 to 1.60 ms, DRAM-bound), dy
// read in place with the lanes past them zeroed (dy's next row is read anyway; no 0 * inf).
// Each register reads SW*L pixels of x and L of dy from its first pixel (at SW = 2 the odd
// ones unused): the caller sees that these reads stay inside the tensors.
// Why rows: a strided conv's output rows of 4..28 pixels (1x1 s2, 7..56 columns) ran one call
// and one flush each and, below L pixels, no register at all (N=256 28x28 C=3: 14 pixels a
// row, 0.41 ms for 0.9 MFLOP, 0.08 of the roofline).
// db (with tails, else nullptr): db[o] += the sum of dy[.., o] over the same pixels, from the
// planar dy registers (OC adds a register): the weight pass's second pass over dy
// (channel_sums) was a seventh of its time at C = 3 (perf, 1x1 s1 N=256 56x56, stop 35).
template <int IN, int OC, int SW>
int64_t dot_rows(const float* x, int64_t xs, const float* dy, int64_t ds, int64_t rows,
                 int64_t count, bool tails, int64_t pf, int64_t ahead, f32x16* acc, float* db) {
  vec a[IN * OC] = {}, dsum[OC] = {};
  const int64_t whole = count / L * L, rest = count - whole;
  const ivec keep = lanes_below(rest, std::make_index_sequence<L>());
  auto block = [&](const vec (&xp)[IN], const float* db, bool masked) {
    vec dp[OC];
    load_planar<OC, 1>(db, dp);
    if (masked) keep_lanes<OC>(dp, keep);
#pragma GCC unroll 16
    for (int i = 0; i < IN * OC; ++i) a[i] += xp[i / OC] * dp[i % OC];
#pragma GCC unroll 8
    for (int o = 0; o < OC; ++o) dsum[o] += dp[o];
  };
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * xs, *dr = dy + r * ds;
    if (pf) prefetch_floats(xr + ahead * xs, pf);
    for (int64_t p = 0; p < whole; p += L) {
      vec xp[IN];
      load_planar<IN, SW>(xr + p * SW * IN, xp);
      block(xp, dr + p * OC, false);
    }
    if (tails && rest) {
      vec raw[SW * IN], xp[IN];
      load_prefix(xr + whole * SW * IN, (rest - 1) * SW * IN + IN, raw);
      planar_from<IN, SW>(raw, xp);
      block(xp, dr + whole * OC, true);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < IN * OC; ++i) acc[i / OC][i % OC] += lane_sum(a[i]);
  if (db)
    for (int o = 0; o < OC; ++o) db[o] += lane_sum(dsum[o]);
  return tails ? count : whole;
}

// The first n floats of R registers to dst; nothing past dst + n is written (AVX-512 only:
// masked stores).
template <int R>
[[gnu::always_inline]] inline void store_prefix(float* dst, const vec (&v)[R], int64_t n) {
#if defined(__AVX512F__)
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const int64_t m = std::min<int64_t>(std::max<int64_t>(n - r * L, 0), L);
    _mm512_mask_storeu_ps(dst + r * L, (__mmask16)((1u << m) - 1), (__m512)v[r]);
  }
#else
  (void)dst, (void)v, (void)n;
#endif
}

// Whether map runs a row's last pixels (fewer than L) as one more register: with masked
// loads and stores only (AVX-512). Before, they went pixel by pixel (narrow_pointwise.cpp's
// map_pixels): all of a 1x1 s2 forward's rows of 14 pixels (N=256 28x28 C=3), 12 of 28 at
// 56x56. 1 thread, ms before/after, paired, the loaded Zen 4: benchmarks/RESULTS.md.
#if defined(__AVX512F__)
constexpr bool kMapTails = true;
#else
constexpr bool kMapTails = false;
#endif
// Shorter tails go pixel by pixel (map_pixels' groups of 4): 1 thread, ms per-pixel/tail
// register, 5 paired rounds, 1x1 s2 C=3: N=256 7x7 (rows of 4 pixels) 0.022/0.028, N=256
// 14x14 (rows of 7) 0.053/0.041.
constexpr int64_t kMinTail = 6;

// dst[r*dst_rs + p*OUT + o] = bias[o] + sum_i src[r*src_rs + p*SW*IN + i] * w[i*ldw + o] for
// rows r < rows and p < min(count, reg_max) rounded down to L, all of count where kMapTails
// (the forward map, and backward data's at stride 1 with w transposed): IN planar registers
// in, OUT accumulators, merged back to NHWC (pixel_transpose.h); returns the pixels done in
// each row. Whole registers at SW = 2 read a row's pixels up to 2*reg_max - 1 (the caller
// keeps that in the row), the tail (at most L pixels) only the floats of its pixels. With pf > 0, pf floats of the src row `ahead` rows on are prefetched as each
// row starts. Rows inside: the strided forward called this per output row, and with rows of
// 7..28 pixels the weights' broadcasts and the call were most of the time (perf, 1x1 s2 N=256
// 28x28 C=3: the 9 weight registers set up for one register of pixels).
template <int IN, int OUT, int SW>
int64_t map(const float* src, int64_t src_rs, float* dst, int64_t dst_rs, int64_t rows,
            int64_t count, int64_t reg_max, const float* w, int64_t ldw, const float* bias,
            int64_t pf, int64_t ahead) {
  vec wv[IN * OUT], bv[OUT];
  for (int i = 0; i < IN * OUT; ++i) wv[i] = vec{} + w[(i / OUT) * ldw + i % OUT];
  for (int o = 0; o < OUT; ++o) bv[o] = vec{} + bias[o];
  // L pixels (planar xp) to the NHWC registers of their OUT channels
  auto pixels = [&](const vec (&xp)[IN], vec (&out)[OUT]) {
    vec y[OUT];
#pragma GCC unroll 8
    for (int o = 0; o < OUT; ++o) {
      y[o] = bv[o];
#pragma GCC unroll 8
      for (int i = 0; i < IN; ++i) y[o] += xp[i] * wv[i * OUT + o];
    }
    if constexpr (OUT == 1) out[0] = y[0];
    else pixel_transpose::merge<OUT>(y, out);
  };
  const int64_t whole = std::min(count, reg_max) / L * L, rest = count - whole;
  const bool tails = kMapTails && rest >= kMinTail;
  for (int64_t r = 0; r < rows; ++r, src += src_rs, dst += dst_rs) {
    if (pf) prefetch_floats(src + ahead * src_rs, pf);
    for (int64_t p = 0; p < whole; p += L) {
      vec xp[IN], out[OUT];
      load_planar<IN, SW>(src + p * SW * IN, xp);
      pixels(xp, out);
      float* d = dst + p * OUT;
#pragma GCC unroll 8
      for (int o = 0; o < OUT; ++o) pixel_transpose::store(d + o * L, out[o]);
    }
    if (tails) {
      vec raw[SW * IN], xp[IN], out[OUT];
      load_prefix(src + whole * SW * IN, (rest - 1) * SW * IN + IN, raw);
      planar_from<IN, SW>(raw, xp);
      pixels(xp, out);
      store_prefix(dst + whole * OUT, out, rest * OUT);
    }
  }
  return tails ? count : whole;
}

using MapFn = int64_t (*)(const float*, int64_t, float*, int64_t, int64_t, int64_t, int64_t,
                         const float*, int64_t, const float*, int64_t, int64_t);

template <int IN, int SW, int... OUT>
constexpr MapFn pick_map_out(int out, std::integer_sequence<int, OUT...>) {
  constexpr MapFn t[] = {&map<IN, OUT + 1, SW>...};
  return t[out - 1];
}
template <int SW, int... IN>
constexpr MapFn pick_map_in(int in, int out, std::integer_sequence<int, IN...>) {
  constexpr MapFn (*t[])(int, std::make_integer_sequence<int, kMaxChannels>) = {
      &pick_map_out<IN + 1, SW>...};
  return t[in - 1](out, std::make_integer_sequence<int, kMaxChannels>());
}

// 5..8 channels: Cin == Cout only (the sweep's shapes), to bound the instantiations. At
// AVX-512 only 5 and 6 at stride 1: 1 thread, ms per-pixel/planar on the loaded Zen 4, C=6
// N=256 28x28 fwd 0.568/0.377, bwd-data 0.535/0.325, C=5 N=32 56x56 0.250/0.127, but C=8
// N=32 56x56 0.261/0.286 and stride 2 C=6 N=32 112x112 0.36/0.41. Below AVX-512 the per-pixel
// map runs its 16-lane vectors as 2 or 4 registers and loses everywhere (avx2: C=6 N=256
// 28x28 7.16/0.62, C=8 N=32 56x56 3.19/0.44, s2 C=6 N=32 112x112 4.23/1.06).
constexpr int kMaxDiagonal = 8;
constexpr bool diagonal_planar(int64_t c, int64_t sw) {
  return kVectorRegisters >= 32 ? c <= 6 && sw == 1 : true;
}
template <int SW, int... C>
constexpr MapFn pick_map_diagonal(int c, std::integer_sequence<int, C...>) {
  constexpr MapFn t[] = {&map<C + kMaxChannels + 1, C + kMaxChannels + 1, SW>...};
  return t[c - kMaxChannels - 1];
}

// The map for in -> out channels at stride sw; nullptr where none is compiled.
inline MapFn pick_map(int64_t in, int64_t out, int64_t sw) {
  if (in == out && in > kMaxChannels && in <= kMaxDiagonal && (sw == 1 || sw == 2)) {
    if (!diagonal_planar(in, sw)) return nullptr;
    const auto seq = std::make_integer_sequence<int, kMaxDiagonal - kMaxChannels>();
    return sw == 1 ? pick_map_diagonal<1>((int)in, seq) : pick_map_diagonal<2>((int)in, seq);
  }
  if (in < 1 || in > kMaxChannels || out < 1 || out > kMaxChannels || sw < 1 || sw > 2) return nullptr;
  // 1 -> 1 at stride 1: narrow_pointwise.cpp's scaled copy (vectorised over pixels); at stride
  // 2 that loop is scalar, and this takes it (measured: benchmarks/RESULTS.md, helper Y).
  if (in == 1 && out == 1 && sw == 1) return nullptr;
  const auto seq = std::make_integer_sequence<int, kMaxChannels>();
  return sw == 1 ? pick_map_in<1>((int)in, (int)out, seq) : pick_map_in<2>((int)in, (int)out, seq);
}

using DotFn = int64_t (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t, bool,
                         int64_t, int64_t, f32x16*, float*);

template <int IN, int SW, int... OC>
constexpr DotFn pick_oc(int oc, std::integer_sequence<int, OC...>) {
  constexpr DotFn t[] = {(IN * (OC + 1) <= kAccumulators ? &dot_rows<IN, OC + 1, SW> : nullptr)...};
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
  // 1 -> 1 at stride 1 keeps narrow_pointwise.cpp's unit-stride loop (one accumulator here
  // waits on its FMA latency: 0.14 -> 0.16 ms for N=256 56x56).
  if (in == 1 && oc == 1 && sw == 1) return nullptr;
  if (in < 1 || in > kMaxChannels || oc < 1 || oc > kMaxChannels || sw < 1 || sw > 2) return nullptr;
  const auto seq = std::make_integer_sequence<int, kMaxChannels>();
  return sw == 1 ? pick_in<1>((int)in, (int)oc, seq) : pick_in<2>((int)in, (int)oc, seq);
}

}  // namespace fastconv::cpu::detail::planar_dot
