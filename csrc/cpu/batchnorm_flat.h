// Register-blocked walk of an (m, c) array for batch norm's passes (batchnorm.cpp).
//
// Why: the row-group runs of parallel.h (for_each_run, column_reduce) keep the per-channel
// parameters and the float accumulators as tiled arrays in memory, so every vector of x cost
// 4 loads + 2 stores in the statistics pass (x, pivot, s1 and s2 read and written back) and
// 4 loads + 1 store in the normalise pass: L1-port bound, not bandwidth bound. Batch norm
// train forward (1, 112, 112, 128) ran at 0.27 of copy speed and (256, 28, 28, 6) at 0.27
// (sweep 2026-12-07d: 0.14-0.16; 1 thread, Zen 4). Here both live in registers:
//
// The array is walked as `supers` super-rows of `period` floats each (period = whole rows and
// a whole number of 16-float vectors: lcm(c, 16), doubled while it stays <= 128 floats so a
// block holds several independent vectors), plus `tail` rows left over (< rows_per). Position
// q of a super-row belongs to channel q % c, so the parameters are tiled once per period and
// a column block of W registers holds its parameters and accumulators across all super-rows.
// A period wider than a pass's block (blocks of at most 128 floats, the dx pass's of 96 at
// AVX-512; 32 and 24 at avx2) is split in column blocks, each walked down a short chunk of
// super-rows (kChunkFloats) or at most 64 super-rows (reduce). Periods past 128 floats keep
// the runs (in_registers), but for the forward of an x in cache (forward_in_registers); the
// backward keeps them from 64 channels (batchnorm.cpp), the baseline level everywhere.
// Paired against the runs (1 thread, Zen 4): forward 0.45-0.7x the time for c <= 128,
// backward 0.6-0.85x for c < 64 (benchmarks/RESULTS.md, helper P stop 35).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/simd.h"

namespace fastconv::cpu::bn_flat {

constexpr int64_t kMaxPeriodDoubling = 128;  // floats: 8 zmm registers per parameter

struct Flat {
  int64_t c, period, rows_per, supers, tail_row0;
};

inline Flat layout(int64_t m, int64_t c) {
  int64_t p = c;
  while (p % 16 != 0) p += c;  // lcm(c, 16): at most 16 c
  while (2 * p <= kMaxPeriodDoubling) p *= 2;
  const int64_t rows_per = p / c, supers = m / rows_per;
  return {c, p, rows_per, supers, supers * rows_per};
}

// Whether the passes walk super-rows with their parameters in registers (batchnorm.cpp): for
// wider periods (c = 256, 512, odd c > 128) a column block's walk down the super-rows jumps
// a period per step, which the prefetchers followed badly, and its stores alias the next
// loads 4 KB apart: (1, 56, 56, 512) backward 1.3 -> 2.3 ms, with 1 to 16 super-rows per
// block walk 1.7 -> 3.4 (paired, 1 thread); the row-major runs of parallel.h stay there.
// Not at the baseline level (SSE2: 4-float registers, 16 of them, so blocks of 12 floats and
// 11 blocks a period of 128): there the walk was slower than the runs (paired, new / old:
// forward (1, 112, 112, 128) 1.22, (256, 28, 28, 6) 1.20, backward (256, 28, 28, 6) 1.56).
constexpr bool kRegisterWalk = kRegLanes >= 8;
inline bool in_registers(const Flat& f) { return kRegisterWalk && f.period <= kMaxPeriodDoubling; }

// The forward also walks wider periods in registers while x is under half the streaming
// threshold (simd.h stream_output; 8 MiB by default: it sits in L2/L3): its statistics pass
// only loads, and its write pass goes row by row there (write_chunks). Paired with the runs
// (1 thread, rounds of 21 calls, new / old): (1, 56, 56, 512) 0.96 / 0.91 / 0.80 / 1.06 /
// 0.73, (32, 14, 14, 256) 0.74 / 0.77 / 0.67 / 0.59 / 0.68, (32, 7, 7, 512) 0.80 / 0.79 /
// 0.68 / 0.71 / 0.78 (x 6.4 and 3.2 MB). At 12.8 MB it was a toss-up ((1, 112, 112, 256)
// 0.87 / 0.79 then 1.08 / 1.05 / 1.05) and from DRAM it lost ((256, 14, 14, 256) 1.60 / 1.58).
inline bool forward_in_registers(const Flat& f, int64_t m) {
  return in_registers(f) || (kRegisterWalk && !stream_output(2 * m * f.c * (int64_t)sizeof(float)));
}

// fn(std::integral_constant<int, W>) with the compile-time W == w (1 <= w <= MaxW).
template <int MaxW, typename Fn>
inline void with_width(int w, Fn&& fn) {
  if constexpr (MaxW > 1) {
    if (w < MaxW) return with_width<MaxW - 1>(w, fn);
  }
  fn(std::integral_constant<int, MaxW>{});
}

// The widest column block (in f32xR registers) a pass with `params` per-lane vectors
// (parameters plus accumulators) keeps in registers, leaving a few for temporaries:
// AVX-512 (32 registers) 3 -> 8, 4 -> 6, 5 -> 5; AVX2 / SSE2 (16) 3 -> 4, 4 -> 3, 5 -> 2.
constexpr int max_width(int params) { return (kVectorRegisters - 6) / params; }

// fn(col, W) for the column blocks of a period: W registers of kRegLanes floats from col.
template <int MaxW, typename Fn>
inline void for_blocks(int64_t period, Fn&& fn) {
  for (int64_t col = 0; col < period; col += MaxW * kRegLanes) {
    const int w = (int)std::min<int64_t>(MaxW, (period - col) / kRegLanes);
    with_width<MaxW>(w, [&](auto W) { fn(col, W); });
  }
}

// body(t, nt, s0, s1): super-rows [s0, s1) of thread t of nt (contiguous shares; the tail
// rows belong to thread nt - 1), on one thread below kParallelGrain elements (parallel.h).
template <typename Body>
inline void on_team(const Flat& f, int64_t m, Body&& body) {
  ExceptionCaptor errors;
  parallel_region(m * f.c >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    errors.run([&] { body(t, nt, f.supers * t / nt, f.supers * (t + 1) / nt); });
  });
  errors.rethrow();
}

// out[k * c + j] (k < K, j < c): per-channel double sums of K quantities. block(s0, rows, col,
// W, tot) adds the float sums of its column block over super-rows [s0, s0 + rows) (rows <=
// kReduceRows: each float lane sums at most 64 terms, parallel.h's bound) into tot[k *
// period + col ..); tail(tot) adds the tail rows' terms at their positions (row i of the tail
// at i * c). Partials per thread, summed in thread order: deterministic per thread count.
template <int K, int MaxW, typename BlockFn, typename TailFn>
void reduce(const Flat& f, int64_t m, double* out, BlockFn block, TailFn tail) {
  const int64_t width = K * f.period;
  const int max_threads = omp_get_max_threads();
  std::vector<double> part((size_t)max_threads * width, 0.0);
  on_team(f, m, [&](int t, int nt, int64_t s0, int64_t s1) {
    double* tot = part.data() + (int64_t)t * width;
    for (int64_t b0 = s0; b0 < s1; b0 += kReduceRows) {
      const int64_t rows = std::min<int64_t>(kReduceRows, s1 - b0);
      for_blocks<MaxW>(f.period, [&](int64_t col, auto W) { block(b0, rows, col, W, tot); });
    }
    if (t == nt - 1) tail(tot);
  });
  for (int64_t j = 0; j < K * f.c; ++j) out[j] = 0.0;
  for (int t = 0; t < max_threads; ++t)
    for (int k = 0; k < K; ++k)
      for (int64_t q = 0; q < f.period; ++q)
        out[k * f.c + q % f.c] += part[(size_t)(t * width + k * f.period + q)];
}

// Adds the kRegLanes lanes of each of W registers to tot[0 .. W * kRegLanes).
template <int W>
inline void add_lanes(const f32xR (&a)[W], double* tot) {
  for (int v = 0; v < W; ++v)
    for (int l = 0; l < kRegLanes; ++l) tot[v * kRegLanes + l] += (double)a[v][l];
}

// Floats per chunk of write_chunks (2 KB; a period wider than in_registers goes row by row:
// two rows of c = 256 a chunk made the forward 1.1-1.4x the runs' time): a period of two column blocks (the backward's dx
// pass at c = 1, 16, 32, 128: 4 parameters a block, 96 floats at AVX-512) walks each block
// down the chunk's super-rows, and over longer chunks its stores met the next rows' loads
// 4 KB apart and the walk strayed from sequential. Backward, paired with the old runs, 1
// thread, ratio new / old for chunks of 2048 / 1024 / 512 / 128 floats: (1, 112, 112, 128)
// 1.11 / 0.81 / 0.84 / 0.94, (256, 14, 14, 128) (streamed) 1.18 / 1.10 / 0.86 / 0.79,
// (256, 56, 56, 1) 0.79 / 0.64 / 0.70 / 0.90, (32, 28, 28, 16) 0.74 / 0.75 / 0.79 / 1.07.
constexpr int64_t kChunkFloats = 512;

// block(s0, rows, col, W, dst) over super-rows [s0, s0 + rows) for an (m, c) output `out`,
// then tail(dst_tail) for the tail rows; dst is out itself or, for outputs past the streaming
// threshold (simd.h stream_output), a scratch chunk streamed out after each call.
template <int MaxW, typename BlockFn, typename TailFn>
void write_chunks(const Flat& f, int64_t m, float* out, BlockFn block, TailFn tail) {
  const bool stream = stream_output(m * f.c * (int64_t)sizeof(float));
  const int64_t chunk = in_registers(f) ? std::max<int64_t>(1, kChunkFloats / f.period) : 1;
  on_team(f, m, [&](int t, int nt, int64_t s0, int64_t s1) {
    float* buf = stream ? scratch(chunk * f.period) : nullptr;
    for (int64_t b0 = s0; b0 < s1; b0 += chunk) {
      const int64_t rows = std::min<int64_t>(chunk, s1 - b0);
      float* dst = stream ? buf : out + b0 * f.period;
      for_blocks<MaxW>(f.period, [&](int64_t col, auto W) { block(b0, rows, col, W, dst); });
      if (stream) stream_copy(out + b0 * f.period, buf, rows * f.period);
    }
    if (stream) stream_fence();
    if (t == nt - 1) tail(out + f.tail_row0 * f.c);
  });
}

}  // namespace fastconv::cpu::bn_flat
