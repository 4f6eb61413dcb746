// The weight pass of stride-1 1x1 convs (groups == 1) at the avx2 level, where every GEMM is
// OpenBLAS's (see pointwise_weights_avx2.h; issue 18 item 2, helper W, stop 39).
//
// Why: dW (Cin x Cout) = x^T @ dy is a long reduction (25088 pixels for ResNet's N=32 28x28
// 256->64) into a small dW (64 KiB). OpenBLAS ran it as dW^T = dy^T @ x (sgemm TN) at 57-69
// GFLOP/s on one Zen 3 core (about 100 at the FMA peak), and db was one more pass over dy
// (column_sums). Here the pixels go in blocks of kBlock. A block's rows of one operand are
// packed into panels of 16 channels (16 floats a pixel, the ymm operand), the other's into
// slivers of 6 channels (6 floats a pixel, broadcast); then each 6 x 16 tile of the product (12
// ymm accumulators, loaded from the output after the first block) runs the block's pixels: two
// panel loads and six broadcasts a pixel for 12 FMAs. db's column sums are taken from the
// block's dy rows while they are in L1. A panel (8 KiB) stays in L1 while the slivers take
// their turns; the packed block (128 KiB at 256 channels) stays in L2.
// Which operand is packed in panels: the one with more channels, x at a tie (dW^T = dy^T @ x,
// transposed into dw at the end; 1 thread, paired, against dy in panels: 32x28x28 256->64 0.975,
// 128->128 0.955, 32x7x7 512->512 0.958, 64->256 1.035), but dy at up to kDirectMaxPixels pixels
// (dW itself, no transpose: the transpose is a pass over dW, as long as the product at batch 1
// (7x7 512->512, 49 pixels: a quarter of the time); 14x14 256->256 0.90, 28x28 256->256 0.94,
// 56x56 64->64 1.01).
// Threads take contiguous runs of blocks, each into its own product and double column sums;
// these are added in thread order, so a thread count always gives the same result. Past 1x1,
// stride 1 and Cin, Cout multiples of 8 the GEMM path runs (conv2d.cpp's im2col weights pass);
// AVX-512 keeps its native GEMM path, the baseline OpenBLAS.
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

constexpr int kRows = 6;            // product rows (sliver channels) a tile
constexpr int kVecs = 2;            // ymm columns (8 panel channels each) a tile
constexpr int64_t kWidth = 8 * kVecs;
constexpr int64_t kBlock = 128;     // pixels a block (a multiple of kFold)
constexpr int64_t kFold = 64;       // db's float sums folded into double every kFold pixels
// Either side up to this: a packed block of 128 KiB, a dW of 256 KiB at most. Past it the block
// and dW no longer share the L2 (each block reloads all of dW): 1 thread, paired, against
// OpenBLAS, N=32 14x14 1024->256 1.17, 256->1024 1.09, 28x28 512->128 1.04, N=256 7x7 512->512
// 1.10 (N=32 7x7 512->512 0.93, 28x28 128->512 1.00).
constexpr int64_t kMaxChannels = 256;
// Operands of up to these channels are read in place (1 thread, paired, against packing them:
// N=32 28x28 C=16 0.55, 24 0.75, 32 0.87; packing up to 64 channels instead: 48 1.10, 64 1.16).
constexpr int64_t kPackMin = 32;
constexpr int64_t kDirectMaxPixels = 1024;  // up to these, dy is the panel operand

// Mask of the first `valid` (0..8) lanes.
inline __m256i lanes(int64_t valid) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)std::min<int64_t>(valid, 8)), idx);
}

// A block's packing of the sliver operand (na channels a pixel) and the panel operand (nb).
// Sliver t holds a[p][6 t .. 6 t + 5] at sp + t * sliver + 6 p (the last sliver's lanes past na
// are zero: its tiles read only the valid ones); panel j holds b[p][16 j .. 16 j + w_j - 1] at
// pp + 16 j kBlock + w_j p (w_j = 16 but for the last panel, nb % 16 when not 0).
struct Packing {
  int64_t na, nb, tiles, panels, tail_vecs, sliver;
  std::unique_ptr<float[]> buf;
  float *pp, *sp;
  Packing(int64_t na_, int64_t nb_)
      : na(na_), nb(nb_), tiles((na_ + kRows - 1) / kRows), panels((nb_ + kWidth - 1) / kWidth),
        tail_vecs((nb_ % kWidth) / 8),
        // each pixel's 6 floats are written as 8 (one store): 2 floats of slack at the end
        sliver(kBlock * kRows + 8) {
    buf.reset(new float[panels * kWidth * kBlock + tiles * sliver + 16]);
    pp = buf.get() + ((8 - ((uintptr_t)buf.get() / 4) % 8) % 8);  // 32-byte aligned panel loads
    sp = pp + panels * kWidth * kBlock;
  }
};

// b's rows [0, pb) (nb floats each, nb % 8 == 0) into the panels.
void pack_panels(int64_t pb, const float* b, Packing& pk) {
  const int64_t nb = pk.nb, whole = nb / kWidth;
  for (int64_t p = 0; p < pb; ++p) {
    const float* row = b + p * nb;
    float* dst = pk.pp + p * kWidth;
    for (int64_t j = 0; j < whole; ++j)
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v)
        _mm256_store_ps(dst + j * kWidth * kBlock + 8 * v, _mm256_loadu_ps(row + j * kWidth + 8 * v));
    float* tail = pk.pp + whole * kWidth * kBlock + p * 8 * pk.tail_vecs;
    for (int64_t v = 0; v < pk.tail_vecs; ++v)
      _mm256_store_ps(tail + 8 * v, _mm256_loadu_ps(row + whole * kWidth + 8 * v));
  }
}

// a's rows [0, pb) (na floats each, na % 8 == 0) into the slivers.
void pack_slivers(int64_t pb, const float* a, Packing& pk) {
  const int64_t na = pk.na, tiles = pk.tiles;
  // Slivers whose 8-float load stays inside the row; the last one or two read masked.
  const int64_t whole = std::min<int64_t>(tiles, (na - 8) / kRows + 1);
  __m256i tail_mask[2];
  for (int64_t t = whole; t < tiles; ++t) tail_mask[t - whole] = lanes(na - t * kRows);
  for (int64_t p = 0; p < pb; ++p) {
    const float* row = a + p * na;
    float* dst = pk.sp + p * kRows;
    int64_t t = 0;
    for (; t < whole; ++t) _mm256_storeu_ps(dst + t * pk.sliver, _mm256_loadu_ps(row + t * kRows));
    for (; t < tiles; ++t)
      _mm256_storeu_ps(dst + t * pk.sliver, _mm256_maskload_ps(row + t * kRows, tail_mask[t - whole]));
  }
}

// sums[0 .. m) += the column sums of dy's rows [0, pb) (m % 8 == 0): in float over at most kFold
// rows, then in double (as column_sums).
void block_sums(int64_t pb, const float* dy, int64_t m, double* sums) {
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
// of a[p][r] * b[p][0 .. 8 V), for r < R (a: a sliver, kRows floats a pixel; b: a panel, 8 V).
template <int R, int V>
inline void tile(int64_t pb, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  __m256 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[r][v] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8 * v) : _mm256_setzero_ps();
  for (int64_t p = 0; p < pb; ++p, a += lda, b += ldb) {
    __m256 bv[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
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
inline void tile_rows(int rows, int64_t pb, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                      int64_t ldc, bool accumulate) {
  switch (rows) {
    case 1: return tile<1, V>(pb, a, lda, b, ldb, c, ldc, accumulate);
    case 2: if constexpr (kRows >= 2) return tile<2, V>(pb, a, lda, b, ldb, c, ldc, accumulate); break;
    case 3: if constexpr (kRows >= 3) return tile<3, V>(pb, a, lda, b, ldb, c, ldc, accumulate); break;
    case 4: if constexpr (kRows >= 4) return tile<4, V>(pb, a, lda, b, ldb, c, ldc, accumulate); break;
    case 5: if constexpr (kRows >= 5) return tile<5, V>(pb, a, lda, b, ldb, c, ldc, accumulate); break;
    case 6: if constexpr (kRows >= 6) return tile<6, V>(pb, a, lda, b, ldb, c, ldc, accumulate); break;
    default: break;
  }
}

// A tile of `rows` rows and `vecs` vectors (the last panel's may be fewer than kVecs).
inline void tile_any(int rows, int vecs, int64_t pb, const float* a, int64_t lda, const float* b, int64_t ldb,
                     float* c, int64_t ldc, bool accumulate) {
  if (rows == kRows && vecs == kVecs) return tile<kRows, kVecs>(pb, a, lda, b, ldb, c, ldc, accumulate);
  switch (vecs) {
    case 1: return tile_rows<1>(rows, pb, a, lda, b, ldb, c, ldc, accumulate);
    case 2: if constexpr (kVecs >= 2) return tile_rows<2>(rows, pb, a, lda, b, ldb, c, ldc, accumulate); break;
    case 3: if constexpr (kVecs >= 3) return tile_rows<3>(rows, pb, a, lda, b, ldb, c, ldc, accumulate); break;
    case 4: if constexpr (kVecs >= 4) return tile_rows<4>(rows, pb, a, lda, b, ldb, c, ldc, accumulate); break;
    default: break;
  }
}

// out (na x nb) = a^T @ b over pixels [0, pixels) of a (na floats a pixel) and b (nb), and, when
// sums is not null, sums += the column sums of dy (m floats a pixel: a or b). out is written whole
// (zero when pixels == 0).
void weights_run(int64_t pixels, const float* a, const float* b, const float* dy, int64_t m, float* out,
                 double* sums, Packing& pk) {
  const int64_t na = pk.na, nb = pk.nb;
  if (pixels == 0) {
    std::memset(out, 0, sizeof(float) * na * nb);
    return;
  }
  for (int64_t p0 = 0; p0 < pixels; p0 += kBlock) {
    const int64_t pb = std::min(kBlock, pixels - p0);
    // An operand of few channels is read in place (its block, 16 KiB at most, stays in L1).
    const bool pack_b = nb > kPackMin, pack_a = na > kPackMin;
    if (pack_b) pack_panels(pb, b + p0 * nb, pk);
    if (pack_a) pack_slivers(pb, a + p0 * na, pk);
    if (sums) block_sums(pb, dy + p0 * m, m, sums);
    const bool accumulate = p0 > 0;
    for (int64_t j = 0; j < pk.panels; ++j) {
      const float* panel = pack_b ? pk.pp + j * kWidth * kBlock : b + p0 * nb + j * kWidth;
      const int vecs = (int)std::min<int64_t>(kVecs, (nb - j * kWidth) / 8);
      const int64_t ldb = pack_b ? 8 * vecs : nb;
      for (int64_t t = 0; t < pk.tiles; ++t) {
        const int rows = (int)std::min<int64_t>(kRows, na - t * kRows);
        const float* sliver = pack_a ? pk.sp + t * pk.sliver : a + p0 * na + t * kRows;
        tile_any(rows, vecs, pb, sliver, pack_a ? kRows : na, panel, ldb, out + t * kRows * nb + j * kWidth, nb,
                 accumulate);
      }
    }
  }
}

// dw (k x m) = the sum over `parts` dW^T (m x k each, k * m floats apart), added in part order,
// in 8 x 8 blocks (k, m multiples of 8): a column-at-a-time transpose of 512 x 512 wrote dw with
// a 2 KiB stride, slower than the whole product at batch 1 (7x7 512->512: 49 pixels).
void transpose_sum(int64_t k, int64_t m, const float* part, int parts, float* dw) {
  for (int64_t j0 = 0; j0 < m; j0 += 8)
    for (int64_t i0 = 0; i0 < k; i0 += 8) {
      __m256 r[8];
      for (int q = 0; q < 8; ++q) {
        const float* src = part + (j0 + q) * k + i0;
        r[q] = _mm256_loadu_ps(src);
        for (int t = 1; t < parts; ++t) r[q] = _mm256_add_ps(r[q], _mm256_loadu_ps(src + t * k * m));
      }
      // The 8 x 8 transpose: pairs of rows interleaved, then quads, then halves exchanged.
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dw + i0 * m + j0;
      _mm256_storeu_ps(d + 0 * m, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * m, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * m, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * m, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * m, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * m, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * m, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * m, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
}

}  // namespace

bool pointwise_backward_weights_avx2(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                     float* db, int threads) {
  const int64_t k = g.c, m = g.oc;
  if (g.groups != 1 || !g.is_pointwise() || active_gemm_backend() == "native" || k % 8 != 0 ||
      m % 8 != 0 || k > kMaxChannels || m > kMaxChannels)
    return false;
  const int64_t pixels = g.n * g.oh * g.ow, blocks = (pixels + kBlock - 1) / kBlock;
  threads = (int)std::max<int64_t>(1, std::min<int64_t>(threads, blocks));
  // Few pixels or more output channels: dW itself (dy in panels, thread 0 into dw); else dW^T (x
  // in panels), transposed into dw.
  const bool direct = pixels <= kDirectMaxPixels || m > k;
  const float* a = direct ? x : dy;
  const float* b = direct ? dy : x;
  const int64_t na = direct ? k : m, nb = direct ? m : k;
  // Per thread: its packing, its column sums and its product (written whole by its thread).
  std::vector<std::unique_ptr<Packing>> packs;
  for (int t = 0; t < threads; ++t) packs.emplace_back(new Packing(na, nb));
  std::vector<double> sums((size_t)(threads * m), 0.0);
  std::unique_ptr<float[]> part(new float[(threads - (direct ? 1 : 0)) * k * m + 1]);
  int team = 1;
  parallel_region(threads, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    if (t == 0) team = nt;
    // Thread t: blocks [blocks * t / nt, blocks * (t + 1) / nt).
    const int64_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
    const int64_t p0 = b0 * kBlock, p1 = std::min(pixels, b1 * kBlock);
    float* out = direct ? (t == 0 ? dw : part.get() + (t - 1) * k * m) : part.get() + t * k * m;
    weights_run(p1 - p0, a + p0 * na, b + p0 * nb, dy + p0 * m, m, out, db ? sums.data() + t * m : nullptr,
                *packs[t]);
  });
  if (direct) {
    for (int t = 1; t < team; ++t) {
      const float* pt = part.get() + (t - 1) * k * m;
      for (int64_t i = 0; i < k * m; ++i) dw[i] += pt[i];
    }
  } else {
    transpose_sum(k, m, part.get(), team, dw);
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
