// Dense layers with k = m = K in 3..8 at avx2 (the backward 4..8; a per-pixel classifier over 6 features, the
// sweep's (N*H, C) x (C, C) products): a row of x, y, dy or dx in one ymm register, as the
// AVX-512 path (dense.cpp, dense_forward_registers / register_backward_pass) does with masked
// registers. y = b + x @ w and dx = dy @ w^T are narrow_pointwise_regs.h's map (w's rows or
// columns in K registers, x's floats broadcast, 8 rows in flight, each row's 8 lanes stored
// whole onto the next row, the last row of a call exactly); dw[i] += x[r][i] * dy[r] and
// db += dy[r] take K FMAs and an add a row.
//
// Why: below AVX-512 these ran on planar registers (dense.cpp dense_forward_planes /
// backward_pass: 8 rows split into K planes and merged back, at K = 6 about 90 two-source
// permutes and blends per 8 rows at avx2 for 36 + 36 multiply-adds). The sweep's dense fwd
// (28672, 6) and bwd (14336, 6) ran at 0.15-0.21 of their roofline (2026-12-07i, Zen 3).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/narrow_pointwise_regs.h"
#include "cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastconv::cpu::detail::dense_regs {

#if defined(__AVX2__) && !defined(__AVX512F__)
constexpr bool kCompiled = true;

// The K x K row-major matrix m as 8 rows of 8 floats (zero past K): its rows, or its columns
// when `transpose`.
template <int K>
struct Padded {
  alignas(32) float t[8][8] = {};
  alignas(32) float bias[8] = {};
  Padded(const float* m, bool transpose, const float* b) {
    for (int i = 0; i < K; ++i)
      for (int j = 0; j < K; ++j) t[i][j] = transpose ? m[j * K + i] : m[i * K + j];
    if (b) std::memcpy(bias, b, sizeof(float) * K);
  }
};

// Rows [r0, r1) of y = bias + x @ w (p: w's rows).
template <int K>
inline void forward_rows(int64_t r0, int64_t r1, const float* x, const Padded<K>& p, float* y) {
  pixel_regs::map<K, K>(x + r0 * K, K, y + r0 * K, K, r1 - r0, &p.t[0][0], 8, p.bias);
}

// Rows per float sum before it is folded into double (the error of a 64-term float sum, as
// dense.cpp's planes and register paths).
constexpr int64_t kFoldRows = 64;

// The backward's rows [b0, b1) of n: dx = dy @ w^T (p: w's columns, zero bias) stored;
// dw[i][j] += sum_r x[r][i] * dy[r][j] and db[j] += sum_r dy[r][j] added into total (double,
// dw's K x K then db's K). A row of dy is loaded as 8 floats (lanes past K: the next row's,
// never folded); the tensor's last row (K >= 4), whose 8 would reach past it, through a copy.
template <int K>
void backward_rows(int64_t b0, int64_t b1, int64_t n, const float* dy, const float* x, const Padded<K>& p,
                   float* dx, bool want_dw, double* __restrict total) {
  if (dx) pixel_regs::map<K, K>(dy + b0 * K, K, dx + b0 * K, K, b1 - b0, &p.t[0][0], 8, p.bias);
  // U rows' sums in separate registers: a register takes one FMA a row, a chain of the FMA's
  // latency; U (K + 1) accumulators, a row of dy and a broadcast within the 16 registers.
  constexpr int U = K <= 6 ? 2 : 1;
  const int64_t safe = n - (8 - K + K - 1) / K;  // rows whose 8-float load stays inside dy
  alignas(32) double acc[K + 1][8] = {};
  for (int64_t s0 = b0; s0 < b1; s0 += kFoldRows * U) {
    const int64_t s1 = std::min(b1, s0 + kFoldRows * U);
    f32xR aw[U][K], ab[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      ab[u] = f32xR{};
#pragma GCC unroll 8
      for (int i = 0; i < K; ++i) aw[u][i] = f32xR{};
    }
    auto row = [&](int u, int64_t r) {
      f32xR g;
      if (r < safe) {
        g = loadR(dy + r * K);
      } else {
        alignas(32) float t[8] = {};
        std::memcpy(t, dy + r * K, sizeof(float) * K);
        g = loadR(t);
      }
      if (want_dw) {
#pragma GCC unroll 8
        for (int i = 0; i < K; ++i) aw[u][i] += (f32xR)_mm256_broadcast_ss(x + r * K + i) * g;
      }
      ab[u] += g;
    };
    int64_t r = s0;
    for (; r + U <= s1; r += U)
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) row(u, r + u);
    for (; r < s1; ++r) row(0, r);
    for (int u = 1; u < U; ++u) {
      ab[0] += ab[u];
      for (int i = 0; i < K; ++i) aw[0][i] += aw[u][i];
    }
    for (int j = 0; j < K; ++j) {
      if (want_dw)
        for (int i = 0; i < K; ++i) acc[i][j] += (double)aw[0][i][j];
      acc[K][j] += (double)ab[0][j];
    }
  }
  for (int i = 0; i <= K; ++i)
    for (int j = 0; j < K; ++j) total[i * K + j] += acc[i][j];
}
// k = m = K in 9..16: a row in two ymm (8 + K - 8 floats), w's K rows padded to 16 floats
// (an L1-resident copy: 2 x K registers would not fit), read once per step of k for 4 rows at a
// time (8 accumulators; 2 loads of w and 4 broadcasts per 8 FMAs), each sum from the bias over
// k in order. OpenBLAS's sgemm plus the bias pass ran (3136, 16) at 0.26 of the FMA ceiling
// (the sweep's dense fwd N=256 14x14 C=16, 2026-12-07 stop 38's after-run).
template <int K>
struct PaddedWide {
  alignas(32) float t[K][16] = {};
  alignas(32) float bias[16] = {};
  PaddedWide(const float* m, const float* b) {
    for (int i = 0; i < K; ++i) std::memcpy(t[i], m + i * K, sizeof(float) * K);
    if (b) std::memcpy(bias, b, sizeof(float) * K);
  }
};

template <int K, int R>
[[gnu::always_inline]] inline void wide_rows(const float* x, const PaddedWide<K>& p, float* y) {
  f32xR acc[R][2];
  const f32xR b0 = loadR(p.bias), b1 = loadR(p.bias + 8);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r][0] = b0, acc[r][1] = b1;
#pragma GCC unroll 16
  for (int t = 0; t < K; ++t) {
    const f32xR w0 = loadR(p.t[t]), w1 = loadR(p.t[t] + 8);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const f32xR xv = (f32xR)_mm256_broadcast_ss(x + r * K + t);
      acc[r][0] += xv * w0;
      acc[r][1] += xv * w1;
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    storeR(y + r * K, acc[r][0]);
    pixel_regs::store_first<K - 8>(y + r * K + 8, acc[r][1]);
  }
}

// Rows [r0, r1) of y = bias + x @ w.
template <int K>
void forward_rows_wide(int64_t r0, int64_t r1, const float* x, const PaddedWide<K>& p, float* y) {
  static_assert(K > 8 && K <= 16);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) wide_rows<K, 4>(x + r * K, p, y + r * K);
  for (; r < r1; ++r) wide_rows<K, 1>(x + r * K, p, y + r * K);
}
#else
constexpr bool kCompiled = false;
#endif

}  // namespace fastconv::cpu::detail::dense_regs
