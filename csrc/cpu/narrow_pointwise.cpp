// 1x1 convolutions with few channels on each side (groups == 1, no padding: 'same' and
// 'valid' alike for a 1x1 window), NHWC activations, HWIO weights: up to 32 channels each
// side for the forward and backward-data maps, up to 16 for the weight pass.
//
// Why: such a conv is a per-pixel map y[p] = b + x[p'] @ W with a W of at most 16 x 16, so
// it is bound by the bytes it moves, not by FLOPs. The GEMM path ran it as a GEMM of K or N
// = 1..16 (OpenBLAS: tens of ns per pixel), and at stride 2 the direct kernel packed every
// row into planes first: N=256 56x56 C=1 -> 1 took 5-17 ms where a copy of its bytes takes
// 0.3 ms (issue 18, item 3; the measurements are in benchmarks/RESULTS.md). Here each output
// pixel is one 16-lane vector of channels: the bias, plus one broadcast of each input channel
// times that channel's weight row; the pixel is stored straight into NHWC. Four pixels are in
// flight at once so that the FMA latency is hidden when Cin is small. Stride just steps the
// input pointer by sw pixels and skips rows, so nothing is repacked.
//
//   forward          y[n, oy, ox, :]  = b + sum_ci x[n, oy*sh, ox*sw, ci] * w[ci, :]
//   backward data    dx[n, oy*sh, ox*sw, :] = sum_co dy[n, oy, ox, co] * w[:, co]
//                    (the same map with w transposed); pixels off the stride grid are zero
//   backward weights dw[ci, :] = sum over output pixels of x[pixel', ci] * dy[pixel, :]:
//                    Cin accumulators of 16 lanes; each work item's float sums are added to
//                    the thread's double partials, the partials summed in thread order
//                    (deterministic for a fixed thread count); db summed by the planar,
//                    packed and 1 -> 1 kernels from the dy registers they load (stop 35), by
//                    the others from the item's dy as one contiguous run (channel_sums).
// Work items at stride 1, where x, y (and dy, dx) are each one pixel stream: runs of 1024
// (map) or 2048 (weight pass) pixels whatever the rows (a call and a flush per row of 7..28
// pixels cost more than the row's work). Strided: the forward map and the weight pass take
// blocks of about 1024 / 512 pixels of whole output rows of one image, backward data rows.
// Tails (AVX-512): masked loads and stores (issue 18 item 3, helper Y; see load16_prefix,
// store16_prefix, planar_dot::load_prefix / store_prefix).
// 4..8 channels each side in the weight pass (AVX-512): 16 / C pixels a vector (dot_packed);
// 5..8 in the strided forward map likewise (map_packed, stop 35).
// Cin = Cout = 1 is a plain scaled copy and runs as one (vectorised over pixels at stride 1).
// 1..4 channels each side at stride 1 or 2 (issue 18 item 3, helper C): whole registers of
// pixels run on planar registers instead (narrow_pointwise_planar.h: the forward map, backward
// data's at stride 1, the weight pass), the pixels left over as below.
// The vector type is the 16-lane one at every ISA level (two ymm at avx2, four xmm at the
// baseline): the arithmetic per output is the same at each level.
//
// 17..32 channels (issue 18 item 3, helper C): the maps hold a pixel in two vectors. There
// the GEMM of K = N = 24 or 32 ran at 65-115 GFLOP/s (1 thread, Zen 5, sgemm 249); the map
// at 24 and 32 channels, stride 1, 2.1-3.5x faster (benchmarks/RESULTS.md, 2026-12-06
// few-channel sweep section). The weight pass needs 2 x Cin accumulators (64 at 32 channels):
// at AVX-512 it runs the input channels in blocks of <= 13 (narrow_pointwise_weights.cpp
// dot_wide, stop 34), below it stays on the GEMM. At AVX-512 the strided forward map wins on
// the Zen 4 too (narrow_pointwise_shape). A pixel of 17..24 channels is a vector of 16 and one
// of 8 (HiVec, stop 34).
//
// Files: the maps and the routing here; the weight pass in narrow_pointwise_weights.cpp; their
// shared helpers in narrow_pointwise_common.h; the planar 1..4-channel kernels in
// narrow_pointwise_planar.h; the 3- and 6-channel stride-1 maps and the strided backward data's
// 3-channel pixel pairs on NHWC registers in narrow_pointwise_flat.h (stop 33); at avx2 the
// 5..8-channel maps (and 3 at stride 2) on ymm registers in narrow_pointwise_regs.h (stop 38).
#include "cpu/narrow_pointwise.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cpu/narrow_pointwise_common.h"
#include "cpu/narrow_pointwise_flat.h"
#include "cpu/narrow_pointwise_planar.h"
#include "cpu/narrow_pointwise_regs.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

// Whether in -> out channels at stride sw run on narrow_pointwise_regs.h's map (avx2, the
// forward and backward data) instead of the planar or the 16-lane per-pixel one: 5..8
// channels each side, and 3 at stride 2. 1 thread, ms before/after, paired, avx2 (stop 38,
// benchmarks/RESULTS.md): C=6 1x1 s1 fwd N=32 56x56 0.49/0.27, bwd-data N=256 14x14
// 0.22/0.12, s2 fwd C=3 N=256 28x28 0.24/0.17. Not 3 at stride 1, where the planar map is
// faster (fwd N=256 28x28 0.266/0.275, bwd-data N=32 56x56 0.133/0.158).
constexpr bool regs_map(int64_t in, int64_t out, int64_t sw) {
  return pixel_regs::kCompiled && in == out && ((in >= 5 && in <= 8) || (in == 3 && sw > 1));
}

// The register map for in -> out channels at stride sw, or nullptr: the flat map for 3 -> 3
// and 6 -> 6 at stride 1 (AVX-512, narrow_pointwise_flat.h: 1.13-1.4x the planar map's speed,
// paired), else the planar one where compiled.
planar_dot::MapFn pick_register_map(int64_t in, int64_t out, int64_t sw) {
#if defined(__AVX512F__)
  if (in == 6 && out == 6 && sw == 1) return &flat_map::map<6, 6>;
  if (in == 3 && out == 3 && sw == 1) return &flat_map::map<3, 3>;
#endif
  if (regs_map(in, out, sw)) return nullptr;
  return planar_dot::pick_map(in, out, sw);
}

// The strided backward data's map of dy rows onto their dx rows of pixel pairs (W = 2 OW,
// the skipped pixel's zeros as channels C..2C-1: flat_map::Flat), or nullptr: C = 3 each side
// at AVX-512, where the per-pixel map_group ran a broadcast and an FMA per channel and pixel
// and a masked store per pixel. 1 thread, ms per-pixel/pairs, paired: N=256 28x28 0.132/0.075.
// At C = 6 the pairs lost (12 registers of pixel pairs, 6 gathers each: N=256 14x14
// 0.069/0.078, 28x28 0.174/0.213, N=32 112x112 0.49/1.23).
planar_dot::MapFn pick_pair_map(int64_t in, int64_t out) {
#if defined(__AVX512F__)
  if (in == 3 && out == 3) return &flat_map::map<3, 6>;
#endif
  (void)in, (void)out;
  return nullptr;
}

// A per-pixel linear map of `in` -> OUT channels: row i of w holds the weights from input
// channel i to the OUT outputs (zero lanes beyond).
struct PixelMap {
  alignas(64) float w[kNarrowMapMax][kNarrowMapMax] = {};
  alignas(64) float bias[kNarrowMapMax] = {};
  int64_t in = 0;
  // Floats stored per pixel: OUT, or (backward data at stride 2, OUT <= 8, AVX-512 only) up
  // to 16: the pixel, then zeros over the skipped pixel after it (see the strided pass).
  int fill = 0;
};

// v with the lanes from n on zero (0 * inf in the accumulators' zero-weight lanes is NaN).
template <size_t... I>
constexpr i32x16 lanes_below16(int n, std::index_sequence<I...>) {
  return i32x16{((int)I < n ? -1 : 0)...};
}

// Channels 16..OUT-1 of a pixel: 16 lanes, or 8 where OUT <= 24. Both vectors of 16 lanes
// at 17..24 channels spent a quarter of the FMAs on the 8 lanes past OUT (1x1 s2 C=24 forward:
// 48 FMAs of 16 lanes per pixel for 576 multiply-adds; 24 + 24 of 8 lanes here).
typedef float f32x8 __attribute__((vector_size(32)));
template <int OUT>
using HiVec = std::conditional_t<(OUT <= 24), f32x8, v16>;
template <typename V>
inline V load_hi(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// The first n lanes of an 8-lane vector to p; nothing past p + n is written.
inline void store_prefix(float* p, f32x8 v, int n) {
  if (n >= 8) return std::memcpy(p, &v, sizeof v), void();
#if defined(__AVX512F__)
  _mm256_mask_storeu_ps(p, (__mmask8)((1u << n) - 1), (__m256)v);
#else
  std::memcpy(p, &v, sizeof(float) * n);
#endif
}
inline void store_prefix(float* p, v16 v, int n) { store16_prefix(p, v, n); }

// R pixels of a map: dst[r*dst_step + o] = bias[o] + sum_i src[r*src_step + i] * m.w[i][o],
// o < OUT, r < R. A pixel's OUT channels are a vector of 16 and, from 17 channels, a HiVec.
// With fewer than 8 accumulators the input channels alternate between S sets, so that the
// FMA latency is covered (a lone last pixel of 32 channels was a chain of 32 dependent FMAs:
// the 2-pixel tails of 14-pixel rows made a 1x1 stride-2 C=32 map slower than the GEMM).
template <int OUT, int R>
inline void map_group(const float* src, int64_t src_step, float* dst, int64_t dst_step,
                      const PixelMap& m, const v16* bias) {
  constexpr bool HI = OUT > 16;
  using H = HiVec<OUT>;
  constexpr int S = R * (HI ? 2 : 1) >= 8 ? 1 : R * (HI ? 2 : 1) >= 4 ? 2 : 4;
  const int64_t in = m.in;
  v16 a[S][R];
  H h[S][R];
  const H bias_hi = HI ? load_hi<H>(m.bias + 16) : H{};
#pragma GCC unroll 16
  for (int k = 0; k < S; ++k)
    for (int r = 0; r < R; ++r) {
      a[k][r] = k == 0 ? bias[0] : v16{};
      if (HI) h[k][r] = k == 0 ? bias_hi : H{};
    }
  auto step = [&](v16(&acc)[R], H(&acc_hi)[R], int64_t i) {
    const v16 w0 = load16(m.w[i]);
    const H w1 = HI ? load_hi<H>(m.w[i] + 16) : H{};
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const float x = src[r * src_step + i];
      acc[r] += x * w0;
      if (HI) acc_hi[r] += x * w1;
    }
  };
  int64_t i = 0;
  for (; i + S <= in; i += S)
#pragma GCC unroll 4
    for (int k = 0; k < S; ++k) step(a[k], h[k], i + k);
  for (; i < in; ++i) step(a[0], h[0], i);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    for (int k = 1; k < S; ++k) {
      a[0][r] += a[k][r];
      if (HI) h[0][r] += h[k][r];
    }
    if (!HI && m.fill > OUT) {
      constexpr i32x16 keep = lanes_below16(OUT, std::make_index_sequence<16>());
      store16_prefix(dst + r * dst_step, (v16)((i32x16)a[0][r] & keep), m.fill);
      continue;
    }
    store16_prefix(dst + r * dst_step, a[0][r], std::min(16, OUT));
    if (HI) store_prefix(dst + r * dst_step + 16, h[0][r], OUT - 16);
  }
}

// map_group below AVX-512 (avx2, baseline: 16 registers of 8 or 4 lanes): a pixel's OUT
// channels as NV registers of the level's own width (f32xR), at most 12 accumulator registers
// (a group of R pixels with more runs as two halves). Why: there map_group's 16-lane vectors
// have no register of their own, and GCC kept the accumulators in memory, moving them through
// general registers piece by piece (objdump of map_group<16, 4> at avx2: per FMA a store, two
// 64-bit loads, vmovq + vpinsrq and a reload). 1 thread, ms before/after, paired, avx2 (stop
// 37, benchmarks/RESULTS.md): 1x1 s2 backward data N=256 56x56 C=3 4.09/1.28, N=256 28x28 C=6
// 1.74/0.54.
template <int OUT, int R>
inline void map_group_native(const float* src, int64_t src_step, float* dst, int64_t dst_step,
                             const PixelMap& m) {
  constexpr int W = kRegLanes, NV = (OUT + W - 1) / W;
  if constexpr (R > 1 && R * NV > 12) {
    constexpr int R1 = R / 2;
    map_group_native<OUT, R1>(src, src_step, dst, dst_step, m);
    map_group_native<OUT, R - R1>(src + R1 * src_step, src_step, dst + R1 * dst_step, dst_step, m);
  } else {
    // With fewer than 8 accumulator registers, S sets over alternating input channels.
    constexpr int S = R * NV >= 8 ? 1 : R * NV >= 4 ? 2 : 4;
    const int64_t in = m.in;
    f32xR a[S][R][NV];
#pragma GCC unroll 16
    for (int k = 0; k < S; ++k)
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) a[k][r][v] = k == 0 ? load_hi<f32xR>(m.bias + v * W) : f32xR{};
    int64_t i = 0;
    for (; i + S <= in; i += S)
#pragma GCC unroll 4
      for (int k = 0; k < S; ++k) {
        f32xR wv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) wv[v] = load_hi<f32xR>(m.w[i + k] + v * W);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const float x = src[r * src_step + i + k];
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) a[k][r][v] += x * wv[v];
        }
      }
    for (; i < in; ++i) {
      f32xR wv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) wv[v] = load_hi<f32xR>(m.w[i] + v * W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float x = src[r * src_step + i];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) a[0][r][v] += x * wv[v];
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        for (int k = 1; k < S; ++k) a[0][r][v] += a[k][r][v];
        // OUT - v * W floats at most: nothing past the pixel is written
        constexpr int kFull = W;
        const int n = std::min(kFull, OUT - v * W);
        std::memcpy(dst + r * dst_step + v * W, &a[0][r][v], sizeof(float) * n);
      }
  }
}

// dst[p*dst_step + o] = bias[o] + sum_i src[p*src_step + i] * m.w[i][o], o < OUT, p < count:
// groups of 4 pixels, then one group of the 1..3 left.
template <int OUT>
void map_pixels(const float* src, int64_t src_step, float* dst, int64_t dst_step, int64_t count,
                const PixelMap& m) {
  if (OUT == 1 && m.in == 1) {  // a scaled copy: GCC vectorises the unit-stride loop
    const float w0 = m.w[0][0], b0 = m.bias[0];
    if (src_step == 1 && dst_step == 1) {
      for (int64_t p = 0; p < count; ++p) dst[p] = src[p] * w0 + b0;
    } else if (m.fill == 2 && src_step == 1 && dst_step == 2) {  // with the skipped zeros
      for (int64_t p = 0; p < count; ++p) dst[2 * p] = src[p] * w0 + b0, dst[2 * p + 1] = 0.f;
    } else {
      for (int64_t p = 0; p < count; ++p) dst[p * dst_step] = src[p * src_step] * w0 + b0;
    }
    return;
  }
  if constexpr (kVectorRegisters < 32) {
    int64_t p = 0;
    for (; p + 4 <= count; p += 4)
      map_group_native<OUT, 4>(src + p * src_step, src_step, dst + p * dst_step, dst_step, m);
    const float* s = src + p * src_step;
    float* d = dst + p * dst_step;
    switch (count - p) {
      case 3: return map_group_native<OUT, 3>(s, src_step, d, dst_step, m);
      case 2: return map_group_native<OUT, 2>(s, src_step, d, dst_step, m);
      case 1: return map_group_native<OUT, 1>(s, src_step, d, dst_step, m);
      default: return;
    }
  }
  v16 bias[1] = {load16(m.bias)};
  int64_t p = 0;
  for (; p + 4 <= count; p += 4)
    map_group<OUT, 4>(src + p * src_step, src_step, dst + p * dst_step, dst_step, m, bias);
  const float* s = src + p * src_step;
  float* d = dst + p * dst_step;
  switch (count - p) {
    case 3: return map_group<OUT, 3>(s, src_step, d, dst_step, m, bias);
    case 2: return map_group<OUT, 2>(s, src_step, d, dst_step, m, bias);
    case 1: return map_group<OUT, 1>(s, src_step, d, dst_step, m, bias);
    default: return;
  }
}

using MapFn = void (*)(const float*, int64_t, float*, int64_t, int64_t, const PixelMap&);

template <size_t... I>
constexpr std::array<MapFn, sizeof...(I)> map_table(std::index_sequence<I...>) {
  return {&map_pixels<int(I) + 1>...};
}

#if defined(__AVX2__) && !defined(__AVX512F__)
template <int C>
void map_regs(const float* src, int64_t src_step, float* dst, int64_t dst_step, int64_t count,
              const PixelMap& m) {
  pixel_regs::map<C, C>(src, src_step, dst, dst_step, count, &m.w[0][0], kNarrowMapMax, m.bias);
}
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
template <int C>
void map_regs_pairs(const float* src, int64_t src_step, float* dst, int64_t dst_step, int64_t count,
                    const PixelMap& m) {
  pixel_regs::map<C, C, true>(src, src_step, dst, dst_step, count, &m.w[0][0], kNarrowMapMax, m.bias);
}
#endif

// The strided backward data's map of in -> out channels onto pixel pairs (each pixel, then the
// skipped one's zeros) on the register map, or nullptr.
MapFn pick_pair_regs(int64_t in, int64_t out) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (regs_map(in, out, 2)) {
    static constexpr MapFn t[] = {nullptr, nullptr, &map_regs_pairs<3>, nullptr, &map_regs_pairs<5>,
                                  &map_regs_pairs<6>, &map_regs_pairs<7>, &map_regs_pairs<8>};
    return t[in - 1];
  }
#endif
  (void)in, (void)out;
  return nullptr;
}

// The per-pixel map of in -> out channels at stride sw.
MapFn pick_map(int64_t in, int64_t out, int64_t sw) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (regs_map(in, out, sw)) {
    static constexpr MapFn t[] = {nullptr, nullptr, &map_regs<3>, nullptr, &map_regs<5>,
                                  &map_regs<6>, &map_regs<7>, &map_regs<8>};
    return t[in - 1];
  }
#else
  (void)in, (void)sw;
#endif
  static constexpr auto table = map_table(std::make_index_sequence<kNarrowMapMax>());
  return table[out - 1];
}

// The strided forward map with C = 5..8 channels each side (AVX-512): P = 16 / C output
// pixels a vector (Packed<C, 2>, narrow_pointwise_common.h), lane k*C + o output channel o of
// pixel k: per input channel one permute of the group's x floats (two loads, the second masked
// to the XF - 16 floats the group reads: nothing past its last pixel is read) and one FMA with
// the register of w[i][o] repeated per pixel; one masked store of P*C floats. map_pixels ran
// a broadcast and a 16-lane FMA per input channel and pixel (6 of 16 lanes used at C = 6: 6
// FMAs a pixel, 3 here) and a 6-float store per pixel. A row's last count % P pixels: one
// more group of masked loads and store. Each lane sums its own pixel's products (bias, then
// i = 0..C-1): a NaN or inf reaches only its pixel's outputs.
#if defined(__AVX512F__)
template <int C>
void map_packed(const float* src, int64_t src_rs, float* dst, int64_t dst_rs, int64_t rows,
                int64_t count, const PixelMap& m, int64_t pf) {
  using K = Packed<C, 2>;
  constexpr int P = K::P;
  static_assert(K::XF > 16 && K::XF <= 32);
  i32x16 idx[C];
  v16 wv[C], bv;
#pragma GCC unroll 8
  for (int i = 0; i < C; ++i) idx[i] = K::index(i, std::make_index_sequence<16>());
  for (int l = 0; l < 16; ++l) {
    const bool used = l < P * C;
    bv[l] = used ? m.bias[l % C] : 0.f;
    for (int i = 0; i < C; ++i) wv[i][l] = used ? m.w[i][l % C] : 0.f;
  }
  auto group = [&](v16 xa, v16 xb) {
    v16 y = bv;
#pragma GCC unroll 8
    for (int i = 0; i < C; ++i) y += __builtin_shuffle(xa, xb, idx[i]) * wv[i];
    return y;
  };
  const int64_t whole = count / P * P;
  for (int64_t r = 0; r < rows; ++r, src += src_rs, dst += dst_rs) {
    if (pf) prefetch_floats(src + kAhead * src_rs, pf);
    int64_t p = 0;
    for (; p < whole; p += P) {
      const float* s = src + p * 2 * C;
      store16_prefix(dst + p * C, group(load16(s), load16_prefix(s + 16, K::XF - 16)), P * C);
    }
    if (p < count) {  // n < P pixels
      const int64_t n = count - p, xn = (n - 1) * 2 * C + C;
      const float* s = src + p * 2 * C;
      store16_prefix(dst + p * C, group(load16_prefix(s, xn), load16_prefix(s + 16, xn - 16)),
                     (int)(n * C));
    }
  }
}
#endif

using PackedMapFn = void (*)(const float*, int64_t, float*, int64_t, int64_t, int64_t,
                             const PixelMap&, int64_t);

// The packed strided forward map for in -> out channels at stride sw, or nullptr.
PackedMapFn pick_packed_map(int64_t in, int64_t out, int64_t sw) {
#if defined(__AVX512F__)
  if (in == out && sw == 2 && in >= 5 && in <= 8) {
    static constexpr PackedMapFn t[] = {&map_packed<5>, &map_packed<6>, &map_packed<7>,
                                        &map_packed<8>};
    return t[in - 5];
  }
#endif
  (void)in, (void)out, (void)sw;
  return nullptr;
}

}  // namespace

bool narrow_pointwise_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  int64_t max = pass == ConvPass::BackwardWeights ? kNarrowPointwiseMax : kNarrowMapMax;
  // 17..32 channels in the weight pass (AVX-512, kWeightsMax): both sides (no other pair
  // measured). With dy's two halves run as two passes of dot_pixels (16 lanes each) it took
  // 17..24 only, and at stride 2 only rows of >= 14 pixels (rows of 4 lost to the GEMM: N=256
  // 7x7 0.135/0.177 ms). With dot_wide (stop 34) every row length and 25..32 channels win:
  // 1 thread, ms GEMM/here, medians of 3 paired rounds on the loaded Zen 4: s2 C=24 N=256 14x14
  // 0.367/0.173, 7x7 0.127/0.071; C=32 N=256 14x14 0.402/0.274, 7x7 0.134/0.103, N=32 14x14
  // 0.055/0.041; N=1 28x28 C=24 0.0086 both (the s1 and s2 C=32 runs: benchmarks/RESULTS.md).
  if (pass == ConvPass::BackwardWeights && g.c > max && g.oc > max) max = kWeightsMax;
  // A strided forward map reads x one pixel at a time: at 32 channels it first lost to the
  // GEMM on the Zen 5 (1 thread, ms map/GEMM, 1x1 s2 N=256 28x28 2.02/1.83, N=32 112x112
  // 4.67/3.44). On the Zen 4 the GEMM (tap_forward's shallow products) is the slower one at
  // 32: ms GEMM/map, medians of 5 paired rounds (2026-12-07, helper Y): N=256 28x28
  // 3.45/2.69, N=32 56x56 1.05/0.72, N=32 112x112 6.55/4.54, N=256 56x56 12.9/10.5, N=256
  // 7x7 0.151/0.093, 14x14 0.59/0.33; so the map takes every strided forward up to 32 there.
  // Below AVX-512 (a pixel's 32 channels in 4 or 8 registers; not measured) it stays at 24.
  if (pass == ConvPass::Forward && (v.sh > 1 || v.sw > 1) && kVectorRegisters < 32) max = 24;
  // Except 29..32 channels with output rows of <= 14 pixels and >= 4 MiB of y (there the GEMM
  // runs im2col: rows under tap_forward's 16): 1 thread, ms map/GEMM, medians of 9-11
  // alternating calls in one process, 2026-12-07 (helper W2), N=256 28x28 C=32 3.87/3.01,
  // 3.49/2.94, 2.91/2.73, 27x27 3.51/2.77; but the map kept C=28 (N=256 28x28 1.99/2.37),
  // C=24 (2.49/2.52, 1.93/2.27), less y (N=512 14x14 C=32 1.13/1.40, N=128 28x28 0.92/1.06),
  // rows of 28 (N=32 56x56 0.97/1.18; N=128 56x56 5.24/5.11, even) and 56 (N=32 112x112
  // 5.13/5.19).
  if (pass == ConvPass::Forward && (v.sh > 1 || v.sw > 1) && g.c > 28 && g.oc > 28 &&
      g.ow <= 14 && g.output_size() * (int64_t)sizeof(float) >= (int64_t{4} << 20))
    return false;
  return g.groups == 1 && v.kh == 1 && v.kw == 1 && v.pt == 0 && v.pb == 0 && v.pl == 0 &&
         v.pr == 0 && g.c >= 1 && g.oc >= 1 && g.c <= max && g.oc <= max;
}

void narrow_pointwise_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act) {
  PixelMap m;
  m.in = g.c;
  for (int64_t ci = 0; ci < g.c; ++ci)
    for (int64_t co = 0; co < g.oc; ++co) m.w[ci][co] = w[ci * g.oc + co];
  if (b) std::memcpy(m.bias, b, sizeof(float) * g.oc);
  const MapFn map = pick_map(g.c, g.oc, g.win.sw);
  const int64_t sh = g.win.sh, sw = g.win.sw;
  // 1..4 channels each side at stride 1 or 2: whole registers of pixels on planar registers
  // (narrow_pointwise_planar.h), the rest pixel by pixel.
  const planar_dot::MapFn planar = pick_register_map(g.c, g.oc, sw);
  const PackedMapFn packed = pick_packed_map(g.c, g.oc, sw);  // 5..8 channels, stride 2
  const int64_t in_row = g.w * g.c, pf = sh > 1 && in_row >= kPrefetchRow ? in_row : 0;
  // Work items: at stride 1 x and y are each one pixel stream, cut into runs of kMapRun pixels
  // (rows of 28 pixels cost ~8 ns each in calls: N=256 28x28 C=1 took 62 us); strided, blocks
  // of about kMapRun pixels of whole output rows of one image (x's rows sh apart), one call of
  // the planar map a block (it was a call per output row: see planar_dot::map).
  const bool stream = sh == 1 && sw == 1;
  const int64_t pixels = g.n * g.oh * g.ow;
  const int64_t block_rows =
      stream ? 1 : std::max<int64_t>(1, std::min(g.oh, kMapRun / std::max<int64_t>(g.ow, 1)));
  const int64_t blocks = (g.oh + block_rows - 1) / block_rows;
  const int64_t items = stream ? (pixels + kMapRun - 1) / kMapRun : g.n * blocks;
  // At stride 2 a whole register of pixels reads 2L of x: whole ones within the row only
  // (the tail register, reading only its pixels' floats, takes the rest).
  const int64_t row_whole = sw == 1 ? g.ow : std::min(g.ow, g.w / 2);
  // The per-pixel map's rows at a stride with pixels of 16 or more channels, x past the
  // cache: each row's lines loaded first (touch_lines), when the x rows read and y come to
  // kTouchBytes or more. 1 thread, ms before/after, one process loading both builds, both
  // orders (benchmarks/RESULTS.md, stop 36): 1x1 s2 N=256 56x56 C=16 5.24/4.84, 5.73/4.94
  // (x 64-byte aligned: 7.12/5.07, 6.84/5.19), N=256 28x28 C=24 2.61/2.12, 3.10/2.42, N=256
  // 56x56 C=24 10.1/7.8, 10.2/8.2. Not below 16 channels (C=12: 0.95-1.04x) nor under 8 MiB
  // (N=32 56x56 C=16, 4.8 MB: 0.82x with the touch).
  constexpr int64_t kTouchBytes = int64_t{8} << 20;
  const bool touch = !planar && !packed && sh > 1 && g.c >= 16 &&
                     (g.n * g.oh * in_row + g.output_size()) * (int64_t)sizeof(float) >= kTouchBytes;
  parallel_region(pass_threads(g), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t l = 0; l < items; ++l) {
      int64_t p0, count, rows;  // rows of count pixels from y + p0 * OC, x rows xs apart
      const float* src;
      if (stream) {
        p0 = l * kMapRun, count = std::min(kMapRun, pixels - p0), rows = 1;
        src = x + p0 * g.c;
      } else {
        const int64_t n = l / blocks, oy0 = (l % blocks) * block_rows;
        rows = std::min(block_rows, g.oh - oy0), count = g.ow;
        p0 = (n * g.oh + oy0) * g.ow;
        src = x + (n * g.h + oy0 * sh) * in_row;
      }
      const int64_t xs = sh * in_row, whole = stream ? count : row_whole;
      const int64_t done = planar && (planar_dot::kMapTails ? count >= planar_dot::kMinTail
                                                             : whole >= planar_dot::L)
                               ? planar(src, xs, y + p0 * g.oc, count * g.oc, rows, count, whole,
                                        &m.w[0][0], kNarrowMapMax, m.bias, pf, kAhead)
                               : 0;
      if (packed) {
        packed(src, xs, y + p0 * g.oc, count * g.oc, rows, count, m, pf);
        activation_inplace(rows * count * g.oc, y + p0 * g.oc, act);
        continue;
      }
      for (int64_t r = 0; r < rows; ++r) {
        if (touch) touch_lines(src + r * xs, in_row);
        if (!planar && pf) prefetch_row(src + (r + kAhead) * xs, pf, sw * g.c, count, g.c);  // a later row's input
        map(src + r * xs + done * sw * g.c, sw * g.c, y + (p0 + r * count + done) * g.oc, g.oc,
            count - done, m);
      }
      activation_inplace(rows * count * g.oc, y + p0 * g.oc, act);
    }
  });
}

void narrow_pointwise_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx) {
  PixelMap m;  // dx pixel = dy pixel @ w^T: input channel co, output channel ci
  m.in = g.oc;
  for (int64_t ci = 0; ci < g.c; ++ci)
    for (int64_t co = 0; co < g.oc; ++co) m.w[co][ci] = w[ci * g.oc + co];
  const MapFn map = pick_map(g.oc, g.c, g.win.sw);
  const int64_t sh = g.win.sh, sw = g.win.sw, row = g.w * g.c;
  if (sh == 1 && sw == 1) {  // no stride, no pads: dy and dx are one pixel stream each
    const planar_dot::MapFn planar = pick_register_map(g.oc, g.c, 1);  // as in the forward
    const int64_t pixels = g.n * g.h * g.w, items = (pixels + kMapRun - 1) / kMapRun;
    parallel_region(pass_threads(g), [&] {
      note_team();
#pragma omp for schedule(static)
      for (int64_t l = 0; l < items; ++l) {
        const int64_t p0 = l * kMapRun, count = std::min(kMapRun, pixels - p0);
        const int64_t done = planar ? planar(dy + p0 * g.oc, 0, dx + p0 * g.c, 0, 1, count, count,
                                             &m.w[0][0], kNarrowMapMax, m.bias, 0, 0)
                                    : 0;
        map(dy + (p0 + done) * g.oc, g.oc, dx + (p0 + done) * g.c, g.c, count - done, m);
      }
    });
    return;
  }
  // Stride 2 across, with every column of dx on or just after a strided one (W = 2 OW) and a
  // pixel pair in one vector (C <= 8): each pixel's store writes the zeros of the skipped
  // pixel after it (masked stores, AVX-512), so dx's rows on the grid are written once, not
  // zeroed first. 1 thread, ms before/after, paired, the loaded Zen 4: see kStridedFill.
  // Not at 9..16 channels (a second store for the rest of the zeros): 1 thread, ms memset
  // then map / pairs, 3 paired rounds in one process (stop 35): N=256 28x28 C=16 0.515/0.546.
  const bool fill = kStridedFill && sw == 2 && g.w == 2 * g.ow && 2 * g.c <= 16;
  if (fill) m.fill = (int)(2 * g.c);
  // The pair map only while dx fits the L3 (a few MB): past it the two passes over each item's
  // rows (the map's grid rows, then the memsets between them) lost to the per-pixel map's one
  // pass in DRAM-bound calls. 1 thread, ms per-pixel/pairs, paired medians (5-9 rounds):
  // N=32 112x112 (dx 4.8 MB) 0.173/0.098, N=256 56x56 (9.6 MB) 0.44/0.42 (bimodal: 0.26 or
  // 0.5-0.8), N=256 112x112 (38.5 MB) 2.69/4.37.
  constexpr int64_t kPairMaxBytes = 8 << 20;
  const planar_dot::MapFn pairs =
      fill && g.input_size() * (int64_t)sizeof(float) <= kPairMaxBytes ? pick_pair_map(g.oc, g.c) : nullptr;
  // Items of about kMapRun dy pixels: whole dy rows of one image and the dx rows from the
  // first one's to the next item's, found without dividing (two divisions per dx row were a
  // fifth of N=256 14x14 C=6, perf); the pair map a call per item (it sets up its weight
  // registers per call: per 14-pixel row that setup was 3/4 of the pass).
  // 1 -> 1 channel with the skipped zeros (fill): each grid row mapped inline, not through
  // the map's call per row (rows of 7..56 pixels, ~3 ns a call). 1 thread, ms before/after,
  // paired, both orders (stop 35, helper Y2): N=256 14x14 0.022/0.017, 28x28 0.042/0.039,
  // 56x56 0.093/0.089, N=32 112x112 0.035/0.033; N=256 112x112 (DRAM) even.
  // At every level (stop 37): the loop needs no masked store; below AVX-512 (no `fill`) the
  // grid row was zeroed, then mapped by a strided scalar loop. 1 thread, ms before/after,
  // paired, avx2: see benchmarks/RESULTS.md (stop 37). At AVX-512 the same condition as before.
  const bool unit_fill = sw == 2 && g.w == 2 * g.ow && g.c == 1 && g.oc == 1;
  // avx2, the register map's channel counts: each grid row's pixels with the skipped pixels'
  // zeros (narrow_pointwise_regs.h PAIRS), the row not zeroed first. 1 thread, ms before/after,
  // paired, avx2 (stop 38, against the register map on zeroed rows): N=32 112x112 C=3
  // 0.455/0.358, N=256 28x28 C=6 0.480/0.410, N=256 14x14 C=6 0.055/0.047, N=32 56x56 C=8
  // 0.165/0.138.
  const MapFn reg_pairs = !fill && sw == 2 && g.w == 2 * g.ow ? pick_pair_regs(g.oc, g.c) : nullptr;
  const float w0 = m.w[0][0];
  const int64_t block = std::max<int64_t>(1, std::min(g.oh, kMapRun / g.ow));
  const int64_t blocks = (g.oh + block - 1) / block, items = g.n * blocks;
  parallel_region(pass_threads(g), [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / blocks, oy0 = (it % blocks) * block, oy1 = std::min(g.oh, oy0 + block);
      const int64_t iy1 = oy1 == g.oh ? g.h : oy1 * sh;  // the last item: to the image's end
      float* dximg = dx + n * g.h * row;
      const float* dyimg = dy + n * g.oh * g.ow * g.oc;
      if (pairs)
        pairs(dyimg + oy0 * g.ow * g.oc, g.ow * g.oc, dximg + oy0 * sh * row, sh * row, oy1 - oy0,
              g.ow, g.ow, &m.w[0][0], kNarrowMapMax, m.bias, 0, 0);
      for (int64_t iy = oy0 * sh, oy = oy0; iy < iy1; ++iy) {
        float* dxrow = dximg + iy * row;
        // Input rows and columns off the stride grid (or past the last output) get no gradient.
        if (oy >= oy1 || iy != oy * sh) {
          std::memset(dxrow, 0, sizeof(float) * row);
          continue;
        }
        if (unit_fill) {  // inline: a call per row of 7..56 pixels cost more than the row
          const float* src = dyimg + oy * g.ow;
          for (int64_t p = 0; p < g.ow; ++p) dxrow[2 * p] = src[p] * w0, dxrow[2 * p + 1] = 0.f;
        } else if (reg_pairs) {
          reg_pairs(dyimg + oy * g.ow * g.oc, g.oc, dxrow, 2 * g.c, g.ow, m);
        } else if (!pairs) {
          if (!fill && (sw != 1 || g.ow != g.w)) std::memset(dxrow, 0, sizeof(float) * row);
          map(dyimg + oy * g.ow * g.oc, g.oc, dxrow, sw * g.c, g.ow, m);
        }
        ++oy;
      }
    }
  });
}

}  // namespace fastconv::cpu::detail
