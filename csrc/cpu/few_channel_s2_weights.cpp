// The weight gradient of 3x3 stride-2 convs with C = 1 (few_channel_s2_c1*.cpp at AVX-512 and
// avx2, the planes at the baseline) and C = 3 channels in and out on the column-phase planes
// (few_channel_s2_blocks.h; s2_planes_shape in few_channel_s2_planes.cpp says which shapes
// come here, with the measurements):
//   dw[tap, ci, co] = sum over the block's p of plane[tap, ci][p + off] * dy[p, co],
// dy split to planes; register groups of (tap, ci) pairs x output channels (dw_group), the
// next block's rows of x prefetched while a block computes.
#include <omp.h>

#include <vector>

#include "cpu/few_channel_s2_blocks.h"
#include "cpu/few_channel_s2_c1.h"
#include "cpu/few_channel_s2_patch.h"
#include "cpu/few_channel_s2_planes.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"

namespace fastconv::cpu::detail {

namespace {

using namespace s2blocks;

inline double lane_sum(vec v) {
  double s = 0.0;
  for (int k = 0; k < L; ++k) s += v[k];
  return s;
}

// Register blocking of the weight pass: B output channels (dy planes) times A consecutive
// (tap, ci) pairs (index t*C + ci, planes q[]) held as A*B accumulators over a block's pixels,
// A + B loads per A*B multiply-adds: C = 3 takes 9 pairs x 3 channels (27 of 32 zmm, 12 loads
// per 27 multiply-adds); one channel at a time (27 pairs, 28 loads per 27) ran into the load
// ports. At 16 registers (avx2, baseline) at most 12 accumulators.
template <int C>
constexpr int dw_pairs() {  // the largest divisor of 9*C that fits: equal groups, no tail
  int a = (kVectorRegisters >= 32 ? 27 : 12) / C;
  while (9 * C % a) --a;
  return a;
}

// sums[a*C + b] += sum over the block's p of q[a][p] * d[b][p] (a < A, b < B), and, with DB,
// sums[9*C*C + b] += sum of d[b][p] (one channel: the bias sum in the same stream). The
// block's last partial vector is loaded with its lanes past the block zeroed in both
// factors (a plane's could be inf).
template <int C, int A, int B, bool DB, typename Prefetch>
void dw_group(const float* const* q, const float* const* d, int64_t total, vec* sums,
              Prefetch&& prefetch) {
  vec acc[A][B], adb[B];
#pragma GCC unroll 32
  for (int a = 0; a < A; ++a)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) acc[a][b] = sums[a * C + b];
#pragma GCC unroll 4
  for (int b = 0; b < B; ++b) adb[b] = DB ? sums[9 * C * C + b] : vec{};
  auto step = [&](int64_t p, auto&& ld) {
    vec dv[B];
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) dv[b] = ld(d[b] + p);
#pragma GCC unroll 32
    for (int a = 0; a < A; ++a) {
      const vec xv = ld(q[a] + p);
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[a][b] += xv * dv[b];
    }
    if constexpr (DB)
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) adb[b] += dv[b];
  };
  int64_t p = 0;
  for (; p + L <= total; p += L) {
    prefetch();
    step(p, [](const float* s) { return load(s); });
  }
  if (p < total) step(p, [n = total - p](const float* s) { return load_first(s, n); });
#pragma GCC unroll 32
  for (int a = 0; a < A; ++a)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) sums[a * C + b] = acc[a][b];
  if constexpr (DB)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) sums[9 * C * C + b] = adb[b];
}

// sums[9*C*C + b] += sum of d[b][p] over the block (the bias gradient where dw_group has no
// registers left for it).
inline void db_sums(const float* d, int64_t plane, int64_t total, int64_t c, vec* sums) {
  for (int64_t b = 0; b < c; ++b) {
    vec s = sums[b];
    int64_t p = 0;
    for (; p + L <= total; p += L) s += load(d + b * plane + p);
    if (p < total) s += load_first(d + b * plane + p, total - p);
    sums[b] = s;
  }
}

// The weight gradient: per block, dw_group over every (channel block, pair group); for C > 1
// the block's dy pixels (contiguous in NHWC) are first split into C planar rows
// (pixel_transpose::split_rows). The lanes are summed in float over a thread's blocks up to
// kFlushPixels pixels (4096 terms a lane), then into its doubles (C = 1: 10 lane sums per
// block were a fifth of a 7x7 image); the threads' doubles are added in thread order (static
// schedule: deterministic for a fixed thread count).
template <int C>
void backward_weights_c(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                        float* db) {
  constexpr int64_t kFlushPixels = int64_t(1) << 16;
  constexpr int B = C, A = dw_pairs<C>(), K = 9 * C * C + C;
  constexpr bool fold_db = A * B + 2 * B + 1 <= kVectorRegisters;
  const int threads = threads_for(g);
  std::vector<double> part((size_t)threads * K, 0.0);  // a thread without blocks adds 0
  auto flush = [&](const Planes<C>& pl) {
    double* mine = part.data() + omp_get_thread_num() * K;
    for (int k = 0; k < K && pl.pending; ++k) mine[k] += lane_sum(pl.sums[k]), pl.sums[k] = vec{};
    pl.pending = 0;
  };
  run_blocks<C>(g, x, threads, false, [&](Planes<C>& pl, int64_t off, int64_t total) {
    const int64_t plane = round_up(total, L);
    if (pl.sums.size() < (size_t)K) pl.sums.assign(K, vec{});
    const float* dp[C];
    if constexpr (C == 1) {
      dp[0] = dy + off;
    } else {  // bounded by the block: C * (rows*OW rounded up to L) floats
      if (pl.scratch.size() < (size_t)(C * plane)) pl.scratch.resize((size_t)(C * plane));
      float* s = pl.scratch.data();
      const float* src = dy + off * C;
      for (int64_t k = pixel_transpose::split_rows<C>(src, total, s, plane); k < total; ++k)
        for (int co = 0; co < C; ++co) s[co * plane + k] = src[k * C + co];
      for (int co = 0; co < C; ++co) dp[co] = s + co * plane;
    }
    const float* q[9 * C];
    for (int t = 0; t < 9; ++t)
      for (int ci = 0; ci < C; ++ci) q[t * C + ci] = pl.tap(t, ci);
    vec* sums = pl.sums.data();
    auto pf = pl.prefetch_over(9 * C / A * (C / B) * (total / L));
    auto prefetch = [&] { pf.step(); };
    for (int b0 = 0; b0 < C; b0 += B) {
      dw_group<C, A, B, fold_db>(q, dp + b0, total, sums + b0, prefetch);
      for (int a0 = A; a0 < 9 * C; a0 += A)
        dw_group<C, A, B, false>(q + a0, dp + b0, total, sums + a0 * C + b0, prefetch);
    }
    if constexpr (!fold_db) db_sums(dp[0], plane, total, C, sums + 9 * C * C);
    pl.pending += total;
    if (pl.pending >= kFlushPixels) flush(pl);
  }, flush);
  for (int k = 0; k < K; ++k) {
    double s = 0.0;
    for (int t = 0; t < threads; ++t) s += part[t * K + k];
    if (k < 9 * C * C) dw[k] = (float)s;
    else if (db) db[k - 9 * C * C] = (float)s;
  }
}

}  // namespace

void s2_planes_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db) {
  switch (g.c) {
    case 1:
      if (!s2_c1_backward_weights(g, dy, x, dw, db)) backward_weights_c<1>(g, dy, x, dw, db);
      return;
    case 3:
      if (!s2_patch_backward_weights(g, dy, x, dw, db)) backward_weights_c<3>(g, dy, x, dw, db);
      return;
  }
}

}  // namespace fastconv::cpu::detail
