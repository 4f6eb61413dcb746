// Direct convolution for few channels (groups == 1, Cin <= 8, Cout <= 64 forward and <= 32
// backward, not 1x1; the rule and its basis are at direct_eligible below), NHWC activations,
// HWIO weights. Unpadded 1x1 convs with few channels each side (narrow_pointwise.h) are
// eligible too and go on to narrow_pointwise.cpp (per-pixel maps, no packing).
//
// Why: im2col + sgemm turns LeNet's conv1 (28x28x1 -> 6, 5x5) into GEMMs with N = Cout = 6
// and K = 25, where OpenBLAS reaches ~5-10 GFLOP/s. Here the vector runs along the output
// row instead (16 output columns per 512-bit register, whatever the channel counts), with
// one accumulator per output channel held in registers across all KH*KW*Cin taps.
//
// Layout trick shared by the three passes: the input rows a block of output rows needs are
// first repacked ("pack_row") into planar, zero-padded rows split into stride phases: padded
// column px goes to phase px % sw at index px / sw. Output column ox with tap kx then reads
// phase (kx*dw) % sw at index ox + (kx*dw)/sw, so 16 consecutive output columns are 16
// consecutive floats for every stride and dilation, and padding needs no branch (vertical
// padding is packed as zero rows). Each tap becomes one offset into the packed block.
//
//   forward          y[oy, ox0..+16, co]  = b[co] + sum_taps packed_x[off + ox] * w[tap, co]
//   backward data    the same kernel on packed dy rows with transposed weights: dx column
//                    ix = j*sw + r (phase r) gathers the taps kx whose output column
//                    (r + pl - kx*dw)/sw + j is on the stride grid, rows likewise per
//                    (iy + pt) % sh; no zero-stuffing, no wasted multiply.
//   backward weights dw[tap, co] = sum over output pixels of packed_x[off + p] * dy[p, co]:
//                    register tiles of taps x Cout over one pixel stream per work item
//                    (StreamPack); per-thread lane partials, summed in double in thread
//                    order (deterministic for a fixed thread count). db in the same pass.
// When Cout is a multiple of 16, the forward (for rows of OW % 16 in 1..12) and the weight
// pass run vectorised over output channels instead (channel_block, channel_dot): every lane
// works on short rows (LeNet conv2: 10 columns), dy is read in place, y written straight to
// NHWC. The forward applies the activation to each work item's rows while in cache.
// NHWC <-> planar copies of 2..8 channels run a register of pixels at a time by permutes
// (pixel_transpose.h): packing, tap_block's write-back when a block holds all of Cout at
// stride 1, and the weight pass's dy stream. 3x3 s1, ms before/after, 1 thread, medians of 3
// interleaved rounds on Emerald Rapids: C=3 56x56 N=256 fwd 2.46/2.33, bwd-data 2.34/2.19,
// bwd-weights 2.97/2.39; C=6 28x28 N=256 1.73/1.34, 1.81/1.33, 2.12/2.21 (noise, 1.10 in a
// later round); C=8 28x28 N=256 2.64/2.14, 2.59/2.19, 4.11/3.69. Same-size 3x3 s1 C=1 convs
// go to few_channel_flat.cpp first (AVX-512), those with C = 2..8 in and out to
// few_channel_planes.cpp (AVX-512; its rule leaves the weight pass of C = 8 here).
//
// Measured on the shared 2-core EPYC Zen 5 (AVX-512), median ms of interleaved runs in one
// process (PYTHONPATH=. python benchmarks/bench_direct.py only=conv1,conv2,stem; gemm =
// this module with fastconv.set_conv_algorithm('im2col')):
//                                     threads  forward       backward data  backward weights
//                                              gemm  direct  gemm  direct   gemm  direct
//   LeNet conv1 256x28x28x1 -> 6 5x5 same  1   7.15  0.58    8.86  1.00     8.18  0.82
//                                          2   3.80  0.36    4.46  0.53     4.90  0.43
//   LeNet conv2 256x14x14x6 -> 16 valid    1   1.98  0.97    3.44  1.03     2.16  1.41
//                                          2   1.07  0.52    1.72  0.62     1.34  0.81
//   stem 8x224x224x3 -> 64 7x7 s2          1   22.1  12.2    29.2  25.4     24.2  20.7
// LeNet-5 b256 training step (benchmarks.models.fastconv_step): 1 thread 31.9 -> 14.3 ms,
// 2 threads 18.3 -> 9.5 ms. Two-thread timings on that machine swing with other jobs'
// preemption (4 ms ticks); these are from quiet windows, the stem's never was.
#include "cpu/direct_conv.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/conv_algorithm.h"
#include "cpu/few_channel_flat.h"
#include "cpu/few_channel_planes.h"
#include "cpu/few_channel_rows.h"
#include "cpu/few_channel_fwd8.h"
#include "cpu/few_channel_weights8.h"
#include "cpu/few_channel_s2w.h"
#include "cpu/few_channel_s2.h"
#include "cpu/few_channel_s2_patch.h"
#include "cpu/few_channel_s2_planes.h"
#include "cpu/few_channel_s2b.h"
#include "cpu/im2col.h"
#include "cpu/narrow_pointwise.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"
#include "cpu/stem_conv.h"
#include "cpu/team_buffers.h"
#include "cpu/winograd.h"
#include "kernels.h"

// GCC notes that vectors wider than a level's registers are passed differently across
// levels; moot for these file-local helpers.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail {

namespace {

// One vector = one register of the level (simd.h): 16 floats in a zmm at avx512, 8 in a ymm
// at avx2, 4 in an xmm at the baseline. Every register blocking below is sized from the
// level's register count, so each level's copy keeps its accumulators in registers (the
// blockings made for 32 zmm, split into ymm halves at avx2, spilled: LeNet conv2's forward
// 18x slower than at avx512, see benchmarks/RESULTS.md). The arithmetic per output is the
// same at every level; only how many outputs a call computes changes.
constexpr int kLanes = kRegLanes;
typedef f32xR vec;
// Accumulators a micro-kernel may hold: 24 of 32 zmm (room for the inputs), 12 of 16 ymm/xmm.
constexpr int kAccumulators = kVectorRegisters >= 32 ? 24 : 12;
// Whether `acc` accumulators plus `inputs` operand vectors and one broadcast fit the registers.
constexpr bool fits_registers(int acc, int inputs) {
  return acc <= kAccumulators && acc + inputs + 1 <= kVectorRegisters;
}

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof v); }
template <size_t... I>
inline vec splat_lanes(float s, std::index_sequence<I...>) {
  return vec{((void)I, s)...};
}
inline vec splat(float s) {  // one vbroadcastss (vec{} + s would cost an add: 0 + -0 is +0)
  return splat_lanes(s, std::make_index_sequence<kLanes>());
}

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }
inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Below this many multiply-adds a pass runs on the calling thread (the GEMM path's bound,
// threads.cpp: waking the team costs more than the work). 2^21, not 2^23: with 2^23 LeNet-5's
// 5x5 convs ran on one thread up to b128 and its training steps at 2 threads took 1.07-1.17x
// as long on a quiet Zen 3 VM (benchmarks/RESULTS.md, stop 39 lead: a worker kept busy by
// back-to-back regions wakes fast; one left asleep between one-thread regions does not).
constexpr int64_t kParallelWork = 1 << 21;
// Packed rows of one work item, in floats (64 KiB: stays in L2 next to the other buffers).
constexpr int64_t kPackFloats = 1 << 14;
// Taps held on the stack by direct_forward (16 bytes each): 7x7 x 5 channels, 5x5 x 8.
constexpr size_t kInlineTaps = 256;

int pass_threads(const ConvGeometry& g) {
  const int64_t work = g.n * g.oh * g.ow * g.oc * g.win.kh * g.win.kw * g.c;
  return work < kParallelWork ? 1 : std::max(1, get_num_threads());
}

// dst[ci*plane + k] = src[k*step + ci] for k < count, ci < c: `count` pixels `step` floats
// apart (step = stride * c) as c planar rows. C and P are compile-time (the channel count and
// the stride) for the common few-channel shapes so that the inner loop is straight copies;
// with a runtime c and the bounds tested per column, packing took 4x the FMA kernel's time
// in a 3x3 stride-2 C=3 forward (N=256 112x112, perf on Zen 5).
template <int C, int P>
void deinterleave(const float* src, int64_t count, float* dst, int64_t plane) {
  if (C == 1 && P == 1) return (void)std::memcpy(dst, src, sizeof(float) * count);
  int64_t k = 0;
  // Whole registers of pixels by permutes (pixel_transpose.h: the scalar loop was a third of
  // a 3x3 stride-1 C=3 forward), the rest one float at a time.
  if constexpr (P == 1 && C >= 2) {
    k = pixel_transpose::split_rows<C>(src, count, dst, plane);
    // the last register of pixels again, overlapping (the scalar tail was a sixth of the
    // packing in a 56x56 C=3 weight pass)
    if (k < count && count >= kLanes) {
      pixel_transpose::split_rows<C>(src + (count - kLanes) * C, kLanes, dst + count - kLanes, plane);
      k = count;
    }
  }
  for (; k < count; ++k)
#pragma GCC unroll 8
    for (int ci = 0; ci < C; ++ci) dst[ci * plane + k] = src[k * P * C + ci];
}

void deinterleave_any(const float* src, int64_t c, int64_t p, int64_t count, float* dst,
                      int64_t plane) {
  for (int64_t ci = 0; ci < c; ++ci) {
    float* d = dst + ci * plane;
    for (int64_t k = 0; k < count; ++k) d[k] = src[k * p * c + ci];
  }
}

using DeinterleaveFn = void (*)(const float*, int64_t, float*, int64_t);
// Channel counts with a compiled copy loop (the direct path takes Cin <= 8).
constexpr int kDeinterleaveMax = 8;

template <int P, size_t... I>
constexpr std::array<DeinterleaveFn, sizeof...(I)> deinterleave_table(std::index_sequence<I...>) {
  return {&deinterleave<int(I) + 1, P>...};
}

void deinterleave_pixels(const float* src, int64_t c, int64_t p, int64_t count, float* dst,
                         int64_t plane) {
  static constexpr auto t1 = deinterleave_table<1>(std::make_index_sequence<kDeinterleaveMax>());
  static constexpr auto t2 = deinterleave_table<2>(std::make_index_sequence<kDeinterleaveMax>());
  if (count <= 0) return;
  if (c <= kDeinterleaveMax && p <= 2) return (p == 1 ? t1 : t2)[c - 1](src, count, dst, plane);
  deinterleave_any(src, c, p, count, dst, plane);
}

// dst[(ph*c + ci)*plane + j] = src[(j*p + ph - shift)*c + ci] for the columns of src that
// land at j < len: one NHWC row of w pixels as c planar rows per stride phase p, shifted
// right by `shift` >= 0 (the left pad), written onto a zeroed destination. Phase by phase,
// so that no column costs an integer division (two per column made this loop 35% of a 3x3
// stride-2 C=1 forward, 18 ms for N=256 56x56 where 1 ms was due).
void pack_row_planes(const float* src, int64_t w, int64_t c, int64_t p, int64_t shift,
                     int64_t len, int64_t plane, float* dst) {
  if (p == 1)  // no phases: spares the divisions below (a tenth of a 14x14 C=1 forward)
    return deinterleave_pixels(src, c, 1, std::min(w, len - shift), dst + shift, plane);
  // Stride 2: column pairs (qs + 2k, qs + 2k + 1) land at index js + k of phases 0 and 1;
  // whole registers of pairs by permutes (few_channel_s2.h), the last register again,
  // overlapping, and the columns outside [js, js + done) one float at a time below.
  int64_t js = 0, done = 0;
  if (p == 2 && shift >= 0 && c <= 8) {
    const int64_t qs = shift & 1;
    js = (qs + shift) / 2;
    const int64_t pairs = std::min((w - qs) / 2, len - js);
    if (pairs >= stride2::L) {
      float* even = dst + js;
      float* odd = dst + c * plane + js;
      done = stride2::split_pairs_any(src + qs * c, c, pairs, even, odd, plane);
      if (done < pairs) {
        const int64_t back = pairs - stride2::L;
        stride2::split_pairs_any(src + (qs + 2 * back) * c, c, stride2::L, even + back, odd + back, plane);
        done = pairs;
      }
    } else {  // a row shorter than one register of pairs (AVX-512 only; 0 elsewhere)
      done = stride2::split_pairs_short_any(src + qs * c, c, pairs, dst + js, dst + c * plane + js, plane);
    }
  }
  // P compile-time 2 for stride 2: the runtime divisions by p (4 idiv a phase) were ~40% of
  // this function in a C=6 28x28 weight pass (perf).
  auto phases = [&](auto P) {
    for (int64_t ph = 0; ph < P; ++ph) {
      const int64_t q0 = ((ph - shift) % P + P) % P;  // first column landing in phase ph
      const int64_t j0 = (q0 + shift) / P;
      if (q0 >= w || j0 >= len) continue;
      const int64_t count = std::min((w - q0 + P - 1) / P, len - j0);
      float* d = dst + ph * c * plane + j0;
      if (done == 0) {
        deinterleave_pixels(src + q0 * c, c, P, count, d, plane);
        continue;
      }
      // [j0, js) before the permuted pairs, [js + done, j0 + count) after them.
      const int64_t before = std::min(count, js - j0), after0 = js + done - j0;
      if (before > 0) deinterleave_pixels(src + q0 * c, c, P, before, d, plane);
      if (after0 < count)
        deinterleave_pixels(src + (q0 + after0 * P) * c, c, P, count - after0, d + after0, plane);
    }
  };
  if (p == 2) return phases(std::integral_constant<int64_t, 2>{});
  phases(p);
}

// Rows of at least this many pixels have only their margins zeroed before packing; for
// shorter ones two memset calls per channel row cost more than one over the block (C=6 7x7
// N=256: weight pass 0.16 -> 0.24 ms, C=3 14x14 forward 0.165 -> 0.187 ms).
constexpr int64_t kMarginsOnly = 32;

// pack_row_planes into p*c rows of len floats, zeros everywhere else; src == nullptr packs
// a zero row (vertical padding).
void pack_row(const float* src, int64_t w, int64_t c, int64_t p, int64_t shift, int64_t len,
              float* dst) {
  if (src && p == 1 && shift >= 0 && shift <= len && w >= kMarginsOnly) {
    // Only the margins: the row itself is written next (a memset of every packed row was 5%
    // of a 56x56 C=3 forward).
    const int64_t count = std::min(w, len - shift);
    for (int64_t ci = 0; ci < c; ++ci) {
      std::memset(dst + ci * len, 0, sizeof(float) * shift);
      std::memset(dst + ci * len + shift + count, 0, sizeof(float) * (len - shift - count));
    }
    return pack_row_planes(src, w, c, 1, shift, len, len, dst);
  }
  std::memset(dst, 0, sizeof(float) * p * c * len);
  if (src) pack_row_planes(src, w, c, p, shift, len, len, dst);
}

// Keeps v in a register: an empty asm that claims to modify it, so GCC cannot fold its load
// into every FMA that uses it (vec is one register at every x86 level).
inline void pin(vec& v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// ---- the forward / backward-data micro-kernel ----

// One term of the reduction: an offset from the block's base, and the weight row of this
// tap (output channel c at w[c]).
struct Tap {
  int64_t off;
  const float* w;
};

// An NR x (NC*16) block of CB output channels: rows rstride apart in src, NC vectors of 16
// columns each; all accumulators in registers. For each pixel (r, j) of the block, r < rows
// and j < cols:
//   dst[r*dst_rstride + j*col_stride + c] =
//       bias[c0 + c] + sum_t src[taps[t].off + r*rstride + j] * taps[t].w[c0 + c]
// With fewer than 8 accumulators the taps are dealt round-robin to K independent sets
// (summed at the end), so that the FMA latency (4 cycles, 2 pipes) is covered. The block
// goes to NHWC through a small planar buffer; the transpose is unrolled over CB here (a
// runtime-cb loop outside was 40% of LeNet conv1's forward pass, and AVX-512 gathers were
// slower still).
template <int CB, int NR, int NC>
void tap_block(const float* src, int64_t rstride, const Tap* taps, int64_t ntaps, int64_t c0,
               const float* bias, float* dst, int64_t dst_rstride, int64_t col_stride,
               int64_t rows, int64_t cols) {
  constexpr int NV = NR * NC;
  constexpr int K = CB * NV >= 8 ? 1 : (8 + CB * NV - 1) / (CB * NV);
  vec acc[K][CB][NV];
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < CB; ++c)
      for (int v = 0; v < NV; ++v) acc[k][c][v] = vec{};
  auto step = [&](vec(&a)[CB][NV], const Tap& tap) {
    const float* s = src + tap.off;
    const float* w = tap.w + c0;
    vec xv[NV];
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < NC; ++v) xv[r * NC + v] = load(s + r * rstride + v * kLanes);
#pragma GCC unroll 16
    for (int c = 0; c < CB; ++c) {
      const vec wc = splat(w[c]);
      for (int v = 0; v < NV; ++v) a[c][v] += xv[v] * wc;
    }
  };
  int64_t t = 0;
  for (; t + K <= ntaps; t += K)
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) step(acc[k], taps[t + k]);
  for (; t < ntaps; ++t) step(acc[0], taps[t]);
  float out[CB][NV * kLanes];
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < NV; ++v) {
      vec sum = bias ? splat(bias[c0 + c]) : vec{};
      for (int k = 0; k < K; ++k) sum += acc[k][c][v];
      store(out[c] + v * kLanes, sum);
    }
  if constexpr (CB >= 2 && CB <= 8) {
    // Block's channels contiguous in NHWC (all of Cout, stride-1 columns): whole registers
    // of pixels through pixel_transpose::merge, then the remaining columns one by one (the
    // scalar write-back was as costly as the deinterleave in a C=3 forward).
    if (col_stride == CB) {
      for (int64_t r = 0; r < rows; ++r) {
        int64_t j = 0;
        for (; j + kLanes <= cols; j += kLanes) {
          vec pl[CB], px[CB];
#pragma GCC unroll 8
          for (int c = 0; c < CB; ++c) pl[c] = load(out[c] + r * NC * kLanes + j);
          pixel_transpose::merge<CB>(pl, px);
          float* d = dst + r * dst_rstride + j * CB;
#pragma GCC unroll 8
          for (int c = 0; c < CB; ++c) store(d + c * kLanes, px[c]);
        }
        for (; j < cols; ++j)
#pragma GCC unroll 8
          for (int c = 0; c < CB; ++c) dst[r * dst_rstride + j * CB + c] = out[c][r * NC * kLanes + j];
      }
      return;
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      float* d = dst + r * dst_rstride + j * col_stride;
      const int64_t jj = r * NC * kLanes + j;
#pragma GCC unroll 16
      for (int c = 0; c < CB; ++c) d[c] = out[c][jj];
    }
}

using TapBlockFn = void (*)(const float*, int64_t, const Tap*, int64_t, int64_t, const float*,
                           float*, int64_t, int64_t, int64_t, int64_t);
// Channels per register block (the kernel tables' size): CB*NR*NC accumulators plus the
// inputs fit the registers (BlockShape::max_channels).
constexpr int kMaxBlock = 12;

template <int NR, int NC, size_t... I>
constexpr std::array<TapBlockFn, sizeof...(I)> tap_block_table(std::index_sequence<I...>) {
  return {&tap_block<int(I) + 1, NR, NC>...};
}

// Block of output rows x columns a kernel call computes: nr rows (1, 2 or 4) of nc vectors.
// Two vectors per row when the row is wider than one; then as many rows (where their taps
// coincide) as bring CB*nr*nc to half the accumulator budget or more (at avx512 12 of at
// most 24; at avx2 and baseline 6 of 12, inputs included in the 16 registers): each weight
// broadcast then feeds nr*nc FMAs. Measured, 1 thread: LeNet conv2 forward (10 columns,
// CB 8) 1 row 1.29 ms, 2 rows 0.97 ms; its backward data (14 columns, CB 6) 1 row 1.90,
// 2 rows 1.28, 4 rows 1.41 (24 accumulators + 4 inputs spill); conv1's backward data (28
// columns, CB 1) 1 row 1.44, 4 rows 1.14.
struct BlockShape {
  int nr, nc;
  // Vectors per row for rows of `cols` columns, and the channels a block of them may hold.
  static int row_vectors(int64_t cols) { return cols > kLanes ? 2 : 1; }
  static int64_t max_channels(int64_t cols) {
    const int nv = row_vectors(cols);
    int64_t cb = kMaxBlock;
    while (cb > 1 && !fits_registers((int)cb * nv, nv)) --cb;
    return cb;
  }
  BlockShape(int64_t cb, int64_t cols, bool rows_ok) {
    nc = row_vectors(cols);
    nr = 1;
    if (rows_ok)
      while (nr < 4 && cb * nr * nc < kAccumulators / 2 &&
             fits_registers((int)cb * 2 * nr * nc, 2 * nr * nc))
        nr *= 2;
  }
  int64_t colw() const { return nc * kLanes; }
  TapBlockFn kernel(int64_t cb) const {
    static constexpr auto t11 = tap_block_table<1, 1>(std::make_index_sequence<kMaxBlock>());
    static constexpr auto t12 = tap_block_table<1, 2>(std::make_index_sequence<kMaxBlock>());
    static constexpr auto t21 = tap_block_table<2, 1>(std::make_index_sequence<kMaxBlock>());
    static constexpr auto t22 = tap_block_table<2, 2>(std::make_index_sequence<kMaxBlock>());
    static constexpr auto t41 = tap_block_table<4, 1>(std::make_index_sequence<kMaxBlock>());
    static constexpr auto t42 = tap_block_table<4, 2>(std::make_index_sequence<kMaxBlock>());
    const auto& t = nr == 1 ? (nc == 1 ? t11 : t12) : nr == 2 ? (nc == 1 ? t21 : t22)
                                                              : (nc == 1 ? t41 : t42);
    return t[cb - 1];
  }
};

// Channels [0, total) in equal blocks of cb <= max; the last block starts at total - cb and
// may overlap the previous one (those channels are computed twice and written the same).
struct ChannelBlocks {
  int64_t total, cb, count;
  ChannelBlocks(int64_t total_, int64_t max) : total(total_) {
    count = (total + max - 1) / max;
    cb = (total + count - 1) / count;
  }
  int64_t start(int64_t i) const { return std::min(i * cb, total - cb); }
};

// Work items: blocks of `rows` consecutive rows of one image (rows of y, or of dx).
struct RowTasks {
  int64_t rows_total, rows, per_image, count;
  RowTasks(int64_t n, int64_t rows_total_, int64_t rows_fit, int threads)
      : rows_total(rows_total_) {
    // At least ~4 items per thread when the batch alone does not provide them.
    const int64_t spread = std::max<int64_t>(1, n * rows_total / (4 * threads));
    rows = std::max<int64_t>(1, std::min({rows_fit, rows_total, spread}));
    per_image = (rows_total + rows - 1) / rows;
    count = n * per_image;
  }
  void get(int64_t i, int64_t& img, int64_t& r0, int64_t& r1) const {
    img = i / per_image;
    r0 = (i % per_image) * rows;
    r1 = std::min(rows_total, r0 + rows);
  }
};

// Input rows packed for the forward and weight passes (phase-split, see the top comment).
// `cols` = output columns computed per row (OW rounded up to whole vector blocks).
struct InputPack {
  int64_t len, row, span;
  InputPack(const ConvGeometry& g, int64_t cols) {
    len = cols + (g.win.kw - 1) * g.win.dw / g.win.sw;
    row = g.win.sw * g.c * len;
    span = (g.win.kh - 1) * g.win.dh + 1;
  }
  // Output rows whose packed input fits in `floats`.
  int64_t rows_fit(const ConvGeometry& g, int64_t floats) const {
    return std::max<int64_t>(1, (floats / row - span) / g.win.sh + 1);
  }
  // Input rows iy0 .. iy0 + rows - 1 of image n (zero rows outside [0, H)).
  void pack(const ConvGeometry& g, const float* x, int64_t n, int64_t iy0, int64_t rows,
            float* buf) const {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t iy = iy0 + r;
      const float* src = iy >= 0 && iy < g.h ? x + (n * g.h + iy) * g.w * g.c : nullptr;
      pack_row(src, g.w, g.c, g.win.sw, g.win.pl, len, buf + r * row);
    }
  }
  // Offset of tap (ky, kx, ci) from the packed row of an output row's first input row.
  int64_t tap_offset(const ConvGeometry& g, int64_t ky, int64_t kx, int64_t ci) const {
    const int64_t cx = kx * g.win.dw;
    return ky * g.win.dh * row + ((cx % g.win.sw) * g.c + ci) * len + cx / g.win.sw;
  }
  int64_t in_rows(const ConvGeometry& g, int64_t out_rows) const {
    return (out_rows - 1) * g.win.sh + span;
  }
};

// ---- the weight-gradient micro-kernel ----

// Taps per register tile for CB output channels: TT*CB accumulators (<= 27 zmm), plus the
// CB dy vectors and one x vector, all in the 32 registers up to CB = 6. (CB = 8, TT = 3 did
// not fit: the dy operands were re-read from memory for every tap, 27 loads per 24 FMAs.)
// TT = 9 where it fits: a 3x3 kernel has 9*Cin taps, so tiles of 9 have no idle slot (tiles
// of 8 computed 16 taps for a C=1 3x3's 9, and read each dy vector twice).
// With 16 registers (avx2, baseline): as many taps as leave room for the CB dy vectors and
// the x vector, at most 9, and at most 4 channels (TT = 2 for CB = 4).
constexpr int taps_per_tile(int cb) {
  if (kVectorRegisters >= 32) return cb >= 6 ? 4 : cb >= 4 ? 6 : 9;
  return std::max(1, std::min(9, (kVectorRegisters - 1 - cb) / cb));
}
constexpr int kMaxDwBlock = kVectorRegisters >= 32 ? 6 : 4;

// vout[t*vstride + c*16 ..] += per-lane sums over `lines` rows l and nvec vectors vi of
// columns of x[l*xstep + offs[t] + vi*16 ..] * d[(l*nvec + vi)*dvec + c*16 ..], for the
// first `real` taps of the tile (the others repeat a tap to fill it). The CB dy vectors of
// one (l, vi) are adjacent, so one pointer reaches them all (with dy planar per channel,
// 8 pointers plus 3 tap pointers did not fit the registers: LeNet conv2 ran at 55 GFLOP/s).
// The lanes are summed once at the end of the pass, not per call: with LeNet's 10x10 conv2
// a call is only 10 vectors per tap.
// pf (or null): the next work item's rows, prefetched a step per vector of pixels.
struct NextItem {
  stride2::LinePrefetch<> x, dy;
  void step() { x.step(), dy.step(); }
};

template <int CB>
void tap_dot(const float* x, int64_t xstep, const int64_t* offs, int real, const float* d,
             int64_t dvec, int64_t lines, int64_t nvec, float* vout, int64_t vstride,
             NextItem* pf) {
  constexpr int TT = taps_per_tile(CB);
  vec acc[TT][CB];
#pragma GCC unroll 32
  for (int t = 0; t < TT; ++t)
    for (int c = 0; c < CB; ++c) acc[t][c] = vec{};
  for (int64_t l = 0; l < lines; ++l) {
    const float* xl = x + l * xstep;
    for (int64_t vi = 0; vi < nvec; ++vi, d += dvec) {
      if (pf) pf->step();
      vec dv[CB];
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) {
        dv[c] = load(d + c * kLanes);
        // Otherwise GCC folds the load into each of the TT FMAs that use it (28 loads per
        // 24 FMAs with CB = 6, TT = 4: load-bound).
        pin(dv[c]);
      }
#pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        vec xv = load(xl + offs[t] + vi * kLanes);
        pin(xv);  // likewise (with CB = 4 the x vector was re-read for each FMA)
        for (int c = 0; c < CB; ++c) acc[t][c] += xv * dv[c];
      }
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) {
    if (t >= real) break;
    for (int c = 0; c < CB; ++c) {
      float* o = vout + t * vstride + c * kLanes;
      store(o, load(o) + acc[t][c]);
    }
  }
}

using TapDotFn = void (*)(const float*, int64_t, const int64_t*, int, const float*, int64_t,
                          int64_t, int64_t, float*, int64_t, NextItem*);

template <size_t... I>
constexpr std::array<TapDotFn, sizeof...(I)> tap_dot_table(std::index_sequence<I...>) {
  return {&tap_dot<int(I) + 1>...};
}

TapDotFn pick_tap_dot(int64_t cb) {
  static constexpr auto table = tap_dot_table(std::make_index_sequence<kMaxDwBlock>());
  return table[cb - 1];
}

int tile_taps(int64_t cb) {
  return taps_per_tile((int)cb);
}

// ---- the forward micro-kernel vectorised over output channels ----

// Where an output row is short and not a multiple of 16 (LeNet conv2: 10 columns, 6 of 16
// lanes idle in tap_block) and Cout is a multiple of 16, the vector runs along the output
// channels instead: R rows x P columns of pixels, each pixel's CV*kLanes channels c0.. in CV
// accumulators; per tap CV weight vectors and R*P broadcasts of the packed input (same
// packing and tap offsets as tap_block). The block is written straight to NHWC (no
// transpose). For each pixel (r, p), r < rows and p < cols:
//   dst[r*dst_rstride + p*oc + c0 ..+CV*kLanes] =
//       bias[c0..] + sum_t src[taps[t].off + r*rstride + p] * taps[t].w[c0..]
// CV = 2 below AVX-512 where Cout is a multiple of 16 (LeNet conv2's 16 channels are two
// ymm): each broadcast then feeds two FMAs, where one channel vector per call broadcast
// every input twice (one call per half: 11 loads per 10 FMAs).
template <int R, int P, int CV>
void channel_block(const float* src, int64_t rstride, const Tap* taps, int64_t ntaps, int64_t c0,
                   const float* bias, float* dst, int64_t dst_rstride, int64_t oc, int64_t rows,
                   int64_t cols) {
  vec acc[R][P][CV];
  vec init[CV];
  for (int v = 0; v < CV; ++v) init[v] = bias ? load(bias + c0 + v * kLanes) : vec{};
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p)
      for (int v = 0; v < CV; ++v) acc[r][p][v] = init[v];
  for (int64_t t = 0; t < ntaps; ++t) {
    const float* s = src + taps[t].off;
    vec wv[CV];
    for (int v = 0; v < CV; ++v) wv[v] = load(taps[t].w + c0 + v * kLanes);
#pragma GCC unroll 24
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < P; ++p) {
        const vec x = splat(s[r * rstride + p]);
        for (int v = 0; v < CV; ++v) acc[r][p][v] += x * wv[v];
      }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t p = 0; p < cols; ++p)
      for (int v = 0; v < CV; ++v) store(dst + r * dst_rstride + p * oc + c0 + v * kLanes, acc[r][p][v]);
}

using ChannelBlockFn = void (*)(const float*, int64_t, const Tap*, int64_t, int64_t, const float*,
                               float*, int64_t, int64_t, int64_t, int64_t);
// R*P*CV <= 24 accumulators at avx512 (P <= 12), 12 with 16 registers (P <= 6), + the CV
// weight vectors and a broadcast
constexpr int kMaxChannelCols = kAccumulators / 2;
// Channel vectors per pixel: 2 where a vector is narrower than 16 floats (see channel_block).
constexpr int kChannelVectors = kLanes < 16 ? 2 : 1;

template <int R, int CV, size_t... I>
constexpr std::array<ChannelBlockFn, sizeof...(I)> channel_block_table(std::index_sequence<I...>) {
  return {&channel_block<R, int(I) + 1, CV>...};
}

// rows 2, cv 1: P <= kMaxChannelCols; rows 1, cv = kChannelVectors: the same bound.
ChannelBlockFn pick_channel_block(int rows, int cv, int64_t cols) {
  static constexpr auto t1 = channel_block_table<1, 1>(std::make_index_sequence<kMaxChannelCols>());
  static constexpr auto t2 = channel_block_table<2, 1>(std::make_index_sequence<kMaxChannelCols>());
  static constexpr auto tv =
      channel_block_table<1, kChannelVectors>(std::make_index_sequence<kMaxChannelCols>());
  return (cv > 1 ? tv : rows == 2 ? t2 : t1)[cols - 1];
}

// The channel-vectorised forward is used when Cout is a multiple of the vector width and
// the row-vectorised one would leave over a fifth of its lanes idle (OW mod 16 in 1..12 at
// avx512; OW mod 8 in 1..6 at avx2).
bool channel_vectorised(const ConvGeometry& g) {
  const int64_t tail = g.ow % kLanes;
  return g.oc % kLanes == 0 && tail != 0 && tail <= kLanes * 3 / 4;
}

}  // namespace

// The rule, from 1-thread timings of every pass forced through both paths (ms gemm/direct,
// benchmarks/bench_direct.py with MODE=2; batch 32, 32x32, 3x3 'same' unless noted):
//                        forward     backward data  backward weights
//   3 -> 32              1.10/0.53   1.33/0.70      1.40/1.22
//   8 -> 32              1.96/0.95   2.01/0.99      2.09/1.71
//   3 -> 64              1.66/1.12   2.00/1.41      2.14/2.01
//   8 -> 64              3.38/1.86   3.35/2.13      3.41/3.62
//   3 -> 64 5x5 s2 64x64 3.77/2.29   4.91/3.06      4.28/4.38
//   16 -> 16             2.12/0.85   2.13/0.91      2.27/1.78
//   stem 8x224x224x3 -> 64 7x7 s2: 22.3/12.7  28.0/28.8  24.5/20.8
//   LeNet conv2 256x14x14 6 -> 16 5x5 valid: 1.92/0.96  3.34/1.30  2.10/1.66
//   256x7x7 6 -> 16 (5x5 out):  0.23/0.24  0.38/0.30  0.27/0.36
//   1x1 4 -> 16:          0.15/0.19   0.10/0.22      0.20/0.33   (x already is the GEMM operand)
// The direct cost per output is one FMA per tap per 16 pixels whatever the channel counts,
// while the GEMM's N = Cout and K = KH*KW*Cin only get efficient as they grow; the weight
// pass, the direct path's weakest (dy and x both repacked), reaches par around Cout = 64.
// Hence: Cin <= 8 (the brief's bound; 16 -> 16 also wins but overlaps the 3x3 shapes other
// kernels target, left for a later measurement), Cout <= 64, and not the 1x1 stride-1
// unpadded case.
// Under the "winograd" setting, 3x3 convs Winograd can take go there instead.
// Since the GEMM became fastconv's own AVX-512 kernel (about twice OpenBLAS's Haswell path
// above), im2col wins the backward passes from Cout = 64 (2 threads, ms direct/im2col,
// 32x32 'same' 3x3 batch 32 unless noted): 3->64 b64 bwd-data 1.57/1.34, bwd-weights
// 2.17/1.57; 8->64 1.17/1.15, 2.53/1.51; stem 8x224x224x3->64 7x7 s2 13.0/10.2, 11.3/8.3;
// while Cout <= 32 still favours direct (3->32 0.33/0.52, 0.59/0.80; 8->32 0.51/0.86,
// 1.05/1.04) and the forward does throughout (stem 6.2/6.7, 8->64 0.90/1.02).
bool direct_eligible(const ConvGeometry& g, ConvPass pass) {
  const Algo algo = algorithm_setting();
  if (algo == Algo::Im2col || g.groups != 1) return false;
  if (algo == Algo::Direct) return true;
  if (algo == Algo::Winograd && winograd_eligible(g)) return false;
  // Unpadded 1x1 convs with few channels each side are per-pixel maps (narrow_pointwise.cpp).
  if (narrow_pointwise_shape(g, pass)) return true;
  const int64_t max_cout = pass == ConvPass::Forward ? 64 : 32;
  return g.c <= 8 && g.oc <= max_cout && !g.is_pointwise();
}

namespace {

// direct_forward with channel_block: work items, packing and the rows' tap ranges as there.
void direct_forward_channels(const ConvGeometry& g, const float* x, const float* w,
                             const float* b, float* y, Activation act) {
  const Window2d& v = g.win;
  // Columns per block: the whole row when it fits, else equal blocks of <= 12 (<= 6 at avx2).
  const int64_t col_blocks = (g.ow + kMaxChannelCols - 1) / kMaxChannelCols;
  const int64_t pc = (g.ow + col_blocks - 1) / col_blocks;
  // 2 rows x <= kMaxChannelCols columns x 1 vector, or 1 row x 2 channel vectors (below
  // AVX-512, Cout % 16 == 0): <= kAccumulators
  const int cv = g.oc % (kChannelVectors * kLanes) == 0 ? kChannelVectors : 1;
  const int nr = cv > 1 ? 1 : 2;
  const int64_t cstep = cv * kLanes;
  const InputPack pk(g, round_up(g.ow, pc));
  InlineVec<Tap, kInlineTaps> taps;  // on the stack up to 7x7 taps x 5 channels (no malloc a call)
  for (int64_t ky = 0; ky < v.kh; ++ky)
    for (int64_t kx = 0; kx < v.kw; ++kx)
      for (int64_t ci = 0; ci < g.c; ++ci)
        taps.push_back({pk.tap_offset(g, ky, kx, ci), w + ((ky * v.kw + kx) * g.c + ci) * g.oc});
  const ChannelBlockFn kernel = pick_channel_block(nr, cv, pc);
  const int threads = pass_threads(g);
  const RowTasks tasks(g.n, g.oh, pk.rows_fit(g, kPackFloats), threads);
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    std::vector<float> spill;
    float* buf = nullptr;
    errors.run([&] { buf = pack_buffer(pk.row * pk.in_rows(g, tasks.rows + nr - 1), spill); });
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < tasks.count; ++i) {
      if (errors.failed()) continue;
      int64_t n, oy0, oy1;
      tasks.get(i, n, oy0, oy1);
      pk.pack(g, x, n, oy0 * v.sh - v.pt, pk.in_rows(g, oy1 - oy0), buf);
      for (int64_t oy = oy0; oy < oy1; oy += nr) {
        const float* base = buf + (oy - oy0) * v.sh * pk.row;
        const int64_t top = oy * v.sh - v.pt, bottom = (oy + nr - 1) * v.sh - v.pt;
        const int64_t ky_lo = std::max<int64_t>(0, ceil_div(-bottom, v.dh));
        const int64_t ky_hi = std::min<int64_t>(v.kh - 1, floor_div(g.h - 1 - top, v.dh));
        const int64_t per_ky = v.kw * g.c;
        const int64_t nt = ky_lo <= ky_hi ? (ky_hi - ky_lo + 1) * per_ky : 0;
        for (int64_t ox0 = 0; ox0 < g.ow; ox0 += pc)
          for (int64_t c0 = 0; c0 < g.oc; c0 += cstep)
            kernel(base + ox0, v.sh * pk.row, taps.data() + (nt ? ky_lo * per_ky : 0), nt, c0, b,
                   y + ((n * g.oh + oy) * g.ow + ox0) * g.oc, g.ow * g.oc, g.oc,
                   std::min<int64_t>(nr, oy1 - oy), std::min(pc, g.ow - ox0));
      }
      if (act != Activation::Linear)
        activation_inplace((oy1 - oy0) * g.ow * g.oc, y + (n * g.oh + oy0) * g.ow * g.oc, act);
    }
  });
  errors.rethrow();
}

}  // namespace

void direct_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y, Activation act) {
  if (narrow_pointwise_shape(g, ConvPass::Forward))
    return narrow_pointwise_forward(g, x, w, b, y, act);
  if (few_channel_flat_shape(g, ConvPass::Forward)) return few_channel_flat_forward(g, x, w, b, y, act);
  if (few_channel_planes_shape(g, ConvPass::Forward))
    return few_channel_planes_forward(g, x, w, b, y, act);
  // avx2 only (C = 3, 6 'same'); false on a non-finite weight: computed below.
  if (few_channel_fwd8_shape(g, ConvPass::Forward) && few_channel_fwd8_forward(g, x, w, b, y, act))
    return;
  if (s2b_c1_forward(g, x, w, b, y, act)) return;  // C = 1 at avx2 (few_channel_s2b_c1.cpp)
  if (s2b_fwd_flat8(g, x, w, b, y, act)) return;  // C = 3, 6 at avx2 (few_channel_s2b_fwd.cpp)
  if (s2_planes_shape(g, ConvPass::Forward)) return s2_planes_forward(g, x, w, b, y, act);
  if (stem_conv_shape(g, ConvPass::Forward)) return stem_conv_forward(g, x, w, b, y, act);
  if (few_channel_rows_shape(g, ConvPass::Forward) && few_channel_rows_forward(g, x, w, b, y, act)) return;
  if (channel_vectorised(g)) return direct_forward_channels(g, x, w, b, y, act);
  const Window2d& v = g.win;
  const ChannelBlocks cbk(g.oc, BlockShape::max_channels(g.ow));
  const BlockShape bs(cbk.cb, g.ow, true);
  const int64_t colw = bs.colw();
  const InputPack pk(g, round_up(g.ow, colw));
  InlineVec<Tap, kInlineTaps> taps;  // on the stack up to 7x7 taps x 5 channels (no malloc a call)
  for (int64_t ky = 0; ky < v.kh; ++ky)
    for (int64_t kx = 0; kx < v.kw; ++kx)
      for (int64_t ci = 0; ci < g.c; ++ci)
        taps.push_back({pk.tap_offset(g, ky, kx, ci), w + ((ky * v.kw + kx) * g.c + ci) * g.oc});
  const TapBlockFn kernel = bs.kernel(cbk.cb);
  const int threads = pass_threads(g);
  const RowTasks tasks(g.n, g.oh, pk.rows_fit(g, kPackFloats), threads);
  ExceptionCaptor errors;  // a buffer may not fit in memory (rows of a very wide image)
  parallel_region(threads, [&] {
    note_team();
    // Spare input for nr - 1 output rows: a last partial block of rows is computed whole,
    // the extra rows dropped.
    // The packing buffer is the thread's reused one (team_buffers.h) up to 256 KiB.
    std::vector<float> spill;
    float* buf = nullptr;
    errors.run([&] { buf = pack_buffer(pk.row * pk.in_rows(g, tasks.rows + bs.nr - 1), spill); });
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < tasks.count; ++i) {
      if (errors.failed()) continue;  // some thread has no buffer: the call raises
      int64_t n, oy0, oy1;
      tasks.get(i, n, oy0, oy1);
      pk.pack(g, x, n, oy0 * v.sh - v.pt, pk.in_rows(g, oy1 - oy0), buf);
      for (int64_t oy = oy0; oy < oy1; oy += bs.nr) {
        const float* base = buf + (oy - oy0) * v.sh * pk.row;
        // Kernel rows that reach a real input row from some output row of the block (taps
        // are ordered by ky, kw*c per kernel row): padding rows cost nothing.
        const int64_t top = oy * v.sh - v.pt, bottom = (oy + bs.nr - 1) * v.sh - v.pt;
        const int64_t ky_lo = std::max<int64_t>(0, ceil_div(-bottom, v.dh));
        const int64_t ky_hi = std::min<int64_t>(v.kh - 1, floor_div(g.h - 1 - top, v.dh));
        const int64_t per_ky = v.kw * g.c;
        const int64_t nt = ky_lo <= ky_hi ? (ky_hi - ky_lo + 1) * per_ky : 0;
        for (int64_t ox0 = 0; ox0 < g.ow; ox0 += colw)
          for (int64_t bi = 0; bi < cbk.count; ++bi) {
            const int64_t c0 = cbk.start(bi);
            kernel(base + ox0, v.sh * pk.row, taps.data() + (nt ? ky_lo * per_ky : 0), nt, c0, b,
                   y + ((n * g.oh + oy) * g.ow + ox0) * g.oc + c0, g.ow * g.oc, g.oc,
                   std::min<int64_t>(bs.nr, oy1 - oy), std::min(colw, g.ow - ox0));
          }
      }
      // The activation on this item's rows while they are in cache (a separate pass over
      // LeNet conv1's 256x28x28x6 output cost ~5% of its forward).
      if (act != Activation::Linear)
        activation_inplace((oy1 - oy0) * g.ow * g.oc, y + (n * g.oh + oy0) * g.ow * g.oc, act);
    }
  });
  errors.rethrow();
}

void direct_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  if (narrow_pointwise_shape(g, ConvPass::BackwardData))
    return narrow_pointwise_backward_data(g, dy, w, dx);
  if (few_channel_flat_shape(g, ConvPass::BackwardData)) return few_channel_flat_backward_data(g, dy, w, dx);
  if (few_channel_planes_shape(g, ConvPass::BackwardData))
    return few_channel_planes_backward_data(g, dy, w, dx);
  if (few_channel_fwd8_shape(g, ConvPass::BackwardData) && few_channel_fwd8_backward_data(g, dy, w, dx))
    return;
  if (s2b_data_flat8(g, dy, w, dx)) return;  // C = 3, 6 at avx2 (few_channel_s2b_data.cpp)
  if (s2_planes_shape(g, ConvPass::BackwardData) && s2_planes_backward_data(g, dy, w, dx)) return;
  if (few_channel_rows_shape(g, ConvPass::BackwardData) && few_channel_rows_backward_data(g, dy, w, dx)) return;
  const Window2d& v = g.win;
  // dx column ix = j*sw + r (phase r); tap kx reaches it from dy column j + dc when
  // dc = (r + pl - kx*dw) / sw is exact. Packed dy rows cover columns [lo, lo + len).
  const int64_t jmax = (g.w + v.sw - 1) / v.sw;
  // Blocks as in the forward pass; several dx rows per block only when sh == 1 (then all
  // rows have the same taps, one dy row apart).
  const ChannelBlocks cbk(g.c, BlockShape::max_channels(jmax));
  const BlockShape bs(cbk.cb, jmax, v.sh == 1);
  const int64_t colw = bs.colw(), cols = round_up(jmax, colw);
  int64_t cmin = INT64_MAX, cmax = INT64_MIN;
  for (int64_t r = 0; r < v.sw; ++r)
    for (int64_t kx = 0; kx < v.kw; ++kx)
      if ((r + v.pl - kx * v.dw) % v.sw == 0) {
        const int64_t dc = (r + v.pl - kx * v.dw) / v.sw;
        cmin = std::min(cmin, dc);
        cmax = std::max(cmax, dc);
      }
  const int64_t lo = std::min<int64_t>(0, cmin);
  const int64_t len = std::max(cols + cmax, g.ow) - lo, row = g.oc * len;

  // Weights as (KH, KW, Cout, Cin): a tap (ky, kx, co) reads the Cin weights contiguously.
  const int64_t nk = v.kh * v.kw;
  std::vector<float> wt((size_t)(nk * g.c * g.oc));
  for (int64_t k = 0; k < nk; ++k)
    for (int64_t ci = 0; ci < g.c; ++ci)
      for (int64_t co = 0; co < g.oc; ++co)
        wt[(k * g.oc + co) * g.c + ci] = w[(k * g.c + ci) * g.oc + co];
  // Tap lists per (row phase rho = (iy + pt) % sh, column phase r): ky reaches dx row iy
  // from dy row (iy + pt - ky*dh) / sh when exact, i.e. (rho - ky*dh) % sh == 0.
  // kstart[list][ky]: the list's first tap of kernel row ky or later (rows of dy that are
  // all padding are skipped per block of dx rows: a quarter of LeNet conv2's taps).
  std::vector<std::vector<Tap>> taps((size_t)(v.sh * v.sw));
  std::vector<std::vector<int64_t>> kstart((size_t)(v.sh * v.sw), std::vector<int64_t>(v.kh + 1));
  for (int64_t rho = 0; rho < v.sh; ++rho)
    for (int64_t r = 0; r < v.sw; ++r)
      for (int64_t ky = 0; ky <= v.kh; ++ky) {
        kstart[rho * v.sw + r][ky] = (int64_t)taps[rho * v.sw + r].size();
        if (ky == v.kh || (rho - ky * v.dh) % v.sh != 0) continue;
        const int64_t dr = (rho - ky * v.dh) / v.sh;
        for (int64_t kx = 0; kx < v.kw; ++kx) {
          if ((r + v.pl - kx * v.dw) % v.sw != 0) continue;
          const int64_t dc = (r + v.pl - kx * v.dw) / v.sw;
          for (int64_t co = 0; co < g.oc; ++co)
            taps[rho * v.sw + r].push_back(
                {dr * row + co * len + dc - lo, wt.data() + ((ky * v.kw + kx) * g.oc + co) * g.c});
        }
      }

  const TapBlockFn kernel = bs.kernel(cbk.cb);
  const int threads = pass_threads(g);
  // dy rows for R dx rows: at most (R - 1 + (KH-1)*dh) / sh + 2.
  auto dy_rows = [&](int64_t rows) { return (rows - 1 + (v.kh - 1) * v.dh) / v.sh + 2; };
  int64_t fit = 1;
  while (fit < g.h && dy_rows(fit + 1) * row <= kPackFloats) ++fit;
  const RowTasks tasks(g.n, g.h, fit, threads);
  ExceptionCaptor errors;  // a buffer may not fit in memory (rows of a very wide image)
  parallel_region(threads, [&] {
    note_team();
    // Spare dy for nr - 1 dx rows: a last partial block of rows is computed whole.
    std::vector<float> buf;
    errors.run([&] { buf.resize(row * dy_rows(tasks.rows + bs.nr - 1)); });
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < tasks.count; ++i) {
      if (errors.failed()) continue;  // some thread has no buffer: the call raises
      int64_t n, iy0, iy1;
      tasks.get(i, n, iy0, iy1);
      const int64_t oy_lo = floor_div(iy0 + v.pt - (v.kh - 1) * v.dh, v.sh);
      const int64_t oy_hi = floor_div(iy1 - 1 + v.pt, v.sh);
      for (int64_t oy = oy_lo; oy <= oy_hi; ++oy) {
        const float* src = oy >= 0 && oy < g.oh ? dy + (n * g.oh + oy) * g.ow * g.oc : nullptr;
        pack_row(src, g.ow, g.oc, 1, -lo, len, buf.data() + (oy - oy_lo) * row);
      }
      for (int64_t iy = iy0; iy < iy1; iy += bs.nr) {
        const int64_t q = iy + v.pt, rho = q % v.sh;
        const float* base = buf.data() + (q / v.sh - oy_lo) * row;
        // Kernel rows that reach a real dy row from some dx row of the block.
        const int64_t ky_lo = std::max<int64_t>(0, ceil_div(q - (g.oh - 1) * v.sh, v.dh));
        const int64_t ky_hi = std::min<int64_t>(v.kh - 1, floor_div(q + bs.nr - 1, v.dh));
        for (int64_t r = 0; r < v.sw && r < g.w; ++r) {
          const std::vector<int64_t>& ks = kstart[rho * v.sw + r];
          const Tap* tl = taps[rho * v.sw + r].data() + (ky_lo <= ky_hi ? ks[ky_lo] : 0);
          const int64_t nt = ky_lo <= ky_hi ? ks[ky_hi + 1] - ks[ky_lo] : 0;
          const int64_t jr = (g.w - r + v.sw - 1) / v.sw;
          for (int64_t j0 = 0; j0 < jr; j0 += colw)
            for (int64_t bi = 0; bi < cbk.count; ++bi) {
              const int64_t c0 = cbk.start(bi);
              kernel(base + j0, row, tl, nt, c0, nullptr,
                     dx + ((n * g.h + iy) * g.w + j0 * v.sw + r) * g.c + c0, g.w * g.c,
                     v.sw * g.c, std::min<int64_t>(bs.nr, iy1 - iy), std::min(colw, jr - j0));
            }
        }
      }
    }
  });
  errors.rethrow();
}

namespace {

// Input block of the weight pass, split into stride phases in both directions: plane
// (rho, ph, ci) holds rows j (input row oy0*sh - pt + j*sh + rho) of `len` columns (padded
// column j*sw + ph). Output pixel (l, ox) with tap (ky, kx, ci) then sits at a fixed offset
// per tap from p = l*len + ox, so the pixels of all rows of a work item form ONE stream of
// vectors (columns ox >= OW meet dy = 0 and drop out). Per-row loops with LeNet conv2's
// 10-column rows spent a third of the time in loop overhead, and 10 of 16 lanes worked;
// the stream uses 10 of 14.
struct StreamPack {
  int64_t len, rows, plane, pixels, floats;
  StreamPack(const ConvGeometry& g, int64_t lines) {
    const Window2d& v = g.win;
    len = g.ow + (v.kw - 1) * v.dw / v.sw;
    rows = lines + (v.kh - 1) * v.dh / v.sh;
    plane = rows * len;
    pixels = round_up(lines * len, kLanes);
    floats = v.sh * v.sw * g.c * plane + len + kLanes;  // + the stream's overrun
  }
  int64_t tap_offset(const ConvGeometry& g, int64_t ky, int64_t kx, int64_t ci) const {
    const Window2d& v = g.win;
    const int64_t cy = ky * v.dh, cx = kx * v.dw;
    return (((cy % v.sh) * v.sw + cx % v.sw) * g.c + ci) * plane + (cy / v.sh) * len + cx / v.sw;
  }
  void pack_x(const ConvGeometry& g, const float* x, int64_t n, int64_t oy0, float* buf) const {
    const Window2d& v = g.win;
    if (v.sh == 1 && v.sw == 1 && v.pl >= 0 && v.pl <= len && g.w >= kMarginsOnly) {
      // Stride 1: zero only what the rows leave (margins, padding rows, the overrun); a
      // memset of the whole block was a fifth of the packing in a 56x56 C=3 weight pass.
      const int64_t count = std::min(g.w, len - v.pl);
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t iy = oy0 - v.pt + j;
        const bool real = iy >= 0 && iy < g.h;
        for (int64_t ci = 0; ci < g.c; ++ci) {
          float* r = buf + ci * plane + j * len;
          if (!real) {
            std::memset(r, 0, sizeof(float) * len);
            continue;
          }
          std::memset(r, 0, sizeof(float) * v.pl);
          std::memset(r + v.pl + count, 0, sizeof(float) * (len - v.pl - count));
        }
        if (real)
          pack_row_planes(x + (n * g.h + iy) * g.w * g.c, g.w, g.c, 1, v.pl, len, plane,
                          buf + j * len);
      }
      std::memset(buf + g.c * plane, 0, sizeof(float) * (floats - g.c * plane));
      return;
    }
    std::memset(buf, 0, sizeof(float) * floats);
    for (int64_t j = 0; j < rows; ++j)
      for (int64_t rho = 0; rho < v.sh; ++rho) {
        const int64_t iy = oy0 * v.sh - v.pt + j * v.sh + rho;
        if (iy < 0 || iy >= g.h) continue;
        pack_row_planes(x + (n * g.h + iy) * g.w * g.c, g.w, g.c, v.sw, v.pl, len, plane,
                        buf + rho * v.sw * g.c * plane + j * len);
      }
  }
  // dy rows oy0 .. oy0 + lines - 1 as the stream, in groups of oc vectors of kLanes pixels:
  // dst[((p / kLanes)*oc + c)*kLanes + p % kLanes] = dy[pixel p, c], zero where p is no
  // output pixel. One pass in dy's order (contiguous reads, each pixel's oc values to oc
  // lines of one block; a plain copy per row when oc == 1). The earlier pass per channel
  // through a planar buffer (strided reads, then 16-float copies) was half of LeNet conv1's
  // weight pass; one AVX-512 gather per channel and 16 pixels was 3/4 of a 3x3 C=1 weight
  // pass (N=256 112x112, perf on Zen 5: the gathers ran at about one float per cycle).
  void pack_dy(const ConvGeometry& g, const float* dy, int64_t n, int64_t oy0, int64_t lines,
               float* dst) const;
};

// Pixels [p, p + count) of the stream from `count` NHWC pixels of OC channels (one dy row):
// pixel p's channel c at ((p / kLanes)*oc + c)*kLanes + p % kLanes. OC is compile-time for
// the few-channel shapes (the copies unrolled), 0 for any other oc.
template <int OC>
void stream_row(const float* src, int64_t oc_any, int64_t p, int64_t count, float* dst) {
  const int64_t oc = OC ? OC : oc_any;
  if (oc == 1) return (void)std::memcpy(dst + p, src, sizeof(float) * count);
  int64_t lane = p % kLanes;
  float* d = dst + (p / kLanes) * oc * kLanes + lane;
  int64_t q = 0;
  if constexpr (OC >= 2) {
    // Up to the next whole block one float at a time, then whole blocks by permutes
    // (pixel_transpose.h: a block of kLanes pixels is oc planar registers), the rest below.
    for (; q < count && lane != 0; ++q, src += oc) {
#pragma GCC unroll 8
      for (int64_t c = 0; c < oc; ++c) d[c * kLanes] = src[c];
      ++d;
      if (++lane == kLanes) {
        lane = 0;
        d += (oc - 1) * kLanes;
      }
    }
    const int64_t whole = pixel_transpose::split_rows<OC>(src, count - q, d, kLanes, OC * kLanes);
    q += whole;
    src += whole * oc;
    d += whole * oc;
  }
  for (; q < count; ++q, src += oc) {
#pragma GCC unroll 8
    for (int64_t c = 0; c < oc; ++c) d[c * kLanes] = src[c];
    ++d;
    if (++lane == kLanes) {  // next block of kLanes pixels
      lane = 0;
      d += (oc - 1) * kLanes;
    }
  }
}

void StreamPack::pack_dy(const ConvGeometry& g, const float* dy, int64_t n, int64_t oy0,
                         int64_t lines, float* dst) const {
  using RowFn = void (*)(const float*, int64_t, int64_t, int64_t, float*);
  static constexpr RowFn rows_by_oc[] = {&stream_row<0>, &stream_row<1>, &stream_row<2>,
                                         &stream_row<3>, &stream_row<4>, &stream_row<5>,
                                         &stream_row<6>, &stream_row<7>, &stream_row<8>};
  const int64_t oc = g.oc;
  const RowFn row = rows_by_oc[oc < 9 ? oc : 0];
  const float* rows = dy + (n * g.oh + oy0) * g.ow * oc;
  std::memset(dst, 0, sizeof(float) * pixels * oc);
  for (int64_t l = 0; l < lines; ++l) row(rows + l * g.ow * oc, oc, l * len, g.ow, dst);
}


}  // namespace

namespace {

// ---- the weight-gradient kernel vectorised over output channels (Cout % 16 == 0) ----

// dw[tap, c0..c0+16] += sum over `lines` rows l and columns ox < P of
//   x[l*xrstride + offs[t] + ox] * dy[l*dyrstride + ox*oc ..+16]
// for the `real` first taps of a tile of T (dy already offset by c0): T accumulators, the
// P dy vectors of a column block in registers, one broadcast of the packed input per FMA.
// Every lane works (the stream kernel above runs its dy vectors along rows: LeNet conv2's
// 10-column rows filled 10 of 14 lanes and its dy was transposed first); dy is read in
// place from NHWC.
template <int P, int T>
void channel_dot(const float* x, int64_t xrstride, const int64_t* offs, int real, const float* dy,
                 int64_t dyrstride, int64_t oc, int64_t lines, int64_t blocks, float* vout,
                 int64_t vstride) {
  vec acc[T];
#pragma GCC unroll 24
  for (int t = 0; t < T; ++t) acc[t] = vec{};
  for (int64_t l = 0; l < lines; ++l)
    for (int64_t bk = 0; bk < blocks; ++bk) {
      const float* xr = x + l * xrstride + bk * P;
      const float* d = dy + l * dyrstride + bk * P * oc;
      vec dv[P];
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) {
        dv[p] = load(d + p * oc);
        pin(dv[p]);
      }
#pragma GCC unroll 24
      for (int t = 0; t < T; ++t) {
        const float* s = xr + offs[t];
        for (int p = 0; p < P; ++p) acc[t] += splat(s[p]) * dv[p];
      }
    }
#pragma GCC unroll 24
  for (int t = 0; t < T; ++t) {
    if (t >= real) break;
    store(vout + t * vstride, load(vout + t * vstride) + acc[t]);
  }
}

// T accumulators + P dy vectors + 1 broadcast: 20 + 6 + 1 of 32 registers at avx512,
// 10 + 5 + 1 of 16 at avx2 and baseline.
constexpr int kDotCols = kVectorRegisters >= 32 ? 6 : 5;
constexpr int kDotTaps = kVectorRegisters >= 32 ? 20 : 10;

using ChannelDotFn = void (*)(const float*, int64_t, const int64_t*, int, const float*, int64_t,
                              int64_t, int64_t, int64_t, float*, int64_t);

template <size_t... I>
constexpr std::array<ChannelDotFn, sizeof...(I)> channel_dot_table(std::index_sequence<I...>) {
  return {&channel_dot<int(I) + 1, kDotTaps>...};
}

ChannelDotFn pick_channel_dot(int64_t cols) {
  static constexpr auto table = channel_dot_table(std::make_index_sequence<kDotCols>());
  return table[cols - 1];
}

// Work items of output rows as in the forward pass (InputPack); per thread (tap, channel)
// partial vectors, summed in double in thread order at the end (deterministic for a fixed
// thread count, as the stream kernel's).
void direct_backward_weights_channels(const ConvGeometry& g, const float* dy, const float* x,
                                      float* dw, float* db) {
  const Window2d& v = g.win;
  const int64_t ntaps = v.kh * v.kw * g.c, wsize = ntaps * g.oc;
  const int64_t full = g.ow / kDotCols * kDotCols, tail = g.ow - full;
  const InputPack pk(g, g.ow);
  std::vector<int64_t> offs;
  for (int64_t ky = 0; ky < v.kh; ++ky)
    for (int64_t kx = 0; kx < v.kw; ++kx)
      for (int64_t ci = 0; ci < g.c; ++ci) offs.push_back(pk.tap_offset(g, ky, kx, ci));
  offs.resize((size_t)(ntaps + kDotTaps), offs.back());  // whole tiles; the extra dropped
  const int threads = pass_threads(g);
  const RowTasks tasks(g.n, g.oh, pk.rows_fit(g, kPackFloats), threads);
  const int64_t psize = wsize + g.oc;  // dw, then db
  std::vector<double> part((size_t)(threads * psize), 0.0);
  int used = 1;
  ExceptionCaptor errors;
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    std::vector<float> vacc, buf;
    errors.run([&] {
      vacc.resize((size_t)psize, 0.f);
      buf.resize(pk.row * pk.in_rows(g, tasks.rows));
    });
#pragma omp for schedule(static)
    for (int64_t i = 0; i < tasks.count; ++i) {
      if (errors.failed()) continue;
      int64_t n, oy0, oy1;
      tasks.get(i, n, oy0, oy1);
      pk.pack(g, x, n, oy0 * v.sh - v.pt, pk.in_rows(g, oy1 - oy0), buf.data());
      const float* drows = dy + (n * g.oh + oy0) * g.ow * g.oc;
      const int64_t lines = oy1 - oy0, xr = v.sh * pk.row, dr = g.ow * g.oc;
      for (int64_t c0 = 0; c0 < g.oc; c0 += kLanes) {
        if (db) {
          vec s = load(vacc.data() + wsize + c0);
          for (int64_t p = 0; p < lines * g.ow; ++p) s += load(drows + p * g.oc + c0);
          store(vacc.data() + wsize + c0, s);
        }
        for (int64_t t0 = 0; t0 < ntaps; t0 += kDotTaps) {
          const int real = (int)std::min<int64_t>(kDotTaps, ntaps - t0);
          float* out = vacc.data() + t0 * g.oc + c0;
          if (full)
            pick_channel_dot(kDotCols)(buf.data(), xr, offs.data() + t0, real, drows + c0, dr,
                                       g.oc, lines, full / kDotCols, out, g.oc);
          if (tail)
            pick_channel_dot(tail)(buf.data() + full, xr, offs.data() + t0, real,
                                   drows + full * g.oc + c0, dr, g.oc, lines, 1, out, g.oc);
        }
      }
    }
    double* acc = part.data() + t * psize;
    if (!errors.failed())
      for (int64_t k = 0; k < psize; ++k) acc[k] += vacc[k];
  });
  errors.rethrow();
  for (int64_t k = 0; k < psize; ++k) {
    double s = 0.0;
    for (int tt = 0; tt < used; ++tt) s += part[tt * psize + k];
    if (k < wsize) dw[k] = (float)s;
    else if (db) db[k - wsize] = (float)s;
  }
}

}  // namespace

void direct_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db) {
  if (narrow_pointwise_shape(g, ConvPass::BackwardWeights))
    return narrow_pointwise_backward_weights(g, dy, x, dw, db);
  if (few_channel_flat_shape(g, ConvPass::BackwardWeights))
    return few_channel_flat_backward_weights(g, dy, x, dw, db);
  if (few_channel_planes_shape(g, ConvPass::BackwardWeights))
    return few_channel_planes_backward_weights(g, dy, x, dw, db);
  // avx2 only (C = 1, 3, 6 'same'); false on a non-finite x or dy: recomputed below.
  if (few_channel_weights8_shape(g) && few_channel_weights8(g, dy, x, dw, db)) return;
  // avx2 only: 3x3 stride 2, C = 3 and 6 (few_channel_s2w_avx2.cpp).
  if (s2w_avx2_weights(g, dy, x, dw, db)) return;
  if (s2_planes_shape(g, ConvPass::BackwardWeights))
    return s2_planes_backward_weights(g, dy, x, dw, db);
  if (s2_patch_backward_weights(g, dy, x, dw, db)) return;  // C = 6, C = 3 under 14 columns
  if (few_channel_rows_shape(g, ConvPass::BackwardWeights) && few_channel_rows_backward_weights(g, dy, x, dw, db)) return;
  if (g.oc % kLanes == 0) return direct_backward_weights_channels(g, dy, x, dw, db);
  const Window2d& v = g.win;
  const int64_t ntaps = v.kh * v.kw * g.c, wsize = ntaps * g.oc;
  const int threads = pass_threads(g);
  // Output rows per work item: the x block and the dy stream each within kPackFloats.
  int64_t fit = 1;
  while (fit < g.oh) {
    const StreamPack next(g, fit + 1);
    if (next.floats > kPackFloats || next.pixels * g.oc > kPackFloats) break;
    ++fit;
  }
  const RowTasks tasks(g.n, g.oh, fit, threads);
  const StreamPack full(g, tasks.rows);
  const int64_t dfloats = full.pixels * g.oc;
  // When whole images fit, a work item is a group of images, their streams back to back in
  // one kernel call: a call's fixed cost (24 partial-sum updates) over one 10x10 image was
  // a third of LeNet conv2's weight pass.
  int64_t group = 1;
  if (tasks.rows == g.oh)
    group = std::max<int64_t>(1, std::min(2 * kPackFloats / (full.floats + dfloats),
                                          g.n / (4 * threads)));
  const int64_t items = tasks.rows == g.oh ? (g.n + group - 1) / group : tasks.count;
  std::vector<int64_t> offs;
  for (int64_t ky = 0; ky < v.kh; ++ky)
    for (int64_t kx = 0; kx < v.kw; ++kx)
      for (int64_t ci = 0; ci < g.c; ++ci) offs.push_back(full.tap_offset(g, ky, kx, ci));
  // Taps padded to whole tiles of the widest tile by repeating the last one (results dropped).
  offs.resize((size_t)(ntaps + tile_taps(1)), offs.back());
  // Output channels in blocks of <= kMaxDwBlock (sizes cb, ..., cb, last).
  const int64_t nblocks = (g.oc + kMaxDwBlock - 1) / kMaxDwBlock;
  const int64_t cb = (g.oc + nblocks - 1) / nblocks;

  const int64_t psize = wsize + g.oc;  // dw, then db
  // The x and dy rows of item i: images [n0, n0 + nimg), output rows [oy0, oy1) of each.
  auto item_rows = [&](int64_t i, int64_t& n0, int64_t& oy0, int64_t& oy1, int64_t& nimg) {
    nimg = 1;
    if (tasks.rows == g.oh) {
      n0 = i * group, oy0 = 0, oy1 = g.oh;
      nimg = std::min(group, g.n - n0);
    } else {
      tasks.get(i, n0, oy0, oy1);
    }
  };
  // Stride 2: the next item's x and dy rows prefetched into L2 while this one computes, a
  // line or two per vector of tap_dot (stride2::LinePrefetch, as few_channel_s2_planes.cpp's
  // blocks): the pack's pair split of x waited on L3 / DRAM (split_pairs<6> 39% of a C=6
  // N=256 56x56 weight pass in perf, tap_dot 25%). A burst between the tap tiles instead
  // stalled on the misses in flight (5% of the pass). Not measured at stride 1 (left as is).
  const bool ahead = v.sh == 2 && 4 * g.n * g.h * g.w * g.c >= stride2::kPrefetchFromBytes;
  const int64_t calls = (g.oc + cb - 1) / cb * ((ntaps + tile_taps(cb) - 1) / tile_taps(cb));
  std::vector<double> part((size_t)(threads * psize), 0.0);
  int used = 1;
  ExceptionCaptor errors;  // the buffers may not fit in memory (rows of a very wide image)
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num();
#pragma omp single
    used = omp_get_num_threads();
    // Per-lane partial sums of this thread, (tap, co, lane), then (co, lane) for db: the
    // bias gradient is the lane sums of the packed dy (detail::column_sums on the NHWC dy
    // was 14% of conv1's weight pass, 6 columns).
    std::vector<float> vacc, xbuf, dbuf;
    float* vdb = nullptr;
    errors.run([&] {
      vacc.resize((size_t)(psize * kLanes), 0.f);
      vdb = vacc.data() + wsize * kLanes;
      xbuf.resize(group * full.floats);
      dbuf.resize(group * dfloats);
    });
#pragma omp for schedule(static)
    for (int64_t i = 0; i < items; ++i) {
      if (errors.failed()) continue;  // some thread has no buffers: the call raises
      // Images [n0, n0 + nimg), output rows [oy0, oy1) of each. A short last row block keeps
      // the full item's layout (same tap offsets); only its stream is shorter.
      int64_t n0, oy0, oy1, nimg;
      item_rows(i, n0, oy0, oy1, nimg);
      const int64_t lines = oy1 - oy0, nvec = round_up(lines * full.len, kLanes) / kLanes;
      NextItem pf;
      if (ahead && i + 1 < items) {
        int64_t m0, py0, py1, mimg;
        item_rows(i + 1, m0, py0, py1, mimg);
        const int64_t r0 = std::max<int64_t>(0, py0 * v.sh - v.pt);
        const int64_t r1 = std::min(g.h, (py1 - 1) * v.sh - v.pt + (v.kh - 1) * v.dh + 1);
        const float* xi = x + m0 * g.h * g.w * g.c;
        const int64_t steps = calls * nimg * nvec;
        pf.x.set(xi + r0 * g.w * g.c, xi + ((mimg - 1) * g.h + std::max(r0, r1)) * g.w * g.c, steps);
        pf.dy.set(dy + (m0 * g.oh + py0) * g.ow * g.oc,
                  dy + ((m0 + mimg - 1) * g.oh + py1) * g.ow * g.oc, steps);
      }
      for (int64_t b = 0; b < nimg; ++b) {
        full.pack_x(g, x, n0 + b, oy0, xbuf.data() + b * full.floats);
        full.pack_dy(g, dy, n0 + b, oy0, lines, dbuf.data() + b * dfloats);
      }
      if (db)
        for (int64_t c = 0; c < g.oc; ++c) {
          vec s = load(vdb + c * kLanes);
          for (int64_t vi = 0; vi < nimg * nvec; ++vi)
            s += load(dbuf.data() + (vi * g.oc + c) * kLanes);
          store(vdb + c * kLanes, s);
        }
      for (int64_t c0 = 0; c0 < g.oc; c0 += cb) {
        const int64_t cn = std::min(cb, g.oc - c0);
        const TapDotFn kernel = pick_tap_dot(cn);
        const int64_t tt = tile_taps(cn);
        for (int64_t t0 = 0; t0 < ntaps; t0 += tt) {
          kernel(xbuf.data(), full.floats, offs.data() + t0, (int)std::min(tt, ntaps - t0),
                 dbuf.data() + c0 * kLanes, g.oc * kLanes, nimg, nvec,
                 vacc.data() + (t0 * g.oc + c0) * kLanes, g.oc * kLanes, ahead ? &pf : nullptr);
        }
      }
    }
    double* acc = part.data() + t * psize;
    if (!errors.failed())
      for (int64_t k = 0; k < psize; ++k)
        for (int i = 0; i < kLanes; ++i) acc[k] += vacc[k * kLanes + i];
  });
  errors.rethrow();
  for (int64_t k = 0; k < psize; ++k) {
    double s = 0.0;
    for (int tt = 0; tt < used; ++tt) s += part[tt * psize + k];
    if (k < wsize) dw[k] = (float)s;
    else if (db) db[k - wsize] = (float)s;
  }
}

}  // namespace fastconv::cpu::detail
