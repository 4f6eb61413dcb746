// Forward and backward data of stride-1 1x1 convs (groups == 1) at the avx2 level, where every
// GEMM is OpenBLAS's (see pointwise_passes_avx2.h; issue 18 item 2, helper G, stop 38).
//
// Why: dx = dy @ W^T is a shallow product (K = Cout, 64 for ResNet's 28x28 256->64) into a wide
// dx. Through OpenBLAS with beta = 0 it first zeroes all of C (its beta pass: one more write of
// the 25.7 MB dx of N=32 28x28 256->64), then packs A and B per call and adds the product into
// C, reading each line of dx back. Here W^T is packed once (K x 16 column panels, 64 KiB at
// 64 x 256), and each tile of 6 rows x 16 columns (12 ymm accumulators) is built over K steps
// of two panel loads and six broadcasts of dy, then stored once: dx is written once, never
// read. Streaming dx out (non-temporal stores from a scratch block in L1, as
// pointwise_stream.cpp at AVX-512) measured slower here: see RESULTS.md, helper G, stop 38.
// The forward (y = x @ W + b: OpenBLAS had y set to the bias first, then added the product into
// it, beta = 1) runs the same tiles with W itself in panels and the bias in the accumulators;
// x's rows come from memory there (K = Cin, 1 KiB a pixel at 256), so each tile prefetches
// a share of the next tile's rows (without: 0.95x of OpenBLAS, with: 0.79-0.81x, item 2).
// AVX-512 keeps its native GEMM paths (pointwise_stream.cpp); the baseline keeps OpenBLAS.
// The tile and the panel packing are pointwise_tile_avx2.h's, shared by pointwise_avx2.cpp and
// pointwise_passes_avx2.cpp (helper U, stop 38).
#include "cpu/pointwise_passes_avx2.h"

#include <algorithm>
#include <cstdint>
#include <memory>

#include "cpu/parallel.h"
#include "cpu/pointwise_tile_avx2.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)

namespace {

using namespace pw_tile;  // the tile (kRows rows x 16 columns) and the packing (pointwise_tile_avx2.h)

constexpr int64_t kBlockTiles = 4;    // tiles a block: the block's rows share each panel in L1
constexpr int64_t kBlockRows = kRows * kBlockTiles;
// The backward data: K (Cout) and the weights' floats up to these (the panels of 16 need
// Cin % 16 == 0). With 512 KiB of weights OpenBLAS was faster (1 thread, paired: N=32 14x14
// 256->512 1.09x, N=256 7x7 1.07x; N=32 14x14 1024->128 0.98x). Its dy rows are not prefetched
// as the forward's x rows are: that measured slower here (N=32 28x28 256->64 0.79 -> 0.90x of
// OpenBLAS, 56x56 64->64 0.68 -> 0.77x).
constexpr int64_t kMaxK = 512, kMaxWeights = 256 * 256;
// The forward: K (Cin) and the weights' floats up to these (B packed, 128 KiB: each tile reads
// all its panels from L2). With 256 KiB OpenBLAS was as fast or faster (1 thread, paired: N=256
// 7x7 256->256 1.04-1.07x, N=256 14x14 1.02x, N=32 28x28 512->128 0.99x), with 1 MiB even
// (N=32 14x14 1024->256 0.99x).
constexpr int64_t kFwdMaxK = 512, kFwdMaxWeights = 128 * 256;
// The forward's tiles a block: one (x's rows from memory, the next tile's prefetched); two
// measured the same.
constexpr int64_t kFwdBlockTiles = 1;
constexpr int64_t kItemRows = 24 * kRows;  // rows a work item of the forward

// B (k x 16 panels, 32-byte aligned) for a product of `panels` panels: the packed floats.
struct Panels {
  std::unique_ptr<float[]> buf;
  float* data;
  Panels(int64_t panels, int64_t k) : buf(new float[panels * k * 16 + 8]) {
    data = buf.get() + ((8 - ((uintptr_t)buf.get() / 4) % 8) % 8);
  }
};

// out[r][0 .. 16 panels) = act(bias + a[r] @ B) for `rows` rows of a (leading dimension lda = k),
// in blocks of block_tiles tiles: a block's tiles share each panel while it is in L1.
template <Activation A>
void product(int64_t rows, const float* a, int64_t k, const float* bp, int64_t panels,
             const float* bias, float* out, int64_t ldc, int64_t block_tiles, bool pf) {
  const int64_t block_rows = kRows * block_tiles;
  const Tail whole = tail_of(16);  // the panels are whole here (n % 16 == 0)
  for (int64_t b0 = 0; b0 < rows; b0 += block_rows) {
    const int64_t bn = std::min(block_rows, rows - b0);
    // The next block's rows of a, prefetched a share with each tile (a is read from memory).
    const char* next = (const char*)(a + (b0 + bn) * k);
    const int64_t next_bytes = std::min(block_rows, rows - b0 - bn) * k * 4;
    const int64_t share = ((next_bytes + 63) / 64 + panels * block_tiles - 1) / (panels * block_tiles);
    int64_t done = 0;
    for (int64_t j = 0; j < panels; ++j)
      for (int64_t t = b0; t < b0 + bn; t += kRows) {
        if (pf)
          for (int64_t q = 0; q < share && done < next_bytes; ++q, done += 64)
            __builtin_prefetch(next + done, 0, 3);
        // Whole 6-row tiles called directly (no dispatch on the row count), the rest by count.
        if (b0 + bn - t >= kRows)
          tile<kRows, A, true>(k, a + t * k, k, bp + j * k * 16, bias ? bias + j * 16 : nullptr,
                               out + t * ldc + j * 16, ldc, whole, false);
        else
          tile_rows<A, true>(b0 + bn - t, k, a + t * k, k, bp + j * k * 16, bias ? bias + j * 16 : nullptr,
                             out + t * ldc + j * 16, ldc, whole, false);
      }
  }
}

}  // namespace

bool pointwise_forward_avx2(const ConvGeometry& g, const float* x, const float* w, const float* b,
                            float* y, Activation act, int threads) {
  const int64_t k = g.c, n = g.oc;
  if (g.groups != 1 || !g.is_pointwise() || active_gemm_backend() == "native" || k > kFwdMaxK ||
      n % 16 != 0 || n * k > kFwdMaxWeights || (g.n == 1 && threads > 1))
    return false;
  // W is Cin x Cout (HWIO, 1x1), B itself: panel j holds its columns 16 j .. 16 j + 15.
  const int64_t panels = n / 16;
  Panels bp(panels, k);
  pack_panels(k, n, w, n, 1, bp.data);
  const int64_t rows_total = g.n * g.oh * g.ow, blocks = (rows_total + kItemRows - 1) / kItemRows;
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < blocks; ++bi) {
      const int64_t r0 = bi * kItemRows, rows = std::min(kItemRows, rows_total - r0);
      const float* xr = x + r0 * k;
      float* yr = y + r0 * n;
      // relu / relu6 in the tiles' registers; other activations a pass over the item's rows.
      if (act == Activation::Relu) {
        product<Activation::Relu>(rows, xr, k, bp.data, panels, b, yr, n, kFwdBlockTiles, true);
      } else if (act == Activation::Relu6) {
        product<Activation::Relu6>(rows, xr, k, bp.data, panels, b, yr, n, kFwdBlockTiles, true);
      } else {
        product<Activation::Linear>(rows, xr, k, bp.data, panels, b, yr, n, kFwdBlockTiles, true);
        activation_inplace(rows * n, yr, act);
      }
    }
  });
  return true;
}

bool pointwise_backward_data_avx2(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                                  int threads) {
  const int64_t k = g.oc, n = g.c;
  if (g.groups != 1 || !g.is_pointwise() || active_gemm_backend() == "native" || k > kMaxK ||
      n % 16 != 0 || n * k > kMaxWeights)
    return false;
  // W is Cin x Cout (HWIO, 1x1): panel j holds W^T's columns 16 j .. 16 j + 15, step p at p * 16.
  const int64_t panels = n / 16;
  Panels bp(panels, k);
  pack_panels(k, n, w, 1, k, bp.data);
  const int64_t rows_total = g.n * g.h * g.w, blocks = (rows_total + kBlockRows - 1) / kBlockRows;
  parallel_region(threads, [&] {
    note_team();
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < blocks; ++bi) {
      const int64_t r0 = bi * kBlockRows, rows = std::min(kBlockRows, rows_total - r0);
      product<Activation::Linear>(rows, dy + r0 * k, k, bp.data, panels, nullptr, dx + r0 * n, n, kBlockTiles, false);
    }
  });
  return true;
}

#else

bool pointwise_forward_avx2(const ConvGeometry&, const float*, const float*, const float*, float*,
                            Activation, int) {
  return false;
}

bool pointwise_backward_data_avx2(const ConvGeometry&, const float*, const float*, float*, int) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
