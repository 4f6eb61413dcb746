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
//                    (deterministic for a fixed thread count); db from the item's dy as one
//                    contiguous run (channel_sums).
// Work items at stride 1, where x, y (and dy, dx) are each one pixel stream: runs of 1024
// (map) or 2048 (weight pass) pixels whatever the rows (a call and a flush per row of 7..28
// pixels cost more than the row's work). Strided: the forward map and the weight pass take
// blocks of about 1024 / 512 pixels of whole output rows of one image, backward data rows.
// Tails (AVX-512): masked loads and stores (issue 18 item 3, helper Y; see load16_prefix,
// store16_prefix, planar_dot::load_prefix / store_prefix).
// 4..8 channels each side in the weight pass (AVX-512): 16 / C pixels a vector (dot_packed).
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
// few-channel sweep section). The weight pass would need 2 x Cin accumulators (64 at 32
// channels): it stays on the GEMM there. At AVX-512 the strided forward map and the weight
// pass at 17..24 (rows of >= 14 pixels) win on the Zen 4 too (narrow_pointwise_shape).
#include "cpu/narrow_pointwise.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <utility>
#include <vector>

#include "cpu/narrow_pointwise_flat.h"
#include "cpu/narrow_pointwise_planar.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

typedef f32x16 v16;  // the channels of one pixel (<= 16), zero or don't-care beyond

inline v16 load16(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <size_t... I>
inline v16 splat_lanes(float s, std::index_sequence<I...>) {
  return v16{((void)I, s)...};
}
inline v16 splat16(float s) { return splat_lanes(s, std::make_index_sequence<16>()); }

// `n` floats at p as a vector, without reading past `end` (the lanes beyond n are then zero;
// otherwise they hold the next pixels' values, which the callers ignore).
inline v16 load_channels(const float* p, int64_t n, const float* end) {
  if (p + 16 <= end) return load16(p);
  alignas(64) float t[16] = {};
  std::memcpy(t, p, sizeof(float) * n);
  return load16(t);
}

// The first n floats at p (n <= 0: none) as a vector, zero beyond; nothing past p + n is read.
// AVX-512 (where dot_packed runs): a masked load. The zeroed copies by memcpy it replaced,
// with the accumulators spilled around each call, were most of a 1x1 s2 C=6 weight pass
// with rows of 14 pixels (4 of them through the copies).
inline v16 load16_prefix(const float* p, int64_t n) {
  n = std::min<int64_t>(std::max<int64_t>(n, 0), 16);
#if defined(__AVX512F__)
  return (v16)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
#else
  alignas(64) float t[16] = {};
  std::memcpy(t, p, sizeof(float) * n);
  return load16(t);
#endif
}

// The first n (1..16) lanes of v to p; nothing past p + n is written. AVX-512: one masked
// store. The copy of n floats it replaced went through the stack (the vector stored, then
// moved in 16- and 8-byte pieces): a fifth of map_pixels<6> in a 1x1 s2 C=6 forward (perf,
// N=256 28x28 on the Zen 4).
inline void store16_prefix(float* p, v16 v, int n) {
  if (n == 16) return std::memcpy(p, &v, sizeof v), void();
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
#else
  std::memcpy(p, &v, sizeof(float) * std::min(n, 16));
#endif
}

// Pixels p (oc floats each from dy) whose 16-float load dy + p*oc .. +16 ends by `end`.
inline int64_t safe_pixels(const float* dy, int64_t oc, const float* end) {
  const int64_t room = end - dy - 16;
  return room < 0 ? 0 : room / oc + 1;
}

// Below this many floats moved a pass runs on the calling thread (~20 us at copy speed:
// waking the team costs more).
constexpr int64_t kParallelFloats = 1 << 16;
// Channels each side of the weight pass: 17..24 (both sides) only with 32 vector
// registers, where a pixel's dy is two passes of 16 lanes over IN <= 24 accumulators
// (dot_pixels). It took the 1x1 s1 C=24 weight passes from the GEMM (K = N = 24 and a
// reduction of N*H*W; 1 thread, ms GEMM/here, medians of 3 interleaved rounds on the loaded
// Zen 4: N=256 28x28 6.96/4.78, N=32 56x56 3.47/2.42, N=256 14x14 1.33-1.64/1.14-1.46,
// N=32 112x112 13.8/9.9).
constexpr int64_t kWeightsMax = kVectorRegisters >= 32 ? 24 : kNarrowPointwiseMax;
// Pixels per work item of a stride-1 map (a few tens of KB of x and y: stays in L1/L2).
constexpr int64_t kMapRun = 1024;

// Touches the cache lines of [p, p + floats) ahead of use. A strided conv reads every sh-th
// row of x: the hardware prefetchers, following one row, stop at each jump, so each row began
// with a run of misses (perf: a 1x1 s2 N=256 56x56 C=3 weight pass spent most of its time on
// the loads of x). Rows kAhead items on are touched as each item starts; 1 thread, ms with /
// without, medians on the loaded Zen 4: 1x1 s2 fwd N=256 28x28 C=16 0.41/0.55, N=256 56x56
// C=3 0.55/0.69, weight pass N=256 56x56 C=3 0.95/1.11 (issue 18 item 3, helper C).
// Short rows are left to the hardware: N=256 28x28 C=3 (84 floats a row) took 0.115 ->
// 0.140 ms with the prefetches. The weight pass's kernels touch row r + kAhead as each row
// r of a block starts (their pf argument).
constexpr int64_t kAhead = 2;  // rows ahead
// Whether the strided backward data writes a skipped pixel's zeros with the pixel before it
// (PixelMap::fill): only where a store can stop at any lane (AVX-512 masked stores).
#if defined(__AVX512F__)
constexpr bool kStridedFill = true;
#else
constexpr bool kStridedFill = false;
#endif
constexpr int64_t kPrefetchRow = 128;  // floats of an input row, at least
using planar_dot::prefetch_floats;

// The register map for in -> out channels at stride sw, or nullptr: the flat map for 3 -> 3
// and 6 -> 6 at stride 1 (AVX-512, narrow_pointwise_flat.h: 1.13-1.4x the planar map's speed,
// paired), else the planar one where compiled.
planar_dot::MapFn pick_register_map(int64_t in, int64_t out, int64_t sw) {
#if defined(__AVX512F__)
  if (in == 6 && out == 6 && sw == 1) return &flat_map::map<6, 6>;
  if (in == 3 && out == 3 && sw == 1) return &flat_map::map<3, 3>;
#endif
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

int pass_threads(const ConvGeometry& g) {
  return g.input_size() + g.output_size() < kParallelFloats ? 1 : std::max(1, get_num_threads());
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

// R pixels of a map: dst[r*dst_step + o] = bias[o] + sum_i src[r*src_step + i] * m.w[i][o],
// o < OUT, r < R. A pixel's OUT channels are NV vectors of 16 (two from 17 to 32 channels).
// With fewer than 8 accumulators the input channels alternate between S sets, so that the
// FMA latency is covered (a lone last pixel of 32 channels was a chain of 32 dependent FMAs:
// the 2-pixel tails of 14-pixel rows made a 1x1 stride-2 C=32 map slower than the GEMM).
template <int OUT, int R>
inline void map_group(const float* src, int64_t src_step, float* dst, int64_t dst_step,
                      const PixelMap& m, const v16* bias) {
  constexpr int NV = (OUT + 15) / 16;
  constexpr int S = R * NV >= 8 ? 1 : R * NV >= 4 ? 2 : 4;
  const int64_t in = m.in;
  v16 a[S][R][NV];
#pragma GCC unroll 16
  for (int k = 0; k < S; ++k)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) a[k][r][v] = k == 0 ? bias[v] : v16{};
  auto step = [&](v16(&acc)[R][NV], int64_t i) {
    v16 wi[NV];
    for (int v = 0; v < NV; ++v) wi[v] = load16(m.w[i] + 16 * v);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const v16 x = splat16(src[r * src_step + i]);
      for (int v = 0; v < NV; ++v) acc[r][v] += x * wi[v];
    }
  };
  int64_t i = 0;
  for (; i + S <= in; i += S)
#pragma GCC unroll 4
    for (int k = 0; k < S; ++k) step(a[k], i + k);
  for (; i < in; ++i) step(a[0], i);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    for (int k = 1; k < S; ++k)
      for (int v = 0; v < NV; ++v) a[0][r][v] += a[k][r][v];
    if (NV == 1 && m.fill > OUT) {
      constexpr i32x16 keep = lanes_below16(OUT, std::make_index_sequence<16>());
      store16_prefix(dst + r * dst_step, (v16)((i32x16)a[0][r][0] & keep), m.fill);
      continue;
    }
    for (int v = 0; v < NV; ++v) store16_prefix(dst + r * dst_step + 16 * v, a[0][r][v], std::min(16, OUT - 16 * v));
  }
}

// dst[p*dst_step + o] = bias[o] + sum_i src[p*src_step + i] * m.w[i][o], o < OUT, p < count:
// groups of 4 pixels, then one group of the 1..3 left.
template <int OUT>
void map_pixels(const float* src, int64_t src_step, float* dst, int64_t dst_step, int64_t count,
                const PixelMap& m) {
  constexpr int NV = (OUT + 15) / 16;
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
  v16 bias[NV];
  for (int v = 0; v < NV; ++v) bias[v] = load16(m.bias + 16 * v);
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

MapFn pick_map(int64_t out) {
  static constexpr auto table = map_table(std::make_index_sequence<kNarrowMapMax>());
  return table[out - 1];
}

// acc[i][o] += sum over rows r < rows and pixels p < count of x[r*xs + p*x_step + i] *
// dy[r*ds + p*oc + o], o < lanes (<= 16; the lanes beyond are don't-care: a pixel's channels
// 16..23 are the pass over dy + 16 with lanes = oc - 16). IN accumulator vectors per set; with few
// input channels the pixels alternate between sets so that consecutive FMAs into one
// accumulator do not wait on each other. Rows inside: output rows of 4..14 pixels (1x1 s2,
// C = 16) paid a call and a flush each.
template <int IN>
void dot_pixels(const float* x, int64_t x_step, int64_t xs, const float* dy, int64_t ds,
                int64_t oc, int64_t lanes, int64_t rows, int64_t count, const float* dy_end,
                int64_t pf, v16* acc) {
  constexpr int kSets = IN >= 8 ? 1 : IN >= 4 ? 2 : 4;
  if (IN == 1 && oc == 1 && x_step == 1 && rows == 1) {  // unit-stride streams: over pixels
    // four sums: one waited on its FMA latency every 16 pixels
    v16 s[4] = {};
    int64_t p = 0;
    for (; p + 64 <= count; p += 64)
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) s[k] += load16(x + p + 16 * k) * load16(dy + p + 16 * k);
    for (; p + 16 <= count; p += 16) s[0] += load16(x + p) * load16(dy + p);
    s[0] += s[1] + s[2] + s[3];
    float total = 0.f;
    for (int l = 0; l < 16; ++l) total += s[0][l];
    for (; p < count; ++p) total += x[p] * dy[p];
    acc[0][0] += total;
    return;
  }
  v16 a[kSets][IN];
  for (int k = 0; k < kSets; ++k)
    for (int i = 0; i < IN; ++i) a[k][i] = v16{};
  for (int64_t r = 0; r < rows; ++r, x += xs, dy += ds) {
    if (pf) prefetch_floats(x + kAhead * xs, pf);
    // The main loop loads 16 lanes of dy unchecked; the pixels whose load would pass dy_end
    // go through load_channels after it (with its branch in the loop, GCC stored all IN
    // accumulators to the stack at every pixel: the C=16 weight pass ran at half speed).
    const int64_t safe = std::min(count, safe_pixels(dy, oc, dy_end));
    int64_t p = 0;
    for (; p + kSets <= safe; p += kSets) {
#pragma GCC unroll 4
      for (int k = 0; k < kSets; ++k) {
        const v16 dv = load16(dy + (p + k) * oc);
        const float* xs_ = x + (p + k) * x_step;
#pragma GCC unroll 16
        for (int i = 0; i < IN; ++i) a[k][i] += splat16(xs_[i]) * dv;
      }
    }
    for (; p < count; ++p) {
      const v16 dv = load_channels(dy + p * oc, lanes, dy_end);
      const float* xs_ = x + p * x_step;
      for (int i = 0; i < IN; ++i) a[0][i] += splat16(xs_[i]) * dv;
    }
  }
  for (int i = 0; i < IN; ++i) {
    v16 s = a[0][i];
    for (int k = 1; k < kSets; ++k) s += a[k][i];
    acc[i] += s;
  }
}

using DotFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, int64_t,
                       int64_t, int64_t, const float*, int64_t, v16*);

// The weight pass with 4..8 channels each side (IN == OC, AVX-512): P = 16 / OC pixels a
// vector. One load of dy gives pixels p..p+P-1 in lanes [k*OC, (k+1)*OC); for each input
// channel i one two-source permute of x's floats puts x[p + k][i] in the same lanes, and one
// FMA per channel adds all P pixels' products: IN permutes and IN FMAs per P pixels, where the
// vector per pixel (dot_pixels) issued IN broadcasts and IN FMAs per pixel with OC of 16 lanes
// used (C=6: 2 pixels, 12 lanes). A row's last pixels (and rows whose loads would pass the
// end of x or dy) go through a zeroed copy of their floats: lanes past them are 0 * 0.
template <int C, int SW>
struct Packed {
  static constexpr int P = 16 / C;
  static constexpr int XF = (P - 1) * SW * C + C;  // x floats a group spans (<= 32)
  template <size_t... L>
  static constexpr i32x16 index(int i, std::index_sequence<L...>) {
    return i32x16{((int)L / C < P ? ((int)L / C) * SW * C + i : 0)...};
  }
};

template <int C, int SW>
void dot_packed(const float* x, int64_t xs, const float* dy, int64_t ds, int64_t rows,
                int64_t count, const float* x_end, const float* dy_end, int64_t pf, v16* acc) {
  using K = Packed<C, SW>;
  constexpr int P = K::P;
  i32x16 idx[C];
#pragma GCC unroll 8
  for (int i = 0; i < C; ++i) idx[i] = K::index(i, std::make_index_sequence<16>());
  v16 a[2][C] = {};
  auto products = [&](v16 dv, v16 xa, v16 xb, v16(&acc2)[C]) {
#pragma GCC unroll 8
    for (int i = 0; i < C; ++i) acc2[i] += __builtin_shuffle(xa, xb, idx[i]) * dv;
  };
  auto group = [&](const float* xg, const float* dg, v16(&acc2)[C]) {
    const v16 xa = load16(xg);
    products(load16(dg), xa, K::XF > 16 ? load16(xg + 16) : xa, acc2);
  };
  for (int64_t r = 0; r < rows; ++r, x += xs, dy += ds) {
    if (pf) prefetch_floats(x + kAhead * xs, pf);
    // groups whose loads (32 or 16 floats of x, 16 of dy) stay inside the tensors, and x's
    // inside the row's floats (past them, at stride 2, an input row the conv skips: a line
    // of it per row made N=256 56x56 C=6 2.31 -> 2.55 ms, DRAM-bound)
    const int64_t xload = K::XF > 16 ? 32 : 16;
    const int64_t xroom = std::min(x_end - x, (count - 1) * SW * C + C) - xload;
    const int64_t droom = (dy_end - dy) - 16;
    int64_t whole = count / P * P;
    if (xroom < 0 || droom < 0) whole = 0;
    else whole = std::min({whole, (xroom / (SW * C) + 1) / P * P, (droom / C + 1) / P * P});
    int64_t p = 0;
    for (; p + 2 * P <= whole; p += 2 * P) {
      group(x + p * SW * C, dy + p * C, a[0]);
      group(x + (p + P) * SW * C, dy + (p + P) * C, a[1]);
    }
    for (; p < count; p += P) {  // at most a group of whole ones, then copies
      if (p + P <= whole) {
        group(x + p * SW * C, dy + p * C, a[0]);
        continue;
      }
      const int64_t n = std::min<int64_t>(P, count - p), xn = (n - 1) * SW * C + C;
      products(load16_prefix(dy + p * C, n * C), load16_prefix(x + p * SW * C, xn),
               load16_prefix(x + p * SW * C + 16, xn - 16), a[0]);
    }
  }
  for (int i = 0; i < C; ++i) {
    const v16 s = a[0][i] + a[1][i];
    for (int k = 0; k < P; ++k)
      for (int o = 0; o < C; ++o) acc[i][o] += s[k * C + o];
  }
}

using PackedFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t,
                          const float*, const float*, int64_t, v16*);

// The packed kernel for in -> oc channels at stride sw, or nullptr (then the planar registers
// or dot_pixels). Only with 32 vector registers (C index vectors + 2C accumulators). C = 4
// too, ahead of the planar registers (4 pixels a vector, all 16 lanes): 1 thread, ms planar/
// packed, medians of 5 interleaved rounds on Zen 4 (load ~1): s1 N=256 28x28 0.220/0.138, N=32
// 56x56 0.108/0.069, N=32 112x112 0.441/0.282; s2 N=256 56x56 0.551/0.338, N=32 112x112
// 0.230/0.139, N=256 28x28 0.210/0.212. Not C = 2, 3: planar as fast or faster (C=3 s1 N=256
// 28x28 0.180/0.186, N=32 112x112 0.351/0.410; C=2 0.094/0.092).
PackedFn pick_packed(int64_t in, int64_t oc, int64_t sw) {
  if (kVectorRegisters < 32 || in != oc || in < 4 || in > 8 || sw < 1 || sw > 2) return nullptr;
  static constexpr PackedFn t[2][5] = {
      {&dot_packed<4, 1>, &dot_packed<5, 1>, &dot_packed<6, 1>, &dot_packed<7, 1>, &dot_packed<8, 1>},
      {&dot_packed<4, 2>, &dot_packed<5, 2>, &dot_packed<6, 2>, &dot_packed<7, 2>, &dot_packed<8, 2>}};
  return t[sw - 1][in - 4];
}


template <size_t... I>
constexpr std::array<DotFn, sizeof...(I)> dot_table(std::index_sequence<I...>) {
  return {&dot_pixels<int(I) + 1>...};
}

DotFn pick_dot(int64_t in) {
  static constexpr auto table = dot_table(std::make_index_sequence<kWeightsMax>());
  return table[in - 1];
}

// sum[o] += the sum of dy[f] over f < n with f % oc == o (dy: whole pixels of oc channels,
// one contiguous run): K = oc / gcd(16, oc) vectors of 16 floats repeat the channel pattern.
// It replaced a 16-lane load per pixel, which took as long as the products (perf, 1x1 C=3
// N=256 28x28 weight pass on Zen 4).
template <int K>
void channel_sums(const float* dy, int64_t n, int64_t oc, float* sum) {
  v16 a[K] = {};
  int64_t f = 0;
  for (; f + 16 * K <= n; f += 16 * K)
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) a[k] += load16(dy + f + 16 * k);
  float s[kWeightsMax] = {};
  // (16k + l) % oc stepped, not divided: 48 divisions a call at oc = 3 or 6 were most of the
  // weight pass's own time outside its kernels (perf, 1x1 s1 N=256 28x28 C=3, Zen 4).
  int64_t lane_channel = 0;
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < 16; ++l) {
      s[lane_channel] += a[k][l];
      if (++lane_channel == oc) lane_channel = 0;
    }
  for (; f < n; ++f) s[f % oc] += dy[f];  // f starts at a multiple of 16K, so of oc
  for (int64_t o = 0; o < oc; ++o) sum[o] += s[o];
}

void channel_sums_any(const float* dy, int64_t n, int64_t oc, float* sum) {
  switch (oc / std::gcd<int64_t>(16, oc)) {
    case 1: return channel_sums<1>(dy, n, oc, sum);
    case 3: return channel_sums<3>(dy, n, oc, sum);
    case 5: return channel_sums<5>(dy, n, oc, sum);
    case 7: return channel_sums<7>(dy, n, oc, sum);
    case 9: return channel_sums<9>(dy, n, oc, sum);
    case 11: return channel_sums<11>(dy, n, oc, sum);
    case 13: return channel_sums<13>(dy, n, oc, sum);
    case 15: return channel_sums<15>(dy, n, oc, sum);
    case 17: return channel_sums<17>(dy, n, oc, sum);
    case 19: return channel_sums<19>(dy, n, oc, sum);
    case 21: return channel_sums<21>(dy, n, oc, sum);
    default: return channel_sums<23>(dy, n, oc, sum);  // oc / gcd(16, oc) is odd, <= 23
  }
}

}  // namespace

bool narrow_pointwise_shape(const ConvGeometry& g, ConvPass pass) {
  const Window2d& v = g.win;
  int64_t max = pass == ConvPass::BackwardWeights ? kNarrowPointwiseMax : kNarrowMapMax;
  // 17..24 channels in the weight pass: both sides (no other pair measured); strided, with
  // output rows of 14 pixels or more. At stride 2 the rows, each run twice, first lost to the
  // GEMM or tied (ms GEMM/here, loaded Zen 4: C=24 N=256 7x7 0.151/0.207, 14x14 0.484/0.498,
  // 28x28 3.72/3.81, N=32 112x112 6.38/5.69); since the weight pass's blocks of rows (one
  // call per ~512 pixels) the rows of 14 and more win (2026-12-07, helper Y, 1 thread, ms
  // GEMM/here, medians of 3 paired rounds: N=256 28x28 2.90/2.12, N=32 56x56 0.85/0.61, N=32
  // 28x28 0.186/0.160, N=256 56x56 11.0/9.0), rows of 4 still lose (N=256 7x7 0.135/0.177).
  if (pass == ConvPass::BackwardWeights && g.c > max && g.oc > max &&
      ((v.sh == 1 && v.sw == 1) || g.ow >= 14))
    max = kWeightsMax;
  // A strided forward map reads x one pixel at a time: at 32 channels it first lost to the
  // GEMM on the Zen 5 (1 thread, ms map/GEMM, 1x1 s2 N=256 28x28 2.02/1.83, N=32 112x112
  // 4.67/3.44). On the Zen 4 the GEMM (tap_forward's shallow products) is the slower one at
  // 32: ms GEMM/map, medians of 5 paired rounds (2026-12-07, helper Y): N=256 28x28
  // 3.45/2.69, N=32 56x56 1.05/0.72, N=32 112x112 6.55/4.54, N=256 56x56 12.9/10.5, N=256
  // 7x7 0.151/0.093, 14x14 0.59/0.33; so the map takes every strided forward up to 32 there.
  // Below AVX-512 (a pixel's 32 channels in 4 or 8 registers; not measured) it stays at 24.
  if (pass == ConvPass::Forward && (v.sh > 1 || v.sw > 1) && kVectorRegisters < 32) max = 24;
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
  const MapFn map = pick_map(g.oc);
  const int64_t sh = g.win.sh, sw = g.win.sw;
  // 1..4 channels each side at stride 1 or 2: whole registers of pixels on planar registers
  // (narrow_pointwise_planar.h), the rest pixel by pixel.
  const planar_dot::MapFn planar = pick_register_map(g.c, g.oc, sw);
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
      for (int64_t r = 0; r < rows; ++r) {
        if (!planar && pf) prefetch_floats(src + (r + kAhead) * xs, pf);  // a later row's input
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
  const MapFn map = pick_map(g.c);
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
        if (!pairs) {
          if (!fill && (sw != 1 || g.ow != g.w)) std::memset(dxrow, 0, sizeof(float) * row);
          map(dyimg + oy * g.ow * g.oc, g.oc, dxrow, sw * g.c, g.ow, m);
        }
        ++oy;
      }
    }
  });
}

void narrow_pointwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                       float* dw, float* db) {
  const int threads = pass_threads(g);
  constexpr int64_t kRow = 32, kPart = kWeightsMax * kRow + kRow;  // dw rows, then db
  std::vector<double> parts((size_t)(threads * kPart), 0.0);
  const DotFn dot = pick_dot(g.c);
  const int64_t sh = g.win.sh, sw = g.win.sw, in_row = g.w * g.c;
  // 1..4 channels each side at stride 1 or 2: registers of pixels on planar registers
  // (narrow_pointwise_planar.h), the rest pixel by pixel.
  const planar_dot::DotFn planar = planar_dot::pick(g.c, g.oc, sw);
  const PackedFn packed = pick_packed(g.c, g.oc, sw);  // 5..8 channels: P pixels a vector
  // Strided: x's row kAhead rows on is touched as each row starts (see kAhead). 1 thread, ms
  // with/without, 4 interleaved rounds on the loaded Zen 4 (before: the row-per-item pass):
  // 1x1 s2 N=256 56x56 C=6 0.82-1.13/1.20-1.85 (before 1.10-1.55), N=256 112x112 C=3
  // 3.50-3.79/3.72-4.41 (3.64-4.34), N=256 28x28 C=16 0.33-0.36/0.35-0.58 (0.58-0.62).
  const int64_t pf = sh > 1 && in_row >= kPrefetchRow ? in_row : 0;
  // Work items: at stride 1 x and dy are each one pixel stream, so items are runs of kStreamRun
  // pixels (rows of 7..28 pixels paid a call and a flush per row: N=256 28x28 C=3 took 0.63
  // ms where a copy of its bytes takes ~0.16); strided, blocks of about kRun pixels of whole
  // output rows of one image (x's rows then are sh rows apart). Prefetching all of the next
  // block's rows at each block's start instead of a row at a time was no faster, often slower
  // (1 thread, ms with/without, 3 interleaved rounds on the loaded Zen 4: 1x1 s2 N=256 56x56
  // C=3 0.42-0.55/0.32-0.47, N=32 112x112 C=6 0.30-0.32/0.22-0.26).
  constexpr int64_t kRun = 512;
  // Stride 1: items of kStreamRun pixels (a call, a lane sum and the bias sums each; flushed
  // at kFlush). 1 thread, ms 512/2048, paired rounds on the loaded Zen 4 (medians noisy, the
  // minima lower in every case): C=3 N=256 28x28 0.146/0.130 (min 0.145/0.129), N=32 112x112
  // 0.304/0.268, C=6 N=256 28x28 0.370/0.316, C=1 N=256 56x56 0.151/0.139, C=16 N=256 28x28
  // 1.40/1.26; N=32 56x56 C=3 0.078/0.082 (min 0.077/0.070).
  constexpr int64_t kStreamRun = 2048;
  const bool stream = sh == 1 && sw == 1;
  const int64_t pixels = g.n * g.oh * g.ow;
  const int64_t block_rows =
      stream ? 1 : std::max<int64_t>(1, std::min(g.oh, kRun / std::max<int64_t>(g.ow, 1)));
  const int64_t blocks = (g.oh + block_rows - 1) / block_rows;
  const int64_t items = stream ? (pixels + kStreamRun - 1) / kStreamRun : g.n * blocks;
  const float* x_end = x + g.input_size();
  const float* dy_end = dy + g.output_size();
  // Item l: rows of `count` pixels from x0 (rows xs apart) and dy0 (ds apart).
  auto item = [&](int64_t l, const float*& x0, const float*& dy0, int64_t& rows, int64_t& count) {
    if (stream) {
      rows = 1, count = std::min(kStreamRun, pixels - l * kStreamRun);
      x0 = x + l * kStreamRun * g.c, dy0 = dy + l * kStreamRun * g.oc;
    } else {
      const int64_t n = l / blocks, oy0 = (l % blocks) * block_rows;
      rows = std::min(block_rows, g.oh - oy0), count = g.ow;
      x0 = x + (n * g.h + oy0 * sh) * in_row, dy0 = dy + (n * g.oh + oy0) * g.ow * g.oc;
    }
  };
  const int64_t xs = sh * in_row, ds = g.ow * g.oc;
  parallel_region(threads, [&] {
    note_team();
    double* part = parts.data() + omp_get_thread_num() * kPart;
    // Sums in float of the items since the last flush into the double partials (once at
    // least kFlush pixels are in: per item, blocks of 16..28 pixels paid a flush of up to 600
    // doubles each, 1x1 s2 7x7; and per 512-pixel run, the flush and the zeroing were a sixth
    // of a 1x1 s1 C=3 pass, perf): dw rows of output channels 0..15, of 16..23, db.
    constexpr int64_t kFlush = 4 * kRun;
    v16 acc[kWeightsMax], hi[kWeightsMax];
    float dbs[kRow];
    int64_t pending = 0;
    auto clear = [&] {
      for (int64_t ci = 0; ci < g.c; ++ci) acc[ci] = hi[ci] = v16{};
      for (int64_t co = 0; co < g.oc; ++co) dbs[co] = 0.f;
      pending = 0;
    };
    auto flush = [&] {
      const int64_t lo = std::min<int64_t>(g.oc, 16);
      for (int64_t ci = 0; ci < g.c; ++ci) {
        double* row = part + ci * kRow;
        for (int64_t co = 0; co < lo; ++co) row[co] += acc[ci][co];
        for (int64_t co = 16; co < g.oc; ++co) row[co] += hi[ci][co - 16];
      }
      for (int64_t co = 0; co < g.oc; ++co) part[kWeightsMax * kRow + co] += dbs[co];
      clear();
    };
    clear();
#pragma omp for schedule(static)
    for (int64_t l = 0; l < items; ++l) {
      const float *x0, *dy0;
      int64_t rows, count;
      item(l, x0, dy0, rows, count);
      int64_t r = 0;
      if (planar && !packed) {  // packed, where compiled, is ahead of planar (C = 4)
        // Rows whose every register, the masked tail's included, reads inside x and dy
        // (all but at most the tensor's last rows); the others by whole registers only.
        const int64_t tail0 = count / planar_dot::L * planar_dot::L;
        auto reads_inside = [&](int64_t row) {
          return x0 + row * xs + (tail0 + planar_dot::L) * sw * g.c <= x_end &&
                 dy0 + row * ds + (tail0 + planar_dot::L) * g.oc <= dy_end;
        };
        int64_t ok = rows;
        while (ok > 0 && !reads_inside(ok - 1)) --ok;
        if (ok > 0) planar(x0, xs, dy0, ds, ok, count, true, pf, kAhead, acc);
        for (r = ok; r < rows; ++r) {
          const float *xr = x0 + r * xs, *dr = dy0 + r * ds;
          // at stride 2 a whole register reads 2L pixels of x: inside the row only
          const int64_t whole = sw == 1 ? count : std::min(count, g.w / 2);
          const int64_t done = planar(xr, 0, dr, 0, 1, whole, false, 0, 0, acc);
          dot(xr + done * sw * g.c, sw * g.c, 0, dr + done * g.oc, 0, g.oc, g.oc, 1, count - done,
              dy_end, 0, acc);
        }
      } else if (packed) {
        packed(x0, xs, dy0, ds, rows, count, x_end, dy_end, pf, acc);
      } else {
        dot(x0, sw * g.c, xs, dy0, ds, g.oc, std::min<int64_t>(g.oc, 16), rows, count, dy_end, pf,
            acc);
        if (g.oc > 16)
          dot(x0, sw * g.c, xs, dy0 + 16, ds, g.oc, g.oc - 16, rows, count, dy_end, 0, hi);
      }
      if (db) channel_sums_any(dy0, rows * count * g.oc, g.oc, dbs);
      pending += rows * count;
      if (pending >= kFlush) flush();
    }
    flush();
  });
  for (int64_t ci = 0; ci < g.c; ++ci)
    for (int64_t co = 0; co < g.oc; ++co) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += parts[t * kPart + ci * kRow + co];
      dw[ci * g.oc + co] = (float)s;
    }
  if (db)
    for (int64_t co = 0; co < g.oc; ++co) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += parts[t * kPart + kWeightsMax * kRow + co];
      db[co] = (float)s;
    }
}

}  // namespace fastconv::cpu::detail
