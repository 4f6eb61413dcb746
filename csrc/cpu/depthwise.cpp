// Direct depthwise convolution (groups == C, Cin_g == 1, multiplier M = Cout_g), NHWC.
// This file: the forward and backward data passes; the weight pass is in depthwise_weights.cpp,
// the helpers both use (loads, gather geometry, row walk and its requests) in depthwise_gather.h.
//
// im2col would copy every input KH*KW times to feed a GEMM with a single reduction column
// per channel, so here each tap is applied directly. The passes do ~9 multiply-adds per
// element moved, so they are bound by memory traffic, and the fast paths (M == 1) are built
// to move each tensor once:
//   - vectors run over the contiguous channel axis, 16 channels ("a block") at a time; the
//     last block of a C that is no multiple of 16 uses masked loads/stores (ld/st below);
//   - 3x3 kernels at stride 1 and 2 (the forward and stride-1 backward data of MobileNet-like
//     nets) walk a row in tiles of a few output columns, each tile over every block in
//     turn, so the loads go along memory (tile3); other kernels walk one block along the
//     whole row with its KH*KW weight vectors in registers (3x3) or L1 (gather_block);
//   - 3x3 stride 1 with few channels in cache (C <= 32, C <= 64 on rows up to 4096 floats,
//     and 'same' C = 6..15 instead of depthwise_flat.cpp) runs each block's sliding window
//     along the row, the tail of C % 16 <= 8 in 8-lane vectors (depthwise_narrow.h);
//   - below AVX-512 (avx2, baseline), 3x3 stride 1 runs register tiles of the level's own
//     vectors instead (depthwise_regtile.h; the weight pass likewise, depthwise_weights_regs.h):
//     16-lane vectors there are 2 or 4 registers, and the tiles sized for 32 zmm spilled;
//   - a thread walks consecutive output rows, so the KH input rows each needs are still in
//     L1/L2 from the previous row, and the next row's new input rows are prefetched a slice
//     per tile and channel block while the current row runs (into L2 only when the input
//     is too large to be in cache, RowPrefetch);
//   - the forward's relu/relu6 (inference's folded BN + activation) is applied in registers
//     before the store, other activations on the row while it is in L1;
//   - no branch in a row's interior: kernel rows falling into the vertical padding read a
//     row of zeros; only the few output columns whose window overlaps the left/right
//     padding take a checked loop;
//   - large outputs are filled a row at a time in a thread-local buffer and streamed out
//     with non-temporal stores (simd.h), so writing y/dx costs no read-for-ownership (the
//     AVX-512 3x3 tiles, C a multiple of 16, stream straight from their registers).
// The passes in that form:
//   forward             y[oy, ox] = b + sum_taps x[oy*sh - pt + ky*dh, ox*sw - pl + kx*dw] * w
//   backward data, s=1  the same gather over dy with the kernel flipped and the pads
//                       mirrored (pt' = (KH-1)*dh - pt; may be negative, which the row
//                       set-up handles like any out-of-range row)
//   backward weights    (depthwise_weights.cpp) per row and block, KH*KW (+1 for db)
//                       register accumulators over the row's pixels (over groups of rows
//                       on small images, C <= 32), added into per-thread double partials,
//                       which are summed in thread order (deterministic for a given
//                       thread count).
// Everything else (M > 1, backward data with stride > 1, kernels over kMaxTaps taps) takes
// the generic loops at the bottom of each file: correct for any geometry, vectorised over
// channels, but reading and writing through L1 per tap.
// Measured (shared 2-core EPYC Zen 5, N=32 56x56x64 3x3 'same', best of 15, ms; fwd / bwd
// data / bwd weights): 1 thread 7.1 / 5.8 / 8.4 -> 2.8 / 2.7 / 3.2, 2 threads 3.5 / 2.8 / 3.7
// -> 1.4 / 1.3 / 1.6 (timings on that VM swing by ~1.5x with the host's memory traffic).
// The tiles (benchmarks/bench_depthwise_ab.py, MobileNet's nine layers + relu6, 1 thread,
// ms): batch 1 in L3 0.61 -> 0.51, in memory 1.55 -> 1.25; batch 32 36.6 -> 25.4.
// OpenMP: each thread takes a contiguous range of lines (image, output row), so no two
// threads write the same memory; tensors under kParallelGrain elements run on one thread.
#include <omp.h>

#include <cstring>
#include <vector>

#include "cpu/act_register.h"
#include "cpu/depthwise_flat.h"
#include "cpu/depthwise_flat8.h"
#include "cpu/depthwise_gather.h"
#include "cpu/depthwise_narrow.h"
#include "cpu/depthwise_reg_tiles.h"
#include "cpu/depthwise_regtile.h"
#include "cpu/im2col.h"
#include "cpu/item_team.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

// The activations applied in registers before the store (others on the row after). Below
// AVX-512 only the identity: the 16-lane compare-and-select of relu6 made the avx2 and SSE
// stride-2 passes 1.4x slower than the separate pass over the row (activation.cpp).
inline bool act_in_register(Activation a) {
#if defined(__AVX512F__)
  return a == Activation::Linear || a == Activation::Relu || a == Activation::Relu6;
#else
  return a == Activation::Linear;
#endif
}

// One output row, channels [c0, c0 + n), of a gather pass, act A applied before the store.
// K = 3 pins the 9 weight vectors in registers; K = 0 is any kernel size with the weights
// read from L1.
template <int K, bool Full, Activation A>
void gather_block(const Gather& q, const float* const* rows, const float* w,
                  const float* bias, int64_t c0, int n, float* out) {
  const int64_t kh = K ? K : q.kh, kw = K ? K : q.kw, C = q.c;
  const int64_t xs = q.sw * C, ts = q.dw * C;  // input step per output column, per tap
  f32x16 wv[K ? K * K : 1];
  if constexpr (K > 0)
    for (int i = 0; i < K * K; ++i) wv[i] = ld<Full>(w + i * C + c0, n);
  auto wt = [&](int64_t i) {
    if constexpr (K > 0) return wv[i];
    else return ld<Full>(w + i * C + c0, n);
  };
  const f32x16 b = bias ? ld<Full>(bias + c0, n) : f32x16{};
  const int64_t base = c0 - q.pl * C;  // offset of column 0's first tap (ox = 0, kx = 0)
  int64_t ox = q.lo;
  if constexpr (K == 3) {
    if (q.sw == 1 && q.dw == 1 && ox < q.hi) {
      // Unit stride and dilation: output column ox+1 reads the columns of ox shifted by one,
      // so each kernel row keeps a 3-column window in registers and loads one new vector
      // per output: 3 loads instead of 9 (and 3 cache-line splits when x is not 64-byte
      // aligned, as NumPy arrays need not be: that cost ~20%).
      f32x16 a0[3], a1[3];
      for (int ky = 0; ky < 3; ++ky) {
        a0[ky] = ld<Full>(rows[ky] + base + ox * C, n);
        a1[ky] = ld<Full>(rows[ky] + base + (ox + 1) * C, n);
      }
      for (; ox < q.hi; ++ox) {
        f32x16 acc[3] = {b, f32x16{}, f32x16{}};
        for (int ky = 0; ky < 3; ++ky) {
          const f32x16 a2 = ld<Full>(rows[ky] + base + (ox + 2) * C, n);
          acc[ky] += a0[ky] * wv[3 * ky] + a1[ky] * wv[3 * ky + 1] + a2 * wv[3 * ky + 2];
          a0[ky] = a1[ky];
          a1[ky] = a2;
        }
        st<Full>(out + ox * C + c0, act16<A>(acc[0] + acc[1] + acc[2]), n);
      }
    }
  }
  for (; ox < q.hi; ++ox) {
    // One accumulator per kernel row (up to 3): a single chain of KH*KW dependent FMAs
    // would be latency-bound.
    f32x16 acc[3] = {b, f32x16{}, f32x16{}};
    for (int64_t ky = 0; ky < kh; ++ky) {
      const float* p = rows[ky] + (base + ox * xs);
      for (int64_t kx = 0; kx < kw; ++kx) acc[ky % 3] += ld<Full>(p + kx * ts, n) * wt(ky * kw + kx);
    }
    st<Full>(out + ox * C + c0, act16<A>(acc[0] + acc[1] + acc[2]), n);
  }
  // Columns whose window overlaps the left or right padding.
  auto edge = [&](int64_t ox) {
    f32x16 acc = b;
    for (int64_t kx = 0; kx < kw; ++kx) {
      const int64_t ix = ox * q.sw - q.pl + kx * q.dw;
      if (ix < 0 || ix >= q.iw) continue;
      for (int64_t ky = 0; ky < kh; ++ky)
        acc += ld<Full>(rows[ky] + ix * C + c0, n) * wt(ky * kw + kx);
    }
    st<Full>(out + ox * C + c0, act16<A>(acc), n);
  };
  for (int64_t ox = 0; ox < q.lo; ++ox) edge(ox);
  for (int64_t ox = q.hi; ox < q.ow; ++ox) edge(ox);
}

// Output columns [ox, ox + P) of one row, channels [c0, c0 + n), 3x3 kernel, column stride
// SW, no dilation. Checked: some of the columns' taps fall in the left/right padding and
// are skipped (they add 0); otherwise every tap is inside the row. Each kernel row's input
// columns are loaded once for the P outputs; three accumulators per output (one per kernel
// row) make 3 * P independent FMA chains.
template <int SW, int P, bool Checked, bool Full, Activation A, bool NT>
inline void tile3(const Gather& q, const float* const* rows, const float* w, const float* bias,
                  int64_t c0, int n, int64_t ox, float* out) {
  constexpr int kCols = (P - 1) * SW + 3;
  const int64_t C = q.c, ix0 = ox * SW - q.pl;  // input column of the tile's first tap
  f32x16 wv[9];
  for (int i = 0; i < 9; ++i) wv[i] = ld<Full>(w + i * C + c0, n);
  const f32x16 b = bias ? ld<Full>(bias + c0, n) : f32x16{};
  f32x16 acc[P][3];
  for (int p = 0; p < P; ++p) acc[p][0] = b, acc[p][1] = acc[p][2] = f32x16{};
  for (int ky = 0; ky < 3; ++ky) {
    const float* r = rows[ky] + c0 + ix0 * C;
    f32x16 col[kCols];
    for (int j = 0; j < kCols; ++j)
      col[j] = !Checked || (ix0 + j >= 0 && ix0 + j < q.iw) ? ld<Full>(r + j * C, n) : f32x16{};
    for (int p = 0; p < P; ++p)
      for (int kx = 0; kx < 3; ++kx) acc[p][ky] += col[p * SW + kx] * wv[3 * ky + kx];
  }
  for (int p = 0; p < P; ++p) {
    const f32x16 v = act16<A>(acc[p][0] + acc[p][1] + acc[p][2]);
#if defined(__AVX512F__)
    if constexpr (NT && Full) {
      _mm512_stream_ps(out + (ox + p) * C + c0, (__m512)v);
      continue;
    }
#endif
    st<Full>(out + (ox + p) * C + c0, v, n);
  }
}

// Output columns of a tile (tile3).
#if defined(__AVX512F__)
constexpr int kTile = 4;  // 12 accumulators + 9 weights: 21 of the 32 zmm registers
#else
constexpr int kTile = 2;  // f32x16 is two ymm registers here
#endif

// Columns [ox, ox + P) of one row, every channel block in turn, each block requesting its
// share of the next row's new input when that comes from memory (pf.far; the row's work is
// q.ow * nb units, P per block; one request burst per tile instead cost 10-50% at batch 64,
// RowPrefetch). Inputs in cache get no requests: with the previous layer's output in L2
// (batch 1 in MobileNet's plan) requests into L1 made the 14x14x512 steps ~18% slower (0.052
// -> 0.061 ms). NT: full blocks go out by non-temporal stores (out 64-byte aligned, C a
// multiple of 16).
template <int SW, int P, bool Checked, Activation A, bool NT>
void tile3_all(const Gather& q, const float* const* rows, const float* w, const float* bias,
               const RowPrefetch& pf, int64_t ox, float* out) {
  const int64_t nb = (q.c - q.head + kLanes - 1) / kLanes + (q.head > 0), units = q.ow * nb;
  int64_t c0 = 0, u = ox * nb;
  if (q.head > 0) {  // the channels before the input's first 64-byte line (Gather::head)
    if (pf.far) pf.slice(u, u + P, units);
    tile3<SW, P, Checked, false, A, false>(q, rows, w, bias, 0, (int)q.head, ox, out);
    c0 = q.head, u += P;
  }
  for (; c0 + kLanes <= q.c; c0 += kLanes, u += P) {
    if (pf.far) pf.slice(u, u + P, units);
    tile3<SW, P, Checked, true, A, NT>(q, rows, w, bias, c0, kLanes, ox, out);
  }
  if (c0 < q.c) {
    if (pf.far) pf.slice(u, u + P, units);
    tile3<SW, P, Checked, false, A, NT>(q, rows, w, bias, c0, (int)(q.c - c0), ox, out);
  }
}

// One output row of a 3x3, stride-SW, undilated pass in tiles of kTile columns (the last
// one narrower), each tile all channel blocks in turn: the loads walk along memory (a tile
// reads (kTile - 1) * SW + 3 columns of C floats per kernel row). Walking one block's 16
// channels along the whole row instead (gather_block's sliding window) steps C*4 bytes per
// column: for C >= 256 that revisits 4 or fewer of L1's 64 sets, and MobileNet's
// 14x14x512 layer ran at 2/3 of the per-byte speed of its 112x112x32.
//
// next_out (or null): the next output row, requested into L2 (prefetcht1) a tile's share at a
// time while this row runs. In an inference plan (and a training forward) the output is a
// block the output pool hands back (bindings' output_pool.h), last written a whole network
// ago and out of cache: each first store to a line waited for its read. Paired in one
// process, 1 thread, CPU time, forward + relu6 with the output a pool block out of cache
// (ab_two_builds.py dwf2/dwf1 ring), after / before: N=1 112x112x64 s2 0.78, 56x56x128 s2
// 0.73, 56x56x128 s1 0.70, 28x28x256 s2 1.02 (in L2 anyway); with the output in cache
// (the block of two calls ago) 1.00-1.03. prefetchw into L1 instead: 0.97-1.10 (no gain).
// Non-temporal stores (stream threshold at 400 KB) instead: the depthwise steps of
// MobileNet's batch-1 plan 0.200 -> 0.133 ms (conv_dw_2), but the pointwise conv after
// each then read its input from memory (conv_pw_2 0.512 -> 0.595): the plan 1.01x slower.
template <int SW, Activation A, bool NT = false>
void tiled_row3(const Gather& q, const float* const* rows, const float* w, const float* bias,
                const RowPrefetch& pf, float* out, float* next_out = nullptr) {
  for (int64_t ox = 0; ox < q.ow; ox += kTile) {
    const int p = (int)std::min<int64_t>(kTile, q.ow - ox);
    if (next_out) prefetch_bytes<true>(next_out + ox * q.c, p * q.c * (int64_t)sizeof(float));
    const bool checked = ox < q.lo || ox + p > q.hi;
    auto run = [&](auto pc) {
      constexpr int Pc = decltype(pc)::value;
      if (checked) tile3_all<SW, Pc, true, A, NT>(q, rows, w, bias, pf, ox, out);
      else tile3_all<SW, Pc, false, A, NT>(q, rows, w, bias, pf, ox, out);
    };
    switch (p) {
      case 1: run(std::integral_constant<int, 1>()); break;
#if defined(__AVX512F__)
      case 2: run(std::integral_constant<int, 2>()); break;
      case 3: run(std::integral_constant<int, 3>()); break;
#endif
      default: run(std::integral_constant<int, kTile>()); break;
    }
  }
}

// Which 3x3 strides take the tiles at this level. Measured on MobileNet's nine layers at
// batch 1, one thread (ms, block walk -> tiled): avx2 stride 1 3.2 -> 1.0 (the 16-lane
// sliding window of gather_block spills there), stride 2 no gain; baseline (SSE) stride 1
// 1.38 -> 1.26, stride 2 0.30 -> 0.37, so stride 2 keeps the block walk below AVX-512.
#if defined(__AVX512F__)
constexpr bool kTiledS1 = true, kTiledS2 = true;
#else
constexpr bool kTiledS1 = true, kTiledS2 = false;
#endif
// Whether the tiles request the next output row ahead (tiled_row3): measured at AVX-512 only.
#if defined(__AVX512F__)
constexpr bool kPrefetchOut = true;
#else
constexpr bool kPrefetchOut = false;
#endif
// Whether streamed outputs may be stored from the tiles' registers (gather_pass): AVX-512,
// where both strides take the tiles (elsewhere stream_copy is a memcpy anyway).
#if defined(__AVX512F__)
constexpr bool kStreamTiles = true;
#else
constexpr bool kStreamTiles = false;
#endif

// One output row of a gather pass: 3x3 kernels with stride 1 or 2 in tiles (tiled_row3,
// where kTiledS1/S2 say), the others block by block along the row (gather_block).
template <int K, Activation A>
void gather_row(const Gather& q, const float* const* rows, const float* w, const float* bias,
                const RowPrefetch& pf, float* out, float* next_out) {
  if constexpr (K == 3) {
#if !defined(__AVX512F__)
    // Below AVX-512: register tiles of the level's own vectors (depthwise_regtile.h).
    // Stride 2 at avx2 only, C >= 64: at baseline (4-lane registers) the tiles were 1.0-1.46x
    // slower than the block walk on MobileNet's stride-2 steps (1.24 at 112x112x32, 1.46 at
    // x64; paired, ab_dw_copies.py dwf2); at avx2 0.62-0.90 from C = 64, but N=1 112x112x32
    // 0.97, 1.19, 1.03, 0.99 and x16 1.03, 0.91 in four and two runs: no clear gain there.
    if constexpr (A == Activation::Linear) {
      if (q.dw == 1 && q.sw == 1) return regtile_row3<1>(q, rows, w, bias, pf, out);
      if (kRegLanes == 8 && q.dw == 1 && q.sw == 2 && q.c >= 64) return regtile_row3<2>(q, rows, w, bias, pf, out);
    }
#endif
    if (kTiledS1 && q.dw == 1 && q.sw == 1) return tiled_row3<1, A>(q, rows, w, bias, pf, out, next_out);
    if (kTiledS2 && q.dw == 1 && q.sw == 2) return tiled_row3<2, A>(q, rows, w, bias, pf, out, next_out);
  }
  pf.all();
  int64_t c0 = 0;
  for (; c0 + kLanes <= q.c; c0 += kLanes) gather_block<K, true, A>(q, rows, w, bias, c0, kLanes, out);
  if (c0 < q.c) gather_block<K, false, A>(q, rows, w, bias, c0, (int)(q.c - c0), out);
}

// Calls fn(std::integral_constant<Activation, a>) for a in {Linear, Relu, Relu6} (the
// activations fused into the stores); any other runs as Linear, then a pass on the row.
template <typename Fn>
void with_register_act(Activation a, Fn fn) {
  if (!act_in_register(a)) return fn(std::integral_constant<Activation, Activation::Linear>());
  switch (a) {
    case Activation::Relu: return fn(std::integral_constant<Activation, Activation::Relu>());
    case Activation::Relu6: return fn(std::integral_constant<Activation, Activation::Relu6>());
    default: return fn(std::integral_constant<Activation, Activation::Linear>());
  }
}

// out (n images of q.oh x q.ow x c) = act(the gather pass of `in` (n images of q.ih x q.iw x c)).
// Relu and relu6 run in registers before the store; other activations on each row while it
// is in L1 (a separate pass over y after the kernel cost MobileNet's 112x112x32 depthwise +
// ReLU6 at batch 1 a third of its time).
void gather_pass(const Gather& q, int64_t n, const float* in, const float* w, const float* bias,
                 float* out, Activation act = Activation::Linear) {
  const int64_t lines = n * q.oh, row_floats = q.ow * q.c;
  const std::vector<float> zeros((size_t)(q.iw * q.c), 0.f);
  const bool stream = stream_output(lines * row_floats * (int64_t)sizeof(float));
  const bool k3 = q.kh == 3 && q.kw == 3;
  // The input rows ahead are requested into L2 (RowPrefetch far) for inputs that are
  // streamed from memory, and also for inputs of 4 MiB and more with C >= 64 below that: on
  // the shared machine those live in L3 at best (other processes' data evict them), and the
  // hardware prefetchers do not keep up with the three row streams. Paired in one process
  // (benchmarks/ab_two_builds.py, 1 thread, CPU time, load 5-6), forward ms: N=256 7x7x128
  // 1.70 -> 1.35, N=32 14x14x256 1.59 -> 1.35, N=1 112x112x96 0.96 -> 0.81, N=256 7x7x256
  // 3.35 -> 2.85; backward data N=32 14x14x256 1.67 -> 1.39. At C = 24 and 32 (N=256
  // 14x14, 4.8 and 6.4 MB) 1.03-1.08x slower in both runs, at 1.6-3.2 MB 1.0-1.07x: those
  // keep the hardware prefetchers alone.
  const int64_t in_bytes = n * q.ih * q.iw * q.c * (int64_t)sizeof(float);
  const bool far = stream_output(in_bytes) || (in_bytes >= (int64_t{4} << 20) && q.c >= 64);
  // Streamed tiles store straight from the registers when every pixel's channels start on
  // a 64-byte line, which saves the row buffer's store and reload: MobileNet's streamed
  // depthwise layers at batch 64, 1 thread, ms (requests into L2 per block either way):
  // 56x56x128 s1 13.2 -> 11.6, 28x28x256 s1 6.8 -> 4.9, 14x14x512 s1 3.9 -> 3.2.
  const bool direct_nt = kStreamTiles && stream && k3 && q.dw == 1 && (q.sw == 1 || q.sw == 2) &&
                         q.c % kLanes == 0 && ((uintptr_t)out & 63) == 0 && act_in_register(act);
  // AVX-512, C a multiple of 16: every input pixel starts at the same place in a 64-byte
  // line; where that is not the line's start (NumPy's large arrays start 16 bytes past it;
  // fastconv's outputs are aligned), the tiles take the channels up to the line first,
  // masked, so that the loads of the other blocks (3 * (P + 2) a tile) do not each split
  // two lines (the stores split instead, one an output). Same build, same process, x at +16
  // bytes against x aligned: the forward 1.16-1.38x slower. Paired (ab_two_builds.py,
  // 1 thread, CPU time), after / before, forward and backward data: C = 512 N=1 28x28 0.60,
  // 0.69, 0.76, 0.67; N=1 56x56 0.82, 0.80, 0.88, 0.74, 0.78, 0.87; N=1 14x14 0.73; N=32
  // 14x14 0.91; N=32 7x7 1.04, 1.17, 0.95 and 1.22, 1.05 (its min 0.90-1.02); C = 256 0.85-1.08
  // (mean 0.96); C = 96, 128 0.96-1.01; C = 32 1.13 (the masked head block is a third of
  // the blocks there): hence C >= 256. The streamed tiles' direct stores keep C's blocks.
  Gather qa = q;
#if defined(__AVX512F__)
  if (k3 && !direct_nt && q.dw == 1 && q.c >= 256 && q.c % kLanes == 0 && ((uintptr_t)in & 3) == 0)
    qa.head = (int64_t)((64 - ((uintptr_t)in & 63)) & 63) / 4;
#endif
  // Whether the tiles request the next output row (tiled_row3): not for C >= 512 under 1 MiB
  // (MobileNet's 14x14x512 and 7x7x1024 layers): there the requests gained nothing with the
  // output out of cache (0.97-1.02 against none), and without them 0.97-0.99 against
  // requesting (paired in one process). In the plan those steps read 1.02-1.17x before's
  // either way (RESULTS.md, helper Z2 stop 35).
  const bool request_out = kPrefetchOut && !stream &&
                           (q.c < 512 || lines * row_floats * (int64_t)sizeof(float) >= (int64_t{1} << 20));
  // 3x3 stride 1 with few channels, in cache: each block's sliding window along the row
  // (depthwise_narrow.h).
  const bool narrow = k3 && q.sh == 1 && q.sw == 1 && q.dh == 1 && q.dw == 1 && narrow_applies(q.c, q.iw) &&
                      !stream && !far;
  // Output lines [l0, l1).
  auto range = [&](int64_t l0, int64_t l1) {
    float* buf = stream && !direct_nt ? scratch(row_floats) : nullptr;
    with_register_act(act, [&](auto a) {
      constexpr Activation A = decltype(a)::value;
      if (narrow) {
        return narrow_lines<A>(q, in, zeros.data(), w, bias, l0, l1, out, [&](int64_t l) {
          if (!act_in_register(act)) activation_inplace(row_floats, out + l * row_floats, act);
        });
      }
      if (kStreamTiles && direct_nt) {
        return walk_lines(q, in, zeros.data(), l0, l1, [&](int64_t l, const float* const* rows, const RowPrefetch& pf) {
          if (q.sw == 1) tiled_row3<1, A, true>(q, rows, w, bias, pf, out + l * row_floats);
          else tiled_row3<2, A, true>(q, rows, w, bias, pf, out + l * row_floats);
        }, far);
      }
      walk_lines(q, in, zeros.data(), l0, l1, [&](int64_t l, const float* const* rows, const RowPrefetch& pf) {
        float* dst = stream ? buf : out + l * row_floats;
        float* next = request_out && l + 1 < l1 ? dst + row_floats : nullptr;  // tiled_row3
        if (k3) gather_row<3, A>(qa, rows, w, bias, pf, dst, next);
        else gather_row<0, A>(q, rows, w, bias, pf, dst, next);
        if (!act_in_register(act)) activation_inplace(row_floats, dst, act);
        if (stream) stream_copy(out + l * row_floats, dst, row_floats);
      }, far);
    });
    if (stream) stream_fence();
  };
  split_lines(n, lines, lines * row_floats >= kParallelGrain, range);  // scratch() may throw
}

}  // namespace

// ---- generic loops (any M, stride, dilation, pads, kernel size) ----

namespace {

void generic_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                     float* y) {
  const Window2d& v = g.win;
  const int64_t m = g.cout_g, oc = g.oc;
#pragma omp parallel if (g.output_size() >= kParallelGrain)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t l = 0; l < g.n * g.oh; ++l) {
      const int64_t n = l / g.oh, oy = l % g.oh;
      float* yl = y + l * g.ow * oc;
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        if (b) std::memcpy(yl + ox * oc, b, sizeof(float) * oc);
        else std::memset(yl + ox * oc, 0, sizeof(float) * oc);
      }
      for (int64_t ky = 0; ky < v.kh; ++ky) {
        const int64_t iy = oy * v.sh - v.pt + ky * v.dh;
        if (iy < 0 || iy >= g.h) continue;
        const float* xrow = x + (n * g.h + iy) * g.w * g.c;
        for (int64_t ox = 0; ox < g.ow; ++ox)
          for (int64_t kx = 0; kx < v.kw; ++kx) {
            const int64_t ix = ox * v.sw - v.pl + kx * v.dw;
            if (ix < 0 || ix >= g.w) continue;
            tap_fma(g.c, m, xrow + ix * g.c, w + (ky * v.kw + kx) * oc, yl + ox * oc);
          }
      }
    }
  }
}

void generic_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Window2d& v = g.win;
  const int64_t m = g.cout_g, oc = g.oc;
  // Gather per input line: input row iy receives from output row oy through kernel row ky
  // when oy*sh - pt + ky*dh == iy.
#pragma omp parallel if (g.input_size() >= kParallelGrain)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t l = 0; l < g.n * g.h; ++l) {
      const int64_t n = l / g.h, iy = l % g.h;
      float* dxl = dx + l * g.w * g.c;
      std::memset(dxl, 0, sizeof(float) * g.w * g.c);
      for (int64_t ky = 0; ky < v.kh; ++ky) {
        const int64_t t = iy + v.pt - ky * v.dh;
        if (t < 0 || t % v.sh != 0 || t / v.sh >= g.oh) continue;
        const float* dyrow = dy + (n * g.oh + t / v.sh) * g.ow * oc;
        for (int64_t ox = 0; ox < g.ow; ++ox)
          for (int64_t kx = 0; kx < v.kw; ++kx) {
            const int64_t ix = ox * v.sw - v.pl + kx * v.dw;
            if (ix < 0 || ix >= g.w) continue;
            const float* d = dyrow + ox * oc;
            const float* wk = w + (ky * v.kw + kx) * oc;
            float* out = dxl + ix * g.c;
            if (m == 1) {
#pragma omp simd
              for (int64_t c = 0; c < g.c; ++c) out[c] += d[c] * wk[c];
            } else {
              for (int64_t c = 0; c < g.c; ++c) {
                float s = 0.f;
                for (int64_t j = 0; j < m; ++j) s += d[c * m + j] * wk[c * m + j];
                out[c] += s;
              }
            }
          }
      }
    }
  }
}


}  // namespace

// ---- entry points ----

void depthwise_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act) {
  // C < 16 'same': the flat rows, or from 6 channels the narrow rows (depthwise_narrow.h).
  const int64_t bytes = g.output_size() * (int64_t)sizeof(float);
  // avx2, C <= 8 'same': the flat rows in 8-lane vectors (depthwise_flat8.cpp).
  if (depthwise_flat8_applies(g)) return depthwise_flat8_forward(g, x, w, b, y, act);
  if (depthwise_flat_applies(g) && !narrow_over_flat(g.c, bytes))
    return depthwise_flat_forward(g, x, w, b, y, act);
  if (!fast_m1(g)) {
    generic_forward(g, x, w, b, y);
    return activation_inplace_parallel(g.output_size(), y, act);
  }
#if !defined(__AVX512F__)
  // 3x3 stride 1 or 2 in cache below AVX-512: register-width tiles (depthwise_reg_tiles.cpp).
  if (depthwise_reg_tiles_applies(g)) return depthwise_reg_tiles_forward(g, x, w, b, y, act);
#endif
  gather_pass(forward_gather(g), g.n, x, w, b, y, act);
}

void depthwise_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Window2d& v = g.win;
  if (!fast_m1(g) || v.sh != 1 || v.sw != 1) return generic_backward_data(g, dy, w, dx);
  // Stride 1: dx[iy] = sum_ky dy[iy + pt - ky*dh] * w[ky] is a forward gather over dy with
  // ky' = KH-1-ky and top pad (KH-1)*dh - pt (likewise for columns).
  const int64_t taps = v.kh * v.kw;
  std::vector<float> flipped((size_t)(taps * g.c));
  for (int64_t i = 0; i < taps; ++i)
    std::memcpy(flipped.data() + (taps - 1 - i) * g.c, w + i * g.c, sizeof(float) * g.c);
  // 'same' 3x3 (pads of 1 each side): the mirrored pads are 1 too, so the flat forward serves.
  if (depthwise_flat8_applies(g)) return depthwise_flat8_forward(g, dy, flipped.data(), nullptr, dx, Activation::Linear);
  if (depthwise_flat_applies(g) && !narrow_over_flat(g.c, g.input_size() * (int64_t)sizeof(float)))
    return depthwise_flat_forward(g, dy, flipped.data(), nullptr, dx, Activation::Linear);
  const Gather q = make_gather(g.oh, g.ow, g.h, g.w, g.c, v, (v.kh - 1) * v.dh - v.pt,
                               (v.kw - 1) * v.dw - v.pl);
  gather_pass(q, g.n, dy, flipped.data(), nullptr, dx);
}
}  // namespace fastconv::cpu::detail
