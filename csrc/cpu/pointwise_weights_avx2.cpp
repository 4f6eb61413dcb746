// The weight pass of stride-1 1x1 convs (groups == 1) at the avx2 level, where every GEMM is
// OpenBLAS's (see pointwise_weights_avx2.h; issue 18 item 2, helper W, stop 39).
//
// Why: dW (Cin x Cout) = x^T @ dy is a long reduction (25088 pixels for ResNet's N=32 28x28
// 256->64) into a small dW (64 KiB). OpenBLAS ran it as dW^T = dy^T @ x (sgemm TN) at about
// 57 GFLOP/s on one Zen 3 core, and db was one more pass over dy (column_sums). Here the
// pixels go in blocks of kBlock: each block's x rows are packed into slivers of 6 channels
// (pixel-major: 6 floats a pixel) and its dy rows into panels of 16 output channels (16 floats
// a pixel, db's column sums taken on the way), then every 6 x 16 tile of dW (12 ymm
// accumulators, loaded from dW after the first block) runs the block's pixels: two panel loads
// from L1 and six broadcasts a pixel for 12 FMAs. A block's packed x (kBlock x Cin floats,
// 128 KiB at Cin = 256) stays in L2 while the 16-wide panels take their turns; the next
// block's x rows are prefetched a share with each tile (x comes from memory).
// Threads take contiguous runs of blocks, each into its own dW (thread 0 into dw itself) and
// its own double column sums; these are added in thread order, so a thread count always gives
// the same result.
// AVX-512 keeps its native GEMM path, the baseline OpenBLAS (conv2d.cpp's im2col weights pass).
#include "cpu/pointwise_weights_avx2.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/parallel.h"
#include "kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)

namespace {

constexpr int kRows = 6;      // dW^T rows (output channels) a tile
constexpr int kVecs = 2;      // ymm columns (8 input channels each) a tile
constexpr int64_t kWidth = 8 * kVecs;
constexpr int64_t kBlock = 128;     // pixels a block (a multiple of kFold)
constexpr int64_t kFold = 64;       // db's float sums folded into double every kFold pixels
constexpr int64_t kMaxCin = 1024;   // the packed block: kBlock x Cin floats (512 KiB at most)
constexpr int64_t kMaxCout = 512;

// Mask of the first `valid` (0..8) lanes.
inline __m256i lanes(int64_t valid) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)std::min<int64_t>(valid, 8)), idx);
}

// A block's packing: sliver t holds dy[p][R t .. R t + R - 1] at yp + t * sliver + R p (the tail
// sliver's lanes past Cout are zero: its tile reads only the valid ones); panel j holds
// x[p][W j .. W j + w_j - 1] at xp + j * W * kBlock + w_j p (W = kWidth; w_j = W but for the
// last panel, Cin % W).
struct Packing {
  int64_t k, m, tiles, panels, tail_vecs, sliver;
  std::unique_ptr<float[]> buf;
  float *xp, *yp;
  Packing(int64_t k_, int64_t m_)
      : k(k_), m(m_), tiles((m_ + kRows - 1) / kRows), panels((k_ + kWidth - 1) / kWidth),
        tail_vecs((k_ % kWidth) / 8),
        // each pixel's R floats are written as 8 (one store): 8 - R floats of slack at the end
        sliver(kBlock * kRows + 8) {
    buf.reset(new float[panels * kWidth * kBlock + tiles * sliver + 16]);
    xp = buf.get() + ((8 - ((uintptr_t)buf.get() / 4) % 8) % 8);  // 32-byte aligned panel loads
    yp = xp + panels * kWidth * kBlock;
  }
};

// x's rows [0, pb) (leading dimension k, k % 8 == 0) into the panels.
void pack_x(int64_t pb, const float* x, Packing& pk) {
  const int64_t k = pk.k, whole = k / kWidth;
  for (int64_t p = 0; p < pb; ++p) {
    const float* row = x + p * k;
    float* dst = pk.xp + p * kWidth;
    for (int64_t j = 0; j < whole; ++j)
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v)
        _mm256_store_ps(dst + j * kWidth * kBlock + 8 * v, _mm256_loadu_ps(row + j * kWidth + 8 * v));
    float* tail = pk.xp + whole * kWidth * kBlock + p * 8 * pk.tail_vecs;
    for (int64_t v = 0; v < pk.tail_vecs; ++v)
      _mm256_store_ps(tail + 8 * v, _mm256_loadu_ps(row + whole * kWidth + 8 * v));
  }
}

// dy's rows [0, pb) (leading dimension m, m % 8 == 0) into the slivers; with sums, their column
// sums added to sums[0 .. m) (in float over at most kFold pixels, then in double).
void pack_y(int64_t pb, const float* dy, Packing& pk, double* sums) {
  const int64_t m = pk.m, tiles = pk.tiles;
  // Slivers whose 8-float load stays inside the row; the last few read masked.
  const int64_t whole = std::min<int64_t>(tiles, (m - 8) / kRows + 1);
  __m256i tail_mask[8];
  for (int64_t t = whole; t < tiles; ++t) tail_mask[t - whole] = lanes(m - t * kRows);
  for (int64_t p = 0; p < pb; ++p) {
    const float* row = dy + p * m;
    float* dst = pk.yp + p * kRows;
    int64_t t = 0;
    for (; t < whole; ++t) _mm256_storeu_ps(dst + t * pk.sliver, _mm256_loadu_ps(row + t * kRows));
    for (; t < tiles; ++t)
      _mm256_storeu_ps(dst + t * pk.sliver, _mm256_maskload_ps(row + t * kRows, tail_mask[t - whole]));
  }
  if (!sums) return;
  // The column sums over the block's rows (in L1 now), 8 columns at a time.
  for (int64_t c = 0; c < m; c += 8)
    for (int64_t p0 = 0; p0 < pb; p0 += kFold) {
      const int64_t p1 = std::min(pb, p0 + kFold);
      __m256 s = _mm256_setzero_ps();
      for (int64_t p = p0; p < p1; ++p) s = _mm256_add_ps(s, _mm256_loadu_ps(dy + p * m + c));
      _mm256_storeu_pd(sums + c, _mm256_add_pd(_mm256_loadu_pd(sums + c), _mm256_cvtps_pd(_mm256_castps256_ps128(s))));
      _mm256_storeu_pd(sums + c + 4, _mm256_add_pd(_mm256_loadu_pd(sums + c + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1))));
    }
}

// c[r][0 .. 8 V) (leading dimension ldc) = (accumulate ? c : 0) + sum over the block's pb pixels
// of a[p][r] * b[p][0 .. 8 V), for r < R (a: kRows floats a pixel, b: 8 V, 32-byte aligned).
template <int R, int V>
inline void tile(int64_t pb, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  __m256 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[r][v] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8 * v) : _mm256_setzero_ps();
  for (int64_t p = 0; p < pb; ++p, a += kRows, b += 8 * V) {
    __m256 bv[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(c + r * ldc + 8 * v, acc[r][v]);
}

template <int V>
inline void tile_rows(int rows, int64_t pb, const float* a, const float* b, float* c, int64_t ldc,
                      bool accumulate) {
  switch (rows) {
    case 1: return tile<1, V>(pb, a, b, c, ldc, accumulate);
    case 2: if constexpr (kRows >= 2) return tile<2, V>(pb, a, b, c, ldc, accumulate); break;
    case 3: if constexpr (kRows >= 3) return tile<3, V>(pb, a, b, c, ldc, accumulate); break;
    case 4: if constexpr (kRows >= 4) return tile<4, V>(pb, a, b, c, ldc, accumulate); break;
    case 5: if constexpr (kRows >= 5) return tile<5, V>(pb, a, b, c, ldc, accumulate); break;
    case 6: if constexpr (kRows >= 6) return tile<6, V>(pb, a, b, c, ldc, accumulate); break;
    default: break;
  }
}

// A tile of `rows` rows and `vecs` vectors (the last panel's may be fewer than kVecs).
inline void tile_any(int rows, int vecs, int64_t pb, const float* a, const float* b, float* c, int64_t ldc,
                     bool accumulate) {
  if (rows == kRows && vecs == kVecs) return tile<kRows, kVecs>(pb, a, b, c, ldc, accumulate);
  switch (vecs) {
    case 1: return tile_rows<1>(rows, pb, a, b, c, ldc, accumulate);
    case 2: if constexpr (kVecs >= 2) return tile_rows<2>(rows, pb, a, b, c, ldc, accumulate); break;
    case 3: if constexpr (kVecs >= 3) return tile_rows<3>(rows, pb, a, b, c, ldc, accumulate); break;
    case 4: if constexpr (kVecs >= 4) return tile_rows<4>(rows, pb, a, b, c, ldc, accumulate); break;
    default: break;
  }
}

// dwt (m x k: dW's transpose) = dy^T @ x over pixels [0, pixels) of x (k floats a pixel) and dy
// (m), sums += dy's column sums (when not null). dwt is written whole (zero when pixels == 0).
void weights_run(int64_t pixels, const float* x, const float* dy, float* dwt, double* sums, Packing& pk) {
  const int64_t k = pk.k, m = pk.m;
  if (pixels == 0) {
    std::memset(dwt, 0, sizeof(float) * k * m);
    return;
  }
  for (int64_t p0 = 0; p0 < pixels; p0 += kBlock) {
    const int64_t pb = std::min(kBlock, pixels - p0);
    pack_x(pb, x + p0 * k, pk);
    pack_y(pb, dy + p0 * m, pk, sums);
    // The next block's x rows (from memory), a share prefetched with each tile.
    const char* next = (const char*)(x + (p0 + pb) * k);
    const int64_t next_lines = (std::min(kBlock, pixels - p0 - pb) * k * 4 + 63) / 64;
    const int64_t share = (next_lines + pk.tiles * pk.panels - 1) / (pk.tiles * pk.panels);
    int64_t done = 0;
    const bool accumulate = p0 > 0;
    for (int64_t j = 0; j < pk.panels; ++j) {
      const float* panel = pk.xp + j * kWidth * kBlock;
      const int vecs = (int)std::min<int64_t>(kVecs, (k - j * kWidth) / 8);
      for (int64_t t = 0; t < pk.tiles; ++t) {
        for (int64_t q = 0; q < share && done < next_lines; ++q, ++done)
          _mm_prefetch(next + done * 64, _MM_HINT_T0);
        const float* a = pk.yp + t * pk.sliver;
        float* c = dwt + t * kRows * k + j * kWidth;
        const int rows = (int)std::min<int64_t>(kRows, m - t * kRows);
        tile_any(rows, vecs, pb, a, panel, c, k, accumulate);
      }
    }
  }
}

}  // namespace

bool pointwise_backward_weights_avx2(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                     float* db, int threads) {
  const int64_t k = g.c, m = g.oc;
  if (g.groups != 1 || !g.is_pointwise() || active_gemm_backend() == "native" || k % 8 != 0 ||
      m % 8 != 0 || m > kMaxCout || k > kMaxCin)
    return false;
  const int64_t pixels = g.n * g.oh * g.ow, blocks = (pixels + kBlock - 1) / kBlock;
  threads = (int)std::max<int64_t>(1, std::min<int64_t>(threads, blocks));
  // Per thread: its packing, its column sums and its dW^T.
  std::vector<std::unique_ptr<Packing>> packs;
  for (int t = 0; t < threads; ++t) packs.emplace_back(new Packing(k, m));
  std::vector<double> sums((size_t)(threads * m), 0.0);
  std::vector<float> part((size_t)(threads * k * m));
  int team = 1;
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    if (t == 0) team = nt;
    // Thread t: blocks [blocks * t / nt, blocks * (t + 1) / nt).
    const int64_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
    const int64_t p0 = b0 * kBlock, p1 = std::min(pixels, b1 * kBlock);
    weights_run(p1 - p0, x + p0 * k, dy + p0 * m, part.data() + t * k * m, db ? sums.data() + t * m : nullptr,
                *packs[t]);
  });
  // dw[i][j] = the threads' dW^T[j][i], added in thread order.
  for (int64_t j = 0; j < m; ++j)
    for (int64_t i = 0; i < k; ++i) {
      float s = part[(size_t)(j * k + i)];
      for (int t = 1; t < team; ++t) s += part[(size_t)(t * k * m + j * k + i)];
      dw[i * m + j] = s;
    }
  if (db)
    for (int64_t j = 0; j < m; ++j) {
      double s = 0.0;
      for (int t = 0; t < team; ++t) s += sums[(size_t)(t * m + j)];
      db[j] = (float)s;
    }
  return true;
}

#else

bool pointwise_backward_weights_avx2(const ConvGeometry&, const float*, const float*, float*, float*, int) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
