// Helpers and constants shared by narrow_pointwise.cpp (the maps) and narrow_pointwise_weights.cpp
// (the weight pass): the 16-lane pixel vector, its loads and stores, the work-item sizes and the
// prefetch distance (their measurements are in the comments below and in narrow_pointwise.cpp's
// head comment). Internal to those two files (an unnamed namespace: each keeps its own copy).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common/geometry.h"
#include "cpu/narrow_pointwise.h"
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

// P = 16 / C pixels of C channels (C = 4..8) in one vector, lanes [k*C, (k+1)*C) pixel k:
// index(i) gathers channel i of those P pixels (pixels SW apart in x, XF floats from the first
// pixel's) into the lanes of their outputs, by a two-source permute of x's floats (lanes past
// P*C: float 0, don't-care). The packed weight pass (dot_packed) and the packed strided forward
// map (narrow_pointwise.cpp map_packed).
template <int C, int SW>
struct Packed {
  static constexpr int P = 16 / C;
  static constexpr int XF = (P - 1) * SW * C + C;  // x floats a group spans (<= 32)
  template <size_t... L>
  static constexpr i32x16 index(int i, std::index_sequence<L...>) {
    return i32x16{((int)L / C < P ? ((int)L / C) * SW * C + i : 0)...};
  }
};

// Pixels p (oc floats each from dy) whose 16-float load dy + p*oc .. +16 ends by `end`.
inline int64_t safe_pixels(const float* dy, int64_t oc, const float* end) {
  const int64_t room = end - dy - 16;
  return room < 0 ? 0 : room / oc + 1;
}

// Below this many floats moved a pass runs on the calling thread (~20 us at copy speed:
// waking the team costs more).
constexpr int64_t kParallelFloats = 1 << 16;
// Channels each side of the weight pass: 17..32 (both sides) only with 32 vector
// registers (dot_wide, narrow_pointwise_weights.cpp). At 17..24 as two passes of dot_pixels
// (16 lanes each) it took the 1x1 s1 C=24 weight passes from the GEMM (K = N = 24 and a
// reduction of N*H*W; 1 thread, ms GEMM/here, medians of 3 interleaved rounds on the loaded
// Zen 4: N=256 28x28 6.96/4.78, N=32 56x56 3.47/2.42, N=256 14x14 1.33-1.64/1.14-1.46,
// N=32 112x112 13.8/9.9); dot_wide (stop 34) again 1.8x at N=256 14x14 and N=32 56x56, and
// took 25..32 from the GEMM (benchmarks/RESULTS.md).
constexpr int64_t kWeightsMax = kVectorRegisters >= 32 ? 32 : kNarrowPointwiseMax;
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

// The lines of a later input row that its `count` pixels (`pixel` floats each, `step` apart)
// read: at a stride with pixels of 16 floats or more only those lines (a 24-channel pixel pair
// spans 3 lines of which the conv reads 2; at 16 channels every other line), else the whole
// row (`row_floats`). 1 thread, ms whole row / pixels' lines, 5 alternating rounds in one
// build on the loaded Zen 4 (stop 34), 1x1 s2 forward: N=256 28x28 C=24 1.31/0.83 (again
// 1.43/1.17, 2.10/1.83), C=32 2.14/1.43 (2.58/1.49), N=32 112x112 C=24 3.63/3.29, N=256 56x56
// C=16 4.05/3.77. The weight pass's kernels measured even with it: they keep whole rows.
inline void prefetch_row(const float* row, int64_t row_floats, int64_t step, int64_t count,
                         int64_t pixel) {
  if (step <= pixel || pixel < 16) return prefetch_floats(row, row_floats);
  for (int64_t q = 0; q < count; ++q) {
    __builtin_prefetch(row + q * step);
    __builtin_prefetch(row + q * step + pixel - 1);
  }
}

// Reads one float of each 64-byte line of [p, p + floats) and discards it. A strided map
// that reads x a pixel at a time (map_pixels at stride 2, 16..32 channels) walks a row's lines
// at the pace of its FMAs and skips every other row; past the cache the stream prefetcher
// lost its track at each jumped row (at 16 channels with x 64-byte aligned, every other line
// of a row: slower than reading all of them). These demand loads of the whole row just before
// it is mapped fetch its lines together (see narrow_pointwise_forward's kTouchBytes).
// Volatile reads without a use: each a load into a dead register, no chain between them.
inline void touch_lines(const float* p, int64_t floats) {
  for (int64_t i = 0; i < floats; i += 16) (void)*(volatile const float*)(p + i);
}

inline int pass_threads(const ConvGeometry& g) {
  return g.input_size() + g.output_size() < kParallelFloats ? 1 : std::max(1, get_num_threads());
}

}  // namespace

}  // namespace fastconv::cpu::detail
