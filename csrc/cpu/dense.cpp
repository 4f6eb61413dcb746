// Dense (fully connected) layer on sgemm: x (n, k), w (k, m), y (n, m), all row-major.
// The products are split across OpenMP threads by parallel_sgemm (OpenBLAS itself stays
// single-threaded, see threads.cpp). Narrow layers with k = m (a per-pixel classifier) skip the
// GEMMs: k = m = 5..16 rows in registers (AVX-512), k = m <= 8 otherwise on planes (below).
#include <omp.h>

#include <algorithm>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/dense_regs_avx2.h"
#include "cpu/im2col.h"
#include "cpu/item_team.h"
#include "cpu/parallel.h"
#include "cpu/pixel_transpose.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {
constexpr int64_t kNarrowBias = 64;

// One row of x is a matrix-vector product: the GEMM packs w (all k*m floats) on every call,
// which cost more than the product (LeNet-5's 400x120 dense at batch 1: 3.5 us through the
// GEMM). The row streams w once, column blocks of registers accumulating over k; up to
// kGemvWeights floats of w (1 MiB, the L2) on the calling thread alone, above that shared
// with the item team (gemv_row_split).
constexpr int64_t kGemvWeights = 1 << 18;
// Below AVX-512, w of up to kGemvWideWeights floats (256 KiB: in Zen 3's 512 KiB L2 beside x
// and y) goes in column blocks of up to 8 registers (gemv_chunk), the last one masked at avx2:
// LeNet-5's 400 x 120 classifier at batch 1 ran as 3 blocks of 4 registers and 3 single-
// register chains, each step of k of a single chain waiting out an FMA latency (paired, 1
// thread, Zen 3, avx2: 8.4 -> 7.1 us; 120 x 84 4.2 -> 3.4; 576 x 10 6.6 -> 3.9). Larger w
// streams from the L3, where 8-register blocks were faster at some widths and slower at
// others (1024 x 250 0.82x, 2048 x 128 0.80x; 1600 x 160 1.09x, 1000 x 160 1.12x, 1200 x 200
// 1.03x): there the blocks of kGemvVecs registers, then single ones, stay.
constexpr int64_t kGemvWideWeights = 1 << 16;
constexpr int kGemvVecs = 4;  // below AVX-512, w above kGemvWideWeights: registers per column block

// Columns [j, j + V * kRegLanes) of y = b + x @ w for one row (xi: k floats), in registers;
// the sums run over k in order, from the bias. `last` lanes of the last vector are real
// (AVX-512: a masked load and store; elsewhere last is always kRegLanes).
template <int V>
inline void gemv_block(int64_t k, int64_t m, const float* xi, const float* w, const float* b, int64_t j,
                       int last, float* yi) {
#if defined(__AVX512F__)
  const __mmask16 tail = (__mmask16)((1u << last) - 1u);
  __m512 acc[V];
  for (int v = 0; v < V; ++v) {
    const __mmask16 mk = v == V - 1 ? tail : (__mmask16)0xFFFF;
    acc[v] = b ? _mm512_maskz_loadu_ps(mk, b + j + v * 16) : _mm512_setzero_ps();
  }
  for (int64_t t = 0; t < k; ++t) {
    const __m512 xv = _mm512_set1_ps(xi[t]);
    const float* row = w + t * m + j;
    for (int v = 0; v < V - 1; ++v) acc[v] = _mm512_fmadd_ps(xv, _mm512_loadu_ps(row + v * 16), acc[v]);
    acc[V - 1] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(tail, row + (V - 1) * 16), acc[V - 1]);
  }
  for (int v = 0; v < V; ++v)
    _mm512_mask_storeu_ps(yi + j + v * 16, v == V - 1 ? tail : (__mmask16)0xFFFF, acc[v]);
#elif defined(__AVX2__)
  // As at AVX-512 with ymm registers: the last `last` lanes through a masked load and store
  // (lanes past m read as 0 and are never written), so no column is left to a scalar tail.
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(last), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[V];
  for (int v = 0; v < V - 1; ++v) acc[v] = b ? _mm256_loadu_ps(b + j + v * 8) : _mm256_setzero_ps();
  acc[V - 1] = b ? _mm256_maskload_ps(b + j + (V - 1) * 8, tail) : _mm256_setzero_ps();
  for (int64_t t = 0; t < k; ++t) {
    const __m256 xv = _mm256_set1_ps(xi[t]);
    const float* row = w + t * m + j;
    for (int v = 0; v < V - 1; ++v) acc[v] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(row + v * 8), acc[v]);
    acc[V - 1] = _mm256_fmadd_ps(xv, _mm256_maskload_ps(row + (V - 1) * 8, tail), acc[V - 1]);
  }
  for (int v = 0; v < V - 1; ++v) _mm256_storeu_ps(yi + j + v * 8, acc[v]);
  _mm256_maskstore_ps(yi + j + (V - 1) * 8, tail, acc[V - 1]);
#else
  (void)last;
  f32xR acc[V];
  for (int v = 0; v < V; ++v) {
    if (b)
      std::memcpy(&acc[v], b + j + v * kRegLanes, sizeof acc[v]);
    else
      acc[v] = f32xR{};
  }
  for (int64_t t = 0; t < k; ++t) {
    const float xv = xi[t];
    const float* row = w + t * m + j;
    for (int v = 0; v < V; ++v) {
      f32xR piece;
      std::memcpy(&piece, row + v * kRegLanes, sizeof piece);
      acc[v] += xv * piece;
    }
  }
  for (int v = 0; v < V; ++v) std::memcpy(yi + j + v * kRegLanes, &acc[v], sizeof acc[v]);
#endif
}

// Up to 8 registers of columns per pass over k: 8 independent FMA chains keep the FMA units
// busy (one chain per register waits out the FMA latency on every step of k); below AVX-512
// for w up to kGemvWideWeights floats.
constexpr int kGemvMaxVecs = 8;

template <int V = kGemvMaxVecs>
inline void gemv_chunk(int v, int64_t k, int64_t m, const float* xi, const float* w, const float* b, int64_t j,
                       int last, float* yi) {
  if constexpr (V > 1) {
    if (v < V) return gemv_chunk<V - 1>(v, k, m, xi, w, b, j, last, yi);
  }
  gemv_block<V>(k, m, xi, w, b, j, last, yi);
}

// y = b + x @ w for n rows, each on its own: columns [0, m) in register blocks.
void gemv_rows(int64_t n, int64_t k, int64_t m, const float* x, const float* w, const float* b, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * k;
    float* yi = y + i * m;
    int64_t j = 0;
#if defined(__AVX512F__)
    for (; j < m; j += kGemvMaxVecs * 16) {  // the last vector of the last chunk masked
      const int64_t cols = std::min<int64_t>(kGemvMaxVecs * 16, m - j);
      const int vecs = (int)((cols + 15) / 16), last = (int)(cols - (vecs - 1) * 16);
      gemv_chunk(vecs, k, m, xi, w, b, j, last, yi);
    }
#else
    if (k * m <= kGemvWideWeights) {
#if defined(__AVX2__)
      for (; j < m; j += kGemvMaxVecs * kRegLanes) {  // the last vector of the last chunk masked
        const int64_t cols = std::min<int64_t>(kGemvMaxVecs * kRegLanes, m - j);
        const int vecs = (int)((cols + kRegLanes - 1) / kRegLanes), last = (int)(cols - (vecs - 1) * kRegLanes);
        gemv_chunk(vecs, k, m, xi, w, b, j, last, yi);
      }
#else
      while (j + kRegLanes <= m) {  // whole registers; the last m % kRegLanes columns below
        const int vecs = (int)std::min<int64_t>(kGemvMaxVecs, (m - j) / kRegLanes);
        gemv_chunk(vecs, k, m, xi, w, b, j, kRegLanes, yi);
        j += vecs * kRegLanes;
      }
#endif
    } else {
      for (; j + kGemvVecs * kRegLanes <= m; j += kGemvVecs * kRegLanes)
        gemv_block<kGemvVecs>(k, m, xi, w, b, j, kRegLanes, yi);
      for (; j + kRegLanes <= m; j += kRegLanes) gemv_block<1>(k, m, xi, w, b, j, kRegLanes, yi);
    }
#endif
    if (j < m) {  // the last m % kRegLanes columns, summed in the same order
      for (int64_t c = j; c < m; ++c) yi[c] = b ? b[c] : 0.f;
      for (int64_t t = 0; t < k; ++t)
        for (int64_t c = j; c < m; ++c) yi[c] += xi[t] * w[t * m + c];
    }
  }
}

// part[0 .. m) += x[t .. t + S) @ w[t .. t + S, :), the S rows of w read side by side, each
// front to back, so w streams from memory in a few sequential runs (a pass per block of
// columns down all k rows jumped 4 KB per step: 7.6 ms for a 4096x4096 w on one thread,
// against the GEMM's 5.3, 1 thread, Zen 4). Each column sums the rows in order, whatever S.
template <int64_t S>
inline void gemv_row_pass(int64_t m, const float* x, const float* w, int64_t t, float* part) {
  const float* wr[S];
  for (int64_t r = 0; r < S; ++r) wr[r] = w + (t + r) * m;
  int64_t j = 0;
  // x's S floats broadcast once a pass: GCC re-broadcast them from memory every step (and
  // spilled the row pointers): 1024x1000 with w cold 0.23 -> 0.21 ms (1 thread, Zen 4).
  f32xR xb[S];
  for (int64_t r = 0; r < S; ++r) xb[r] = f32xR{} + x[t + r];
  for (; j + kRegLanes <= m; j += kRegLanes) {
    f32xR acc = loadR(part + j);
    for (int64_t r = 0; r < S; ++r) acc += xb[r] * loadR(wr[r] + j);
    storeR(part + j, acc);
  }
  for (; j < m; ++j)
    for (int64_t r = 0; r < S; ++r) part[j] += x[t + r] * wr[r][j];
}

// part[0 .. m) = x[t0 .. t1) @ w[t0 .. t1, :). kGemvStreams = 16 rows side by side: a w read
// from memory (a classifier in a network's forward pass, its weights long out of the L3)
// comes in faster the more runs are in flight: 1024x1000 with w cold, 1 thread, Zen 4:
// 4 rows 0.31 ms, 8 rows 0.25, 12 rows 0.25, 16 rows 0.21 (OpenBLAS's sgemv 0.19; 2048x1000
// 0.53 -> 0.37, OpenBLAS 0.39); 20 rows 0.33, 32 rows 0.44 (registers spill). With w in the
// L3 (the same w call after call) 16 rows are up to 10% slower than 4 at 1 thread (1024x1000
// 0.064 -> 0.070 ms, in the noise at 2 threads): a network's classifier weights are not
// there between two forward passes. Software prefetch (next rows, or ahead in the rows) did
// not help (16 rows: 0.28, 0.29 cold). The rows past a multiple of 16 go by 4, then one at
// a time (no padding rows: 0 * an inf weight would make NaN).
constexpr int64_t kGemvStreams = 16;
void gemv_row_block(int64_t m, const float* x, const float* w, int64_t t0, int64_t t1, float* part) {
  std::fill(part, part + m, 0.f);
  int64_t t = t0;
  for (; t + kGemvStreams <= t1; t += kGemvStreams) gemv_row_pass<kGemvStreams>(m, x, w, t, part);
  for (; t + 4 <= t1; t += 4) gemv_row_pass<4>(m, x, w, t, part);
  for (; t < t1; ++t) gemv_row_pass<1>(m, x, w, t, part);
}

// One row against a w too large for the L2 (a classifier at batch 1: ResNet-50's 2048x1000,
// 8 MB): the GEMM would pack all of w first (0.76 ms for ResNet-50's on 2 threads of the
// Zen 4). Blocks of kGemvItemRows rows of w are work items of the item team (item_team.h),
// each summing its rows' products into its own partial row; the caller never waits for a
// helper that is not awake, and two cores stream w faster than one. The partials are added
// in block order, so the result does not depend on the thread count.
constexpr int64_t kGemvItemRows = 256;
void gemv_row_split(int64_t k, int64_t m, const float* x, const float* w, const float* b, float* y) {
  const int64_t items = (k + kGemvItemRows - 1) / kGemvItemRows;
  std::vector<float> parts((size_t)(items * m));  // k*m/256 floats: 1/256 of w
  auto item = [&](int64_t i, int) {
    gemv_row_block(m, x, w, i * kGemvItemRows, std::min(k, (i + 1) * kGemvItemRows), parts.data() + i * m);
  };
  if (item_team_enabled() && run_items_slots() > 1) {
    run_items(items, item);
  } else {
    for (int64_t i = 0; i < items; ++i) item(i, 0);
  }
  for (int64_t j = 0; j < m; ++j) {
    float sum = b ? b[j] : 0.f;
    for (int64_t i = 0; i < items; ++i) sum += parts[(size_t)(i * m + j)];
    y[j] = sum;
  }
}

// The backward of a dense layer with as few inputs as outputs, k = m = C <= 8 (a per-pixel
// classifier over 3 or 6 features): three GEMMs of inner size <= 8 or outer size <= 8 are
// memory-bound, and OpenBLAS's packing and edge kernels ran them at a tenth of copy speed
// ((28672, 3): dx, dw, db in 0.27 ms; (28672, 6) 0.30 ms; 1 thread, Zen 4). Here one pass
// over the rows does all three: L rows of dy and x at a time are split into C planar
// registers (pixel_transpose.h), dx = dy @ w^T is formed in the planes (w's entries
// broadcast) and merged back, and dw = x^T @ dy and db = column sums of dy accumulate per
// lane in float, folded into double every kFoldBlocks blocks (the error of a 64-term float
// sum, as parallel.h's column_reduce). Rows split across the threads in contiguous shares,
// partials added in thread order: deterministic for a thread count. The last rows of a share
// (< L) are summed one by one, in double.
constexpr int64_t kFoldBlocks = 64;

// The whole blocks of rows [b0, b1): dx stored, dw's and db's sums added into total (double).
// The time goes to the splits and the merge (C = 6: 90 permutes and blends per 16 rows, against
// 36 + 36 multiply-adds): C = 6 at 4x C = 3's time per row. Spilling dw's 36 accumulators is
// not the cost: two passes of 18 each measured no faster.
template <int C>
void backward_pass(int64_t b0, int64_t b1, const float* dy, const float* x, const float* w, float* dx,
                   bool want_dw, double* __restrict total) {
  namespace pt = detail::pixel_transpose;
  pt::vec aw[C][C] = {}, ab[C] = {};
  for (int64_t r = b0; r < b1; r += pt::L) {
    pt::vec g[C], xp[C];
    pt::load_split<C>(dy + r * C, g);
    if (dx) {
      pt::vec o[C];
#pragma GCC unroll 8
      for (int i = 0; i < C; ++i) {
        o[i] = g[0] * w[i * C];
#pragma GCC unroll 8
        for (int j = 1; j < C; ++j) o[i] += g[j] * w[i * C + j];
      }
      pt::merge_store<C>(dx + r * C, o);
    }
    if (want_dw) {
      pt::load_split<C>(x + r * C, xp);
#pragma GCC unroll 8
      for (int i = 0; i < C; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < C; ++j) aw[i][j] += xp[i] * g[j];
    }
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) ab[j] += g[j];
  }
  for (int l = 0; l < pt::L; ++l) {
    for (int i = 0; i < C; ++i)
      for (int j = 0; j < C; ++j) total[i * C + j] += (double)aw[i][j][l];
    for (int j = 0; j < C; ++j) total[C * C + j] += (double)ab[j][l];
  }
}

// The driver of the one-pass backwards: pass(b0, b1, total) over the whole blocks of L rows of
// each thread's share, kFoldBlocks at a time (its float lane sums folded into double `total`).
template <int C, typename Pass>
void dense_backward_one_pass(int64_t n, const float* dy, const float* x, const float* w, float* dx,
                             float* dw, float* db, Pass pass) {
  namespace pt = detail::pixel_transpose;
  constexpr int S = C * C + C;  // dw (C x C), then db
  std::vector<double> part((size_t)omp_get_max_threads() * S, 0.0);
  int used = 1;
  parallel_region(n * C >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
    used = nt;
    double* __restrict total = part.data() + (int64_t)t * S;
    const int64_t r0 = n * t / nt, r1 = n * (t + 1) / nt, whole = r0 + (r1 - r0) / pt::L * pt::L;
    for (int64_t b0 = r0; b0 < whole; b0 += kFoldBlocks * pt::L) {
      const int64_t b1 = std::min(whole, b0 + kFoldBlocks * pt::L);
      pass(b0, b1, total);
    }
    for (int64_t r = whole; r < r1; ++r) {
      const float* g = dy + r * C;
      for (int i = 0; i < C; ++i) {
        if (dx) {
          float o = g[0] * w[i * C];
          for (int j = 1; j < C; ++j) o += g[j] * w[i * C + j];
          dx[r * C + i] = o;
        }
        for (int j = 0; j < C && dw; ++j) total[i * C + j] += (double)x[r * C + i] * (double)g[j];
      }
      for (int j = 0; j < C; ++j) total[C * C + j] += (double)g[j];
    }
  });
  std::vector<double> sum((size_t)S, 0.0);
  for (int t = 0; t < used; ++t)
    for (int s = 0; s < S; ++s) sum[(size_t)s] += part[(size_t)(t * S + s)];
  if (dw)
    for (int s = 0; s < C * C; ++s) dw[s] = (float)sum[(size_t)s];
  if (db)
    for (int j = 0; j < C; ++j) db[j] = (float)sum[(size_t)(C * C + j)];
}

template <int C>
void dense_backward_planes(int64_t n, const float* dy, const float* x, const float* w, float* dx,
                           float* dw, float* db) {
  dense_backward_one_pass<C>(n, dy, x, w, dx, dw, db, [&](int64_t b0, int64_t b1, double* total) {
    backward_pass<C>(b0, b1, dy, x, w, dx, dw != nullptr, total);
  });
}

// The forward at k = m = C <= 8 the same way: y = b + x @ w down the planes of L rows of x,
// merged back; OpenBLAS plus the bias pass ran (28672, 6) in 0.13 ms, 0.16 of copy speed.
template <int C>
void dense_forward_planes(int64_t n, const float* x, const float* w, const float* b, float* y) {
  namespace pt = detail::pixel_transpose;
  auto rows = [&](const auto& xp, auto& o) {  // one row (floats), or L rows' planes
#pragma GCC unroll 8
    for (int t = 0; t < C; ++t) {
      o[t] = xp[0] * w[t] + (b ? b[t] : 0.f);
#pragma GCC unroll 8
      for (int j = 1; j < C; ++j) o[t] += xp[j] * w[j * C + t];
    }
  };
  parallel_region(n * C >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t r0 = n * t / nt, r1 = n * (t + 1) / nt, whole = r0 + (r1 - r0) / pt::L * pt::L;
    for (int64_t r = r0; r < whole; r += pt::L) {
      pt::vec xp[C], o[C];
      pt::load_split<C>(x + r * C, xp);
      rows(xp, o);
      pt::merge_store<C>(y + r * C, o);
    }
    for (int64_t r = whole; r < r1; ++r) {
      float o[C];
      rows(x + r * C, o);
      std::memcpy(y + r * C, o, sizeof o);
    }
  });
}

// k = m = 5..8 at avx2: rows in ymm registers (dense_regs_avx2.h). 1 thread, ms planes /
// registers, paired, avx2 (stop 38, benchmarks/RESULTS.md): forward (28672, 6) 0.143/0.065,
// (14336, 8) 0.124/0.038; backward (14336, 6) 0.108/0.046, (28672, 6) 0.217/0.087, (14336, 8)
// 0.196/0.106; forward (14336, 3) 0.020/0.015, (28672, 3) 0.045/0.032, (14336, 4) 0.037/0.018;
// backward (14336, 4) 0.048/0.033. The backward at k = 3 stays on the planes (even: 0.029/0.028,
// (28672, 3) 0.056/0.056).
#if defined(__AVX2__) && !defined(__AVX512F__)
constexpr int64_t kRegsMinWidth = 3, kRegsMinWidthBackward = 4;
template <int C>
void dense_forward_regs(int64_t n, const float* x, const float* w, const float* b, float* y) {
  const detail::dense_regs::Padded<C> p(w, false, b);
  parallel_region(n * C >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    detail::dense_regs::forward_rows<C>(n * t / nt, n * (t + 1) / nt, x, p, y);
  });
}
// k = m = 9..16 (forward): two ymm a row (dense_regs_avx2.h forward_rows_wide). 1 thread, ms
// GEMM + bias / registers, paired, avx2 (stop 38): (3136, 16) 0.069/0.028, (14336, 16)
// 0.182/0.079, (14336, 12) 0.126/0.058, (14336, 9) 0.134/0.057.
template <int C>
void dense_forward_regs_wide(int64_t n, const float* x, const float* w, const float* b, float* y) {
  const detail::dense_regs::PaddedWide<C> p(w, b);
  parallel_region(n * C >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    detail::dense_regs::forward_rows_wide<C>(n * t / nt, n * (t + 1) / nt, x, p, y);
  });
}
// fn(std::integral_constant<int, C>) for C = 9..16; false for other widths.
template <typename Fn>
bool with_wide_width(int64_t c, Fn fn) {
  switch (c) {
#define FASTCONV_WIDTH(k) \
  case k:                 \
    fn(std::integral_constant<int, k>{}); \
    return true;
    FASTCONV_WIDTH(9) FASTCONV_WIDTH(10) FASTCONV_WIDTH(11) FASTCONV_WIDTH(12)
    FASTCONV_WIDTH(13) FASTCONV_WIDTH(14) FASTCONV_WIDTH(15) FASTCONV_WIDTH(16)
#undef FASTCONV_WIDTH
    default:
      return false;
  }
}
template <int C>
void dense_backward_regs(int64_t n, const float* dy, const float* x, const float* w, float* dx, float* dw,
                         float* db) {
  const detail::dense_regs::Padded<C> p(w, true, nullptr);  // w's columns
  dense_backward_one_pass<C>(n, dy, x, w, dx, dw, db, [&](int64_t b0, int64_t b1, double* total) {
    detail::dense_regs::backward_rows<C>(b0, b1, n, dy, x, p, dx, dw != nullptr, total);
  });
}
#endif

#if defined(__AVX512F__)
// k = m = K in 5..16 (AVX-512): a row of x, y, dy or dx is one register (K lanes), and w's K
// rows (forward) or columns (dx = dy @ w^T) fit in K registers, so y = b + x @ w is K FMAs a
// row with x's floats broadcast from memory ({1to16} operands), no GEMM, no packing, no bias
// pass, no splits. sgemm + the bias pass ran (14336, 16) in 0.118 ms, 0.068 here; the
// backward's two GEMMs and column sums (28672, 16) 0.50 ms, 0.27 here; K = 6 (planes before):
// forward (28672, 6) 0.048 -> 0.033, backward 0.108 -> 0.064 (1 thread, Zen 4, paired; more
// at with_register_width). Rows of the backward's dw, db sums: dense_backward_one_pass.
// kRowsInFlight rows at a time: each row is a chain of K dependent FMAs, and Zen 4 needs ~4
// in flight to issue one 512-bit FMA a cycle (8 rows: 16 + 8 + 1 registers of the 32).
constexpr int kRowsInFlight = 8;

// A row of K <= 16 floats as one register, lanes past K zero: 256-bit for K <= 8 (Zen 4 runs
// a 512-bit operation as two 256-bit halves: half the work), 512-bit above.
template <bool kWide>
struct RowRegType {
  using V = __m512;
  using M = __mmask16;
};
template <>
struct RowRegType<false> {
  using V = __m256;
  using M = __mmask8;
};
template <int K>
struct RowReg {
  static constexpr bool kWide = K > 8;
  using V = typename RowRegType<kWide>::V;
  using M = typename RowRegType<kWide>::M;
  static constexpr M kMask = (M)((1u << K) - 1u);
  static V zero() {
    if constexpr (kWide) return _mm512_setzero_ps(); else return _mm256_setzero_ps();
  }
  static V load(const float* p) {
    if constexpr (kWide) return _mm512_maskz_loadu_ps(kMask, p); else return _mm256_maskz_loadu_ps(kMask, p);
  }
  static void store(float* p, V v) {
    if constexpr (kWide) _mm512_mask_storeu_ps(p, kMask, v); else _mm256_mask_storeu_ps(p, kMask, v);
  }
  static V fma(float a, V b, V c) {  // a * b + c, a broadcast (a memory operand where a is in memory)
    if constexpr (kWide) return _mm512_fmadd_ps(_mm512_set1_ps(a), b, c); else return _mm256_fmadd_ps(_mm256_set1_ps(a), b, c);
  }
  static V add(V a, V b) {
    if constexpr (kWide) return _mm512_add_ps(a, b); else return _mm256_add_ps(a, b);
  }
  // acc[0 .. 16) += v's lanes in double (lanes past K are 0). acc is a whole aligned line
  // pair per register: masked read-modify-writes of the packed totals (K = 6: overlapping
  // lines, each load waiting on the previous fold's store) took a quarter of the backward.
  static void fold(V v, double* acc) {
    __m256 halves[2];
    if constexpr (kWide) {
      halves[0] = _mm512_maskz_extractf32x8_ps(0xFF, v, 0);  // (maskz forms: no GCC 12
      halves[1] = _mm512_maskz_extractf32x8_ps(0xFF, v, 1);  // undefined-value warnings)
    } else {
      halves[0] = v;
    }
    for (int h = 0; h < (kWide ? 2 : 1); ++h)
      _mm512_store_pd(acc + 8 * h, _mm512_add_pd(_mm512_load_pd(acc + 8 * h), _mm512_maskz_cvtps_pd(0xFF, halves[h])));
  }
};

// acc[i] += sum over t of x[i][t] * wr[t] for R rows of K floats at x, t in order.
template <int K, int R, typename V>
inline void rows_times(const float* x, const V (&wr)[K], V (&acc)[R]) {
#pragma GCC unroll 16
  for (int t = 0; t < K; ++t)
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) acc[i] = RowReg<K>::fma(x[i * K + t], wr[t], acc[i]);
}

// Rows [r0, r1) of y = bias + x @ wr (wr[t]: row t of the K x K matrix, lanes past K zero).
template <int K, typename V = typename RowReg<K>::V>
inline void register_rows(int64_t r0, int64_t r1, const float* x, const V (&wr)[K], V bias, float* y) {
  using RR = RowReg<K>;
  int64_t r = r0;
  for (; r + kRowsInFlight <= r1; r += kRowsInFlight) {
    V acc[kRowsInFlight];
    for (int i = 0; i < kRowsInFlight; ++i) acc[i] = bias;
    rows_times<K>(x + r * K, wr, acc);
    for (int i = 0; i < kRowsInFlight; ++i) RR::store(y + (r + i) * K, acc[i]);
  }
  for (; r < r1; ++r) {
    V acc[1] = {bias};
    rows_times<K>(x + r * K, wr, acc);
    RR::store(y + r * K, acc[0]);
  }
}

// m (K x K, row-major) as K rows of 16 floats (zero past K): rows, or columns when `transpose`.
template <int K>
inline void padded_matrix(const float* m, bool transpose, float (&t)[K][16]) {
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < 16; ++j) t[i][j] = j >= K ? 0.f : transpose ? m[j * K + i] : m[i * K + j];
}
template <int K, typename V>
inline void load_rows(const float (&t)[K][16], V (&out)[K]) {
  for (int i = 0; i < K; ++i) out[i] = RowReg<K>::load(t[i]);
}

template <int K>
void dense_forward_registers(int64_t n, const float* x, const float* w, const float* b, float* y) {
  using RR = RowReg<K>;
  parallel_region(n * K >= kParallelGrain ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    alignas(64) float wm[K][16];
    padded_matrix<K>(w, false, wm);
    typename RR::V wr[K];
    load_rows<K>(wm, wr);
    register_rows<K>(n * t / nt, n * (t + 1) / nt, x, wr, b ? RR::load(b) : RR::zero(), y);
  });
}

// The backward's rows [b0, b1) in runs of kFoldRows (dy's and x's run stays in L1 between the
// two loops): dx = dy @ w^T as the forward with w's columns in the registers, then
// dw[i] += x[r][i] * dy[r] (K accumulators) and db += dy[r], folded into double every run
// (a float sum of 64 terms, as the planes path).
constexpr int64_t kFoldRows = 64;
template <int K>
void register_backward_pass(int64_t b0, int64_t b1, const float* dy, const float* x, const float (&wt)[K][16],
                            float* dx, bool want_dw, double* __restrict total) {
  using RR = RowReg<K>;
  using V = typename RR::V;
  alignas(64) double acc[K + 1][16] = {};  // dw's rows, then db; added into total at the end
  for (int64_t s0 = b0; s0 < b1; s0 += kFoldRows) {
    const int64_t s1 = std::min(b1, s0 + kFoldRows);
    if (dx) {
      V wr[K];
      load_rows<K>(wt, wr);
      register_rows<K>(s0, s1, dy, wr, RR::zero(), dx);
    }
    // U rows' sums in separate registers: each accumulator takes one FMA a row, a chain of
    // the FMA's latency (4 cycles), which at K <= 8 (K 256-bit FMAs a row) would bound the loop.
    constexpr int U = K <= 4 ? 4 : K <= 8 ? 2 : 1;
    V aw[U][K], ab[U];
    for (int u = 0; u < U; ++u) {
      ab[u] = RR::zero();
      for (int i = 0; i < K; ++i) aw[u][i] = RR::zero();
    }
    auto row = [&](int u, int64_t r) {
      const V g = RR::load(dy + r * K);
      if (want_dw) {
#pragma GCC unroll 16
        for (int i = 0; i < K; ++i) aw[u][i] = RR::fma(x[r * K + i], g, aw[u][i]);
      }
      ab[u] = RR::add(ab[u], g);
    };
    int64_t r = s0;
    for (; r + U <= s1; r += U)
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) row(u, r + u);
    for (; r < s1; ++r) row(0, r);
    for (int u = 1; u < U; ++u) {
      ab[0] = RR::add(ab[0], ab[u]);
      for (int i = 0; i < K; ++i) aw[0][i] = RR::add(aw[0][i], aw[u][i]);
    }
    if (want_dw)
      for (int i = 0; i < K; ++i) RR::fold(aw[0][i], acc[i]);
    RR::fold(ab[0], acc[K]);
  }
  for (int i = 0; i <= K; ++i)
    for (int j = 0; j < K; ++j) total[i * K + j] += acc[i][j];
}

template <int K>
void dense_backward_registers(int64_t n, const float* dy, const float* x, const float* w, float* dx, float* dw,
                              float* db) {
  alignas(64) float wt[K][16];  // w's columns
  padded_matrix<K>(w, true, wt);
  dense_backward_one_pass<K>(n, dy, x, w, dx, dw, db, [&](int64_t b0, int64_t b1, double* total) {
    register_backward_pass<K>(b0, b1, dy, x, wt, dx, dw != nullptr, total);
  });
}

// fn(std::integral_constant<int, K>) for K = kRegisterMinWidth..16; false for other widths.
// Below 5 the planes paths are as fast or faster, ms at (28672, K), planes / registers
// (1 thread, Zen 4, medians of 3 alternated processes): forward K=3 0.017 / 0.019, K=4 0.025 /
// 0.023, K=5 0.041 / 0.030, K=6 0.048 / 0.033, K=8 0.079 / 0.040; backward K=3 0.027 / 0.047,
// K=4 0.045 / 0.057, K=5 0.075 / 0.071, K=6 0.108 / 0.081, K=7 0.190 / 0.091, K=8 0.285 /
// 0.080 (the planes' splits of 7 and 8 registers spill; backward times before the fold fix
// in RowReg::fold, which took K = 6 from 0.081 to 0.064).
constexpr int64_t kRegisterMinWidth = 5;
template <typename Fn>
bool with_register_width(int64_t c, Fn fn) {
  if (c < kRegisterMinWidth) return false;
  switch (c) {
#define FASTCONV_WIDTH(k) \
  case k:                 \
    fn(std::integral_constant<int, k>{}); \
    return true;
    FASTCONV_WIDTH(1) FASTCONV_WIDTH(2) FASTCONV_WIDTH(3) FASTCONV_WIDTH(4)
    FASTCONV_WIDTH(5) FASTCONV_WIDTH(6) FASTCONV_WIDTH(7) FASTCONV_WIDTH(8)
    FASTCONV_WIDTH(9) FASTCONV_WIDTH(10) FASTCONV_WIDTH(11) FASTCONV_WIDTH(12)
    FASTCONV_WIDTH(13) FASTCONV_WIDTH(14) FASTCONV_WIDTH(15) FASTCONV_WIDTH(16)
#undef FASTCONV_WIDTH
    default:
      return false;
  }
}
#endif

// fn(std::integral_constant<int, C>) for C = 1..8; false for other widths.
template <typename Fn>
bool with_narrow_width(int64_t c, Fn fn) {
  switch (c) {
#define FASTCONV_WIDTH(k) \
  case k:                 \
    fn(std::integral_constant<int, k>{}); \
    return true;
    FASTCONV_WIDTH(1) FASTCONV_WIDTH(2) FASTCONV_WIDTH(3) FASTCONV_WIDTH(4)
    FASTCONV_WIDTH(5) FASTCONV_WIDTH(6) FASTCONV_WIDTH(7) FASTCONV_WIDTH(8)
#undef FASTCONV_WIDTH
    default:
      return false;
  }
}
}  // namespace

namespace detail {

bool dense_backward_few_rows(int64_t n, int64_t k, int64_t m, const float* dy, const float* x, const float* w,
                             float* dx, float* dw, float* db);  // dense_few_rows.cpp
bool dense_forward_few_rows(int64_t n, int64_t k, int64_t m, const float* x, const float* w, const float* b,
                            float* y);  // dense_few_rows_fwd.cpp (avx2)

void column_sums(int64_t rows, int64_t cols, const float* a, float* out) {
  // parallel.h's column reduction: float accumulators folded into double every kReduceRows
  // rows, deterministic for a thread count, rows grouped so few columns still vectorise (a
  // loop per row of 3 columns ran the dense bias gradient at scalar speed).
  std::vector<double> sums((size_t)cols);
  column_reduce(rows, cols, 1, sums.data(), nullptr,
                [&](int64_t r0, int64_t n, float* acc, int64_t, float*) {
    const float* __restrict src = a + r0 * cols;
    float* __restrict s = acc;
    for (int64_t e = 0; e < n * cols; ++e) s[e] += src[e];
  });
  for (int64_t j = 0; j < cols; ++j) out[j] = (float)sums[(size_t)j];
}

}  // namespace detail

void dense_forward(int64_t n, int64_t k, int64_t m, const float* x, const float* w,
                   const float* b, float* y) {
  if (n == 1) {
    if (k * m <= kGemvWeights) return gemv_rows(1, k, m, x, w, b, y);
    return gemv_row_split(k, m, x, w, b, y);
  }
#if defined(__AVX512F__)
  if (k == m && n >= detail::pixel_transpose::L &&
      with_register_width(k, [&](auto c) { dense_forward_registers<decltype(c)::value>(n, x, w, b, y); }))
    return;
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (k == m && k >= kRegsMinWidth && n >= detail::pixel_transpose::L &&
      with_narrow_width(k, [&](auto c) { dense_forward_regs<decltype(c)::value>(n, x, w, b, y); }))
    return;
  if (k == m && n >= detail::pixel_transpose::L &&
      with_wide_width(k, [&](auto c) { dense_forward_regs_wide<decltype(c)::value>(n, x, w, b, y); }))
    return;
#endif
  if (k == m && n >= detail::pixel_transpose::L &&
      with_narrow_width(k, [&](auto c) { dense_forward_planes<decltype(c)::value>(n, x, w, b, y); }))
    return;
  if (detail::dense_forward_few_rows(n, k, m, x, w, b, y)) return;
  if (b && m < kNarrowBias) {
    // Few outputs: the product first, then the bias over flat runs of rows (for_each_run, a
    // tiled bias). Seeding y with the bias and accumulating (beta = 1) made OpenBLAS's sgemm
    // 5-10x slower at m = 1..3 (m = 1: 21 ms against 2.2 without a bias, 1M rows).
    parallel_sgemm(false, false, n, m, k, 1.f, x, k, w, m, 0.f, y, m);
    const std::vector<float> tiled = tile(b, m, row_group(m));
    for_each_run(n, m, y, [&](int64_t r0, int64_t rows, float* out) {
      const float* src = y + r0 * m;  // out may be src itself (no __restrict): same index
      const float* __restrict bias = tiled.data();
      for (int64_t e = 0; e < rows * m; ++e) out[e] = src[e] + bias[e];
    });
    return;
  }
  float beta = 0.f;
  if (b) {  // bias first, then the GEMM accumulates onto it
    for (int64_t i = 0; i < n; ++i) std::memcpy(y + i * m, b, sizeof(float) * m);
    beta = 1.f;
  }
  parallel_sgemm(false, false, n, m, k, 1.f, x, k, w, m, beta, y, m);
}

void dense_backward(int64_t n, int64_t k, int64_t m, const float* dy, const float* x,
                    const float* w, float* dx, float* dw, float* db) {
  // dx (n, k) = dy (n, m) @ w^T;  dw (k, m) = x^T @ dy;  db = column sums of dy.
#if defined(__AVX512F__)
  if (k == m && n >= detail::pixel_transpose::L &&
      with_register_width(k, [&](auto c) { dense_backward_registers<decltype(c)::value>(n, dy, x, w, dx, dw, db); }))
    return;
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
  if (k == m && k >= kRegsMinWidthBackward && n >= detail::pixel_transpose::L &&
      with_narrow_width(k, [&](auto c) { dense_backward_regs<decltype(c)::value>(n, dy, x, w, dx, dw, db); }))
    return;
#endif
  if (k == m && n >= detail::pixel_transpose::L &&
      with_narrow_width(k, [&](auto c) { dense_backward_planes<decltype(c)::value>(n, dy, x, w, dx, dw, db); }))
    return;
  if (detail::dense_backward_few_rows(n, k, m, dy, x, w, dx, dw, db)) return;
  if (dx) parallel_sgemm(false, true, n, k, m, 1.f, dy, m, w, m, 0.f, dx, k);
  if (dw) parallel_sgemm(true, false, k, m, n, 1.f, x, k, dy, m, 0.f, dw, m);
  if (db) detail::column_sums(n, m, dy, db);
}

}  // namespace fastconv::cpu
