// Backward data of stride-1 1x1 convs (groups == 1) at the avx2 level, where every GEMM is
// OpenBLAS's (see pointwise_avx2.h; issue 18 item 2, helper G, stop 38).
//
// Why: dx = dy @ W^T is a shallow product (K = Cout, 64 for ResNet's 28x28 256->64) into a wide
// dx. Through OpenBLAS with beta = 0 it first zeroes all of C (its beta pass: one more write of
// the 25.7 MB dx of N=32 28x28 256->64), then packs A and B per call and adds the product into
// C, reading each line of dx back. Here W^T is packed once (K x 16 column panels, 64 KiB at
// 64 x 256), and each tile of 6 rows x 16 columns (12 ymm accumulators) is built over K steps
// of two panel loads and six broadcasts of dy, then stored once: dx is written once, never
// read. Streaming dx out (non-temporal stores from a scratch block in L1, as
// pointwise_stream.cpp at AVX-512) measured slower here: see RESULTS.md, helper G, stop 38.
// AVX-512 keeps its native GEMM paths (pointwise_stream.cpp); the baseline keeps OpenBLAS.
#include "cpu/pointwise_avx2.h"

#include <algorithm>
#include <cstdint>
#include <memory>

#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && !defined(__AVX512F__)

namespace {

constexpr int kRows = 6;              // rows a tile (2 x kRows accumulators + 2 panel vectors)
constexpr int64_t kBlockTiles = 4;    // tiles a block: the block's rows share each panel in L1
constexpr int64_t kBlockRows = kRows * kBlockTiles;
// Shapes: K (Cout) up to kMaxK, the panels of 16 need Cin % 16 == 0.
constexpr int64_t kMaxK = 128;

// c[r][0 .. 16) = sum_p a[r * lda + p] * bp[p * 16 + 0 .. 16) for r < R. The accumulators are
// locals of this one function (no array passed between helpers: GCC spilled those, see
// strided_pointwise_wide.cpp).
template <int R>
[[gnu::noinline]] void tile(const float* a, int64_t lda, const float* bp, int64_t k, float* c,
                            int64_t ldc) {
  __m256 lo[R], hi[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  for (int64_t p = 0; p < k; ++p, bp += 16) {
    const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * lda + p);
      lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(c + r * ldc, lo[r]);
    _mm256_storeu_ps(c + r * ldc + 8, hi[r]);
  }
}

using TileFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t);
constexpr TileFn kTiles[kRows + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

}  // namespace

bool pointwise_backward_data_avx2(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                                  int threads) {
  const int64_t k = g.oc, n = g.c;
  if (g.groups != 1 || !g.is_pointwise() || active_gemm_backend() == "native" || k > kMaxK ||
      n % 16 != 0 || n < 128)
    return false;
  // W is Cin x Cout (HWIO, 1x1): panel j holds W^T's columns 16 j .. 16 j + 15, step p at p * 16.
  const int64_t panels = n / 16;
  std::unique_ptr<float[]> packed(new float[panels * k * 16 + 8]);
  float* const bp = packed.get() + ((8 - ((uintptr_t)packed.get() / 4) % 8) % 8);  // 32-byte aligned
  for (int64_t j = 0; j < panels; ++j)
    for (int64_t p = 0; p < k; ++p)
      for (int64_t i = 0; i < 16; ++i) bp[(j * k + p) * 16 + i] = w[(j * 16 + i) * k + p];
  const int64_t rows_total = g.n * g.h * g.w, blocks = (rows_total + kBlockRows - 1) / kBlockRows;
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < blocks; ++bi) {
      const int64_t r0 = bi * kBlockRows, rows = std::min(kBlockRows, rows_total - r0);
      float* const out = dx + r0 * n;
      const float* const a = dy + r0 * k;
      for (int64_t j = 0; j < panels; ++j)
        for (int64_t t = 0; t < rows; t += kRows)
          kTiles[std::min<int64_t>(kRows, rows - t)](a + t * k, k, bp + j * k * 16, k,
                                                     out + t * n + j * 16, n);
    }
  });
  return true;
}

#else

bool pointwise_backward_data_avx2(const ConvGeometry&, const float*, const float*, float*, int) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
