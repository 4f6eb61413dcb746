// The one avx2 register-tile microkernel of the 1x1 / small-K products below AVX-512, and its
// packing of B into 16-wide panels (issue 18, stop 38, helper U). Two callers:
// pointwise_avx2.cpp (forward_product's small-K products: bias or y's own contents in the
// accumulators, linear / relu / relu6 before the store, masked tail columns) and
// pointwise_passes_avx2.cpp (conv2d's stride-1 1x1 forward and backward data, whole panels).
// Helpers I and G had written one each; they were the same tile (6 rows x 16 columns, 12 ymm
// accumulators, two panel loads and one broadcast a row per K step), so one serves both.
// Header-only: the level's inline namespace (isa.h) keeps the instantiations of each level apart;
// compiled only at avx2 (AVX-512 keeps its own GEMM paths, the baseline keeps OpenBLAS).
#pragma once

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace fastconv::cpu::detail::pw_tile {

constexpr int kRows = 6;  // rows a tile (12 accumulators of 16 columns, 2 panel vectors, 1 broadcast)

// Mask of the first `valid` (0..8) lanes.
inline __m256i lanes(int valid) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), idx);
}

struct Tail {
  int cols;        // valid columns of the panel, 1..16
  __m256i m0, m1;  // their masks in the two halves
};

// The Tail of a panel with `cols` valid columns.
inline Tail tail_of(int64_t cols) {
  Tail t;
  t.cols = (int)std::min<int64_t>(16, cols);
  t.m0 = lanes(std::min(t.cols, 8)), t.m1 = lanes(std::max(t.cols - 8, 0));
  return t;
}

template <Activation A>
inline __m256 act8(__m256 v) {
  // max/min return their second operand when either is NaN: NaN stays NaN.
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = _mm256_max_ps(_mm256_setzero_ps(), v);
  if constexpr (A == Activation::Relu6) v = _mm256_min_ps(_mm256_set1_ps(6.f), v);
  return v;
}

// One row's 16 columns: activation, stored (masked past the panel's valid columns; Whole: all 16
// valid, t not read).
template <Activation A, bool Whole>
inline void store_row(__m256 v0, __m256 v1, float* out, const Tail& t) {
  if (Whole || t.cols == 16) {
    _mm256_storeu_ps(out, act8<A>(v0));
    _mm256_storeu_ps(out + 8, act8<A>(v1));
    return;
  }
  _mm256_maskstore_ps(out, t.m0, act8<A>(v0));
  if (t.cols > 8) _mm256_maskstore_ps(out + 8, t.m1, act8<A>(v1));
}

// out[r][0..cols) = act(init[r] + sum_p a[r][p] * panel[p][..]) for r < R, init the bias (null:
// 0) or, from_y, out's own contents. panel: k x 16 floats, 32-byte aligned. The accumulators
// are named locals (an array of them passed between helpers went to the stack at every step;
// strided_pointwise_wide.cpp). Whole: the panel's 16 columns all valid, known when compiled (no
// mask branches around the stores: at K = 48..64 a tile is ~300 cycles and the per-call checks
// showed, 1.03-1.07x on 56x56 64->64 and 28x28 48->48).
template <int R, Activation A, bool Whole>
[[gnu::noinline]] void tile(int64_t k, const float* a, int64_t lda, const float* panel, const float* bias,
                            float* out, int64_t ldo, const Tail& t, bool from_y) {
  __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
  if (!from_y && bias) {
    if (Whole || t.cols == 16) b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
    else b0 = _mm256_maskload_ps(bias, t.m0), b1 = _mm256_maskload_ps(bias + 8, t.m1);
  }
  __m256 c00 = b0, c01 = b1, c10 = b0, c11 = b1, c20 = b0, c21 = b1;
  __m256 c30 = b0, c31 = b1, c40 = b0, c41 = b1, c50 = b0, c51 = b1;
  if (from_y) {
    auto ld = [&](int r, __m256& v0, __m256& v1) {
      const float* o = out + r * ldo;
      if (Whole || t.cols == 16) v0 = _mm256_loadu_ps(o), v1 = _mm256_loadu_ps(o + 8);
      else v0 = _mm256_maskload_ps(o, t.m0), v1 = _mm256_maskload_ps(o + 8, t.m1);
    };
    ld(0, c00, c01);
    if constexpr (R > 1) ld(1, c10, c11);
    if constexpr (R > 2) ld(2, c20, c21);
    if constexpr (R > 3) ld(3, c30, c31);
    if constexpr (R > 4) ld(4, c40, c41);
    if constexpr (R > 5) ld(5, c50, c51);
  }
  const float* a0 = a;
  const float* a1 = a + (R > 1 ? lda : 0);
  const float* a2 = a + (R > 2 ? 2 * lda : 0);
  const float* a3 = a + (R > 3 ? 3 * lda : 0);
  const float* a4 = a + (R > 4 ? 4 * lda : 0);
  const float* a5 = a + (R > 5 ? 5 * lda : 0);
  for (int64_t p = 0; p < k; ++p) {
    const __m256 w0 = _mm256_load_ps(panel + p * 16), w1 = _mm256_load_ps(panel + p * 16 + 8);
    __m256 s = _mm256_broadcast_ss(a0 + p);
    c00 = _mm256_fmadd_ps(s, w0, c00), c01 = _mm256_fmadd_ps(s, w1, c01);
    if constexpr (R > 1) {
      s = _mm256_broadcast_ss(a1 + p);
      c10 = _mm256_fmadd_ps(s, w0, c10), c11 = _mm256_fmadd_ps(s, w1, c11);
    }
    if constexpr (R > 2) {
      s = _mm256_broadcast_ss(a2 + p);
      c20 = _mm256_fmadd_ps(s, w0, c20), c21 = _mm256_fmadd_ps(s, w1, c21);
    }
    if constexpr (R > 3) {
      s = _mm256_broadcast_ss(a3 + p);
      c30 = _mm256_fmadd_ps(s, w0, c30), c31 = _mm256_fmadd_ps(s, w1, c31);
    }
    if constexpr (R > 4) {
      s = _mm256_broadcast_ss(a4 + p);
      c40 = _mm256_fmadd_ps(s, w0, c40), c41 = _mm256_fmadd_ps(s, w1, c41);
    }
    if constexpr (R > 5) {
      s = _mm256_broadcast_ss(a5 + p);
      c50 = _mm256_fmadd_ps(s, w0, c50), c51 = _mm256_fmadd_ps(s, w1, c51);
    }
  }
  store_row<A, Whole>(c00, c01, out, t);
  if constexpr (R > 1) store_row<A, Whole>(c10, c11, out + ldo, t);
  if constexpr (R > 2) store_row<A, Whole>(c20, c21, out + 2 * ldo, t);
  if constexpr (R > 3) store_row<A, Whole>(c30, c31, out + 3 * ldo, t);
  if constexpr (R > 4) store_row<A, Whole>(c40, c41, out + 4 * ldo, t);
  if constexpr (R > 5) store_row<A, Whole>(c50, c51, out + 5 * ldo, t);
}

// The tile of `r` (1..kRows) rows.
template <Activation A, bool Whole>
inline void tile_rows(int64_t r, int64_t k, const float* a, int64_t lda, const float* panel, const float* bias,
                      float* out, int64_t ldo, const Tail& t, bool from_y) {
  switch (r) {
    case 6: return tile<6, A, Whole>(k, a, lda, panel, bias, out, ldo, t, from_y);
    case 5: return tile<5, A, Whole>(k, a, lda, panel, bias, out, ldo, t, from_y);
    case 4: return tile<4, A, Whole>(k, a, lda, panel, bias, out, ldo, t, from_y);
    case 3: return tile<3, A, Whole>(k, a, lda, panel, bias, out, ldo, t, from_y);
    case 2: return tile<2, A, Whole>(k, a, lda, panel, bias, out, ldo, t, from_y);
    case 1: return tile<1, A, Whole>(k, a, lda, panel, bias, out, ldo, t, from_y);
    default: return;
  }
}

// B (k x n; element (p, c) at b[p * rs + c * cs]) as panels of k x 16 contiguous floats, panel
// j (columns [16 j, 16 j + 16), zero past n) at dst + j * k * 16; dst 32-byte aligned. With
// cs == 1 (B row-major, e.g. W in the forward) B is read a row at a time across the panels (one
// panel alone steps a whole row of B per 64 bytes, a walk the prefetchers do not follow); else
// (W^T in the backward data) element by element, a panel's column after column.
inline void pack_panels(int64_t k, int64_t n, const float* b, int64_t rs, int64_t cs, float* dst) {
  const int64_t pf = k * 16, full = n / 16;  // panels without a tail
  const int64_t cols = n - full * 16;          // the last panel's 0..15 columns
  if (cs != 1) {
    for (int64_t j = 0; j * 16 < n; ++j) {
      float* d = dst + j * pf;
      const int64_t nc = std::min<int64_t>(16, n - j * 16);
      for (int64_t i = 0; i < 16; ++i)
        for (int64_t p = 0; p < k; ++p) d[p * 16 + i] = i < nc ? b[(j * 16 + i) * cs + p * rs] : 0.f;
    }
    return;
  }
  for (int64_t p = 0; p < k; ++p) {
    const float* br = b + p * rs;
    for (int64_t j = 0; j < full; ++j) {
      float* d = dst + j * pf + p * 16;
      _mm256_store_ps(d, _mm256_loadu_ps(br + j * 16));
      _mm256_store_ps(d + 8, _mm256_loadu_ps(br + j * 16 + 8));
    }
  }
  if (cols == 0) return;
  const __m256i m0 = lanes((int)std::min<int64_t>(cols, 8)), m1 = lanes((int)std::max<int64_t>(cols - 8, 0));
  float* d = dst + full * pf;
  for (int64_t p = 0; p < k; ++p) {
    _mm256_store_ps(d + p * 16, _mm256_maskload_ps(b + p * rs + full * 16, m0));
    _mm256_store_ps(d + p * 16 + 8, _mm256_maskload_ps(b + p * rs + full * 16 + 8, m1));
  }
}

}  // namespace fastconv::cpu::detail::pw_tile

#endif
