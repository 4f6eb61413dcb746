// Few-row forward products against weights packed once per plan, at avx2 (infer_packed_avx2.h;
// issue 18 item 4, helper P, stop 39).
//
// Why: ResNet-18 CIFAR at batch 1 on 2 threads lost to onnxruntime in its 8x8 and 4x4 layers
// (64 and 16 GEMM rows, K = 2304 .. 4608). Under OpenBLAS each such product packs its block of
// W (up to 9.4 MB) and, per column block of cout_split.cpp, all of A on every call; the
// multiply itself is a few hundred microseconds. The plan now packs W once (conv2d_prepare)
// into 16-column panels, and a product runs tiles of 6 rows x 16 columns (12 ymm accumulators,
// one broadcast of A a row and two panel vectors a step, pointwise_tile_avx2.h's shape) with A
// read in place. The reduction goes in slices of kSlice steps: the slice of A stays in L2
// while each panel's slice (kSlice x 64 bytes, in L1) is taken by the row tiles in turn;
// between slices the tile's partial sums wait in y (stored and
// reloaded exactly, so each element is still one chain of FMAs in the order of p: the column
// split between threads changes nothing). Bias (and residual) start the accumulators, the
// activation is applied before the last slice's store.
#include "cpu/infer_packed_avx2.h"

#include <algorithm>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)

namespace {

// Rows and weight size where the plan packs W at avx2: the batch-1 deep layers (8x8 = 64,
// 7x7 = 49, 4x4 = 16 positions). Smaller W (K <= 64 and <= 64 KiB) goes to
// pointwise_avx2.cpp's tiles, which pack per call from L1.
constexpr int64_t kInferPackedMaxRows = 64;
constexpr int64_t kInferPackedMinBytes = int64_t{64} << 10;

constexpr int kRows = 6;        // rows a tile: 12 accumulators, 2 panel vectors, 1 broadcast
constexpr int64_t kSlice = 256;  // reduction steps a slice: 16 KiB of a panel, in L1
constexpr int64_t kAhead = 2048;  // floats the tile prefetches ahead of its panel step (8 KiB: 4 KiB 1.04x, 16 KiB 1.06x at 4x4 512 -> 512)

inline __m256i lanes(int valid) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), idx);
}

struct Cols {
  int n;           // valid columns, 1..16
  __m256i m0, m1;  // their masks in the two halves
};

inline __m256 load8(const float* p, const Cols& c, int half) {
  if (c.n == 16) return _mm256_loadu_ps(p);
  return _mm256_maskload_ps(p, half ? c.m1 : c.m0);
}

template <Activation A>
inline __m256 act8(__m256 v) {
  // max/min return their second operand when either is NaN: NaN stays NaN.
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = _mm256_max_ps(_mm256_setzero_ps(), v);
  if constexpr (A == Activation::Relu6) v = _mm256_min_ps(_mm256_set1_ps(6.f), v);
  return v;
}

template <Activation A>
inline void store16(float* out, __m256 v0, __m256 v1, const Cols& c) {
  v0 = act8<A>(v0), v1 = act8<A>(v1);
  if (c.n == 16) {
    _mm256_storeu_ps(out, v0);
    _mm256_storeu_ps(out + 8, v1);
    return;
  }
  _mm256_maskstore_ps(out, c.m0, v0);
  if (c.n > 8) _mm256_maskstore_ps(out + 8, c.m1, v1);
}

// Rows [0, R) of out's 16 (c.n valid) columns: start from bias (+ residual) when `first`, else
// from out's partial sums; add a[r][p] * panel[p][..] for p < k (a and panel already at the
// slice); store act(sum) when `last`, else the plain sum. Accumulators are named locals (an
// array of them goes to the stack), and the lambdas that take them by reference are forced
// inline: with twice the instantiations GCC left them out of line once, the accumulators went
// to memory and every product took 2-2.7x as long.
template <int R, Activation A>
[[gnu::noinline]] void tile(int64_t k, const float* a, int64_t lda, const float* panel, const float* bias,
                            const float* residual, float* out, int64_t ldo, const Cols& c, bool first, bool last) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  auto init = [&](int r, __m256& v0, __m256& v1) __attribute__((always_inline)) {
    if (!first) {
      v0 = load8(out + r * ldo, c, 0), v1 = load8(out + r * ldo + 8, c, 1);
      return;
    }
    v0 = bias ? load8(bias, c, 0) : _mm256_setzero_ps();
    v1 = bias ? load8(bias + 8, c, 1) : _mm256_setzero_ps();
    if (residual) {  // residual + bias, as init_output_rows
      v0 = _mm256_add_ps(load8(residual + r * ldo, c, 0), v0);
      v1 = _mm256_add_ps(load8(residual + r * ldo + 8, c, 1), v1);
    }
  };
  init(0, c00, c01);
  if constexpr (R > 1) init(1, c10, c11);
  if constexpr (R > 2) init(2, c20, c21);
  if constexpr (R > 3) init(3, c30, c31);
  if constexpr (R > 4) init(4, c40, c41);
  if constexpr (R > 5) init(5, c50, c51);
  const float* a0 = a;
  const float* a1 = a + (R > 1 ? lda : 0);
  const float* a2 = a + (R > 2 ? 2 * lda : 0);
  const float* a3 = a + (R > 3 ? 3 * lda : 0);
  const float* a4 = a + (R > 4 ? 4 * lda : 0);
  const float* a5 = a + (R > 5 ? 5 * lda : 0);
  for (int64_t p = 0; p < k; ++p) {
    // The panels ahead, one line a step (the rate the first row tile reads them): the run of
    // a slice crosses a page every 64 steps, where the hardware prefetchers stop.
    _mm_prefetch((const char*)(panel + p * 16 + kAhead), _MM_HINT_T0);
    const __m256 w0 = _mm256_loadu_ps(panel + p * 16), w1 = _mm256_loadu_ps(panel + p * 16 + 8);
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
  auto put = [&](int r, __m256 v0, __m256 v1) __attribute__((always_inline)) {
    if (last) store16<A>(out + r * ldo, v0, v1, c);
    else store16<Activation::Linear>(out + r * ldo, v0, v1, c);
  };
  put(0, c00, c01);
  if constexpr (R > 1) put(1, c10, c11);
  if constexpr (R > 2) put(2, c20, c21);
  if constexpr (R > 3) put(3, c30, c31);
  if constexpr (R > 4) put(4, c40, c41);
  if constexpr (R > 5) put(5, c50, c51);
}

template <Activation A>
void tile_rows(int r, int64_t k, const float* a, int64_t lda, const float* panel, const float* bias,
               const float* residual, float* out, int64_t ldo, const Cols& c, bool first, bool last) {
  switch (r) {
    case 6: return tile<6, A>(k, a, lda, panel, bias, residual, out, ldo, c, first, last);
    case 5: return tile<5, A>(k, a, lda, panel, bias, residual, out, ldo, c, first, last);
    case 4: return tile<4, A>(k, a, lda, panel, bias, residual, out, ldo, c, first, last);
    case 3: return tile<3, A>(k, a, lda, panel, bias, residual, out, ldo, c, first, last);
    case 2: return tile<2, A>(k, a, lda, panel, bias, residual, out, ldo, c, first, last);
    case 1: return tile<1, A>(k, a, lda, panel, bias, residual, out, ldo, c, first, last);
    default: return;
  }
}

template <Activation A>
void product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol, const GemmPackedB& pb,
             const float* bias, const float* residual, float* y, int64_t ldy) {
  const int64_t n_pad = (pb.n + 15) / 16 * 16;
  // Slices outer: the slice of A (rows x kSlice, 64 KiB at 64 rows) stays in L2 while every
  // panel's slice streams past once (panels outer re-read all of A from L3 per panel: 8x8
  // 256 -> 256 on 2 threads 1.5x the sgemm). The slice's panels are one contiguous run
  // (infer_pack's layout), so a block of columns reads one sequential stream a slice.
  for (int64_t p0 = 0; p0 < k; p0 += kSlice) {
    const int64_t kc = std::min(kSlice, k - p0);
    const bool first = p0 == 0, last = p0 + kc == k;
    const float* slice = pb.data + p0 * n_pad + pb.col0 * kc;
    for (int64_t j = 0; j * 16 < n; ++j) {
      const int64_t c0 = j * 16;
      const int cn = (int)std::min<int64_t>(16, n - c0);
      const Cols c{cn, lanes(std::min(cn, 8)), lanes(std::max(cn - 8, 0))};
      const float* panel = slice + c0 * kc;
      const float* bj = bias ? bias + c0 : nullptr;
      for (int64_t r = 0; r < rows; r += kRows) {
        const int rr = (int)std::min<int64_t>(kRows, rows - r);
        tile_rows<A>(rr, kc, col + r * ldcol + p0, ldcol, panel, bj,
                     residual ? residual + r * ldy + c0 : nullptr, y + r * ldy + c0, ldy, c, first, last);
      }
    }
  }
}

}  // namespace

int64_t infer_packed_floats(const ConvGeometry& g) {
  if (g.groups != 1) return 0;
  const int64_t k = g.win.kh * g.win.kw * g.c, rows = g.n * g.oh * g.ow;
  if (rows > kInferPackedMaxRows || k * g.oc * (int64_t)sizeof(float) < kInferPackedMinBytes) return 0;
  return k * ((g.oc + 15) / 16 * 16);
}

void infer_pack(int64_t k, int64_t n, const float* w, float* dst) {
  const int64_t n_pad = (n + 15) / 16 * 16;
  // Row by row of W (a panel alone would step a whole row of W per 64 bytes, a walk the
  // prefetchers do not follow).
  for (int64_t p0 = 0; p0 < k; p0 += kSlice) {
    const int64_t kc = std::min(kSlice, k - p0);
    float* slice = dst + p0 * n_pad;
    for (int64_t p = 0; p < kc; ++p)
      for (int64_t j = 0; j * 16 < n; ++j) {
        float* d = slice + j * 16 * kc + p * 16;
        const int64_t cn = std::min<int64_t>(16, n - j * 16);
        const float* wr = w + (p0 + p) * n + j * 16;
        std::memcpy(d, wr, sizeof(float) * cn);
        std::fill(d + cn, d + 16, 0.f);
      }
  }
}

bool infer_packed_product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol,
                          const GemmPackedB& packed, const float* bias, const float* residual,
                          Activation act, float* y, int64_t ldy) {
  if (!packed.data || packed.col0 % 16 != 0 || rows <= 0 || n <= 0) return false;
  switch (act) {
    case Activation::Linear: product<Activation::Linear>(rows, n, k, col, ldcol, packed, bias, residual, y, ldy); return true;
    case Activation::Relu: product<Activation::Relu>(rows, n, k, col, ldcol, packed, bias, residual, y, ldy); return true;
    case Activation::Relu6: product<Activation::Relu6>(rows, n, k, col, ldcol, packed, bias, residual, y, ldy); return true;
    default: return false;
  }
}

#else

int64_t infer_packed_floats(const ConvGeometry&) { return 0; }
void infer_pack(int64_t, int64_t, const float*, float*) {}
bool infer_packed_product(int64_t, int64_t, int64_t, const float*, int64_t, const GemmPackedB&, const float*,
                          const float*, Activation, float*, int64_t) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
