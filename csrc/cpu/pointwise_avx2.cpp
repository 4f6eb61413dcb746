// forward_product's GEMM in avx2 register tiles (pointwise_avx2.h; issue 18 item 4, helper I,
// stop 38).
//
// Why: below AVX-512 every forward conv product went to OpenBLAS's sgemm with beta = 1 onto a
// y first filled with the bias (init_output_rows), and the relu / relu6 was one more pass over
// the chunk: three trips over y, and sgemm packs both A and B on each call. MobileNet's batch-1
// pointwise convs are such products: conv_pw_1 (12544 x 32 -> 64, K = 32) is mostly those
// passes and the packing.
//
// Here a tile of up to 6 rows x 16 output columns is 12 ymm accumulators that start from the
// bias, take one K step per iteration (a broadcast of each row's input, the two weight
// vectors of the step from a 16-wide packed panel of W) and get the activation in registers
// before their one store. A is read in place (the 6 rows are 6 sequential streams). W's
// panels (K x 16, zero past n) are packed into the thread's scratch per call, read a row of W
// at a time; blocks of rows (kRowBlockBytes of A, in L1/L2) take every panel in turn. Only
// with K <= 64 and all of W in kPackAllBytes: with K and N larger the products are FMA-bound
// and the sgemm was as fast or faster (pointwise_avx2_product). With a residual, each block
// of y is first set to bias + residual in order (init_output_rows) and the tiles start from
// it: reading the residual in the tiles' stores (6 rows x 64 bytes a panel, 1 KiB apart at 256
// channels) made 56x56 64->256 + residual 1.2x the sgemm's time; from y, 0.80 (1 thread).
#include "cpu/pointwise_avx2.h"

#include "cpu/im2col.h"

#include <algorithm>

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>

#include "cpu/simd.h"
#endif

namespace fastconv::cpu::detail {

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)

namespace {

constexpr int kRows = 6;                               // rows a tile (12 accumulators of 16)
constexpr int64_t kPackAllBytes = int64_t{64} << 10;  // W packed whole up to this, else the sgemm
constexpr int64_t kMaxK = 64;                          // reduction steps (see pointwise_avx2_product)
constexpr int64_t kRowBlockBytes = int64_t{48} << 10;  // rows of A a block (12 KiB: pw_1 0.92 vs 0.65)

// Mask of the first `valid` (0..8) lanes.
inline __m256i lanes(int valid) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), idx);
}

struct Tail {
  int cols;        // valid columns of the panel, 1..16
  __m256i m0, m1;  // their masks in the two halves
};

template <Activation A>
inline __m256 act8(__m256 v) {
  // max/min return their second operand when either is NaN: NaN stays NaN.
  if constexpr (A == Activation::Relu || A == Activation::Relu6) v = _mm256_max_ps(_mm256_setzero_ps(), v);
  if constexpr (A == Activation::Relu6) v = _mm256_min_ps(_mm256_set1_ps(6.f), v);
  return v;
}

// One row's 16 columns: activation, stored (masked past the panel's valid columns).
template <Activation A>
inline void store_row(__m256 v0, __m256 v1, float* out, const Tail& t) {
  if (t.cols == 16) {
    _mm256_storeu_ps(out, act8<A>(v0));
    _mm256_storeu_ps(out + 8, act8<A>(v1));
    return;
  }
  _mm256_maskstore_ps(out, t.m0, act8<A>(v0));
  if (t.cols > 8) _mm256_maskstore_ps(out + 8, t.m1, act8<A>(v1));
}

// out[r][0..cols) = act(init[r] + sum_p a[r][p] * panel[p][..]) for r < R, init the bias (null:
// 0) or, from_y, out's own contents. The accumulators are named locals (an array of them
// passed between helpers went to the stack at every step; strided_pointwise_wide.cpp).
template <int R, Activation A>
[[gnu::noinline]] void tile(int64_t k, const float* a, int64_t lda, const float* panel, const float* bias,
                            float* out, int64_t ldo, Tail t, bool from_y) {
  __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
  if (!from_y && bias) {
    if (t.cols == 16) b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
    else b0 = _mm256_maskload_ps(bias, t.m0), b1 = _mm256_maskload_ps(bias + 8, t.m1);
  }
  __m256 c00 = b0, c01 = b1, c10 = b0, c11 = b1, c20 = b0, c21 = b1;
  __m256 c30 = b0, c31 = b1, c40 = b0, c41 = b1, c50 = b0, c51 = b1;
  if (from_y) {
    auto ld = [&](int r, __m256& v0, __m256& v1) {
      const float* o = out + r * ldo;
      if (t.cols == 16) v0 = _mm256_loadu_ps(o), v1 = _mm256_loadu_ps(o + 8);
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
  store_row<A>(c00, c01, out, t);
  if constexpr (R > 1) store_row<A>(c10, c11, out + ldo, t);
  if constexpr (R > 2) store_row<A>(c20, c21, out + 2 * ldo, t);
  if constexpr (R > 3) store_row<A>(c30, c31, out + 3 * ldo, t);
  if constexpr (R > 4) store_row<A>(c40, c41, out + 4 * ldo, t);
  if constexpr (R > 5) store_row<A>(c50, c51, out + 5 * ldo, t);
}

// W's panels (panel j: columns [16 j, 16 j + 16), zero past n) as k x 16 contiguous floats
// each, panel j at dst + j * k * 16. W is read a row at a time across the panels (one panel
// alone steps a whole row of W per 64 bytes, a walk the prefetchers do not follow).
void pack_panels(int64_t k, int64_t n, const float* w, int64_t ldw, float* dst) {
  const int64_t pf = k * 16, full = n / 16;  // panels without a tail
  for (int64_t p = 0; p < k; ++p) {
    const float* wr = w + p * ldw;
    for (int64_t j = 0; j < full; ++j) {
      float* d = dst + j * pf + p * 16;
      _mm256_store_ps(d, _mm256_loadu_ps(wr + j * 16));
      _mm256_store_ps(d + 8, _mm256_loadu_ps(wr + j * 16 + 8));
    }
  }
  const int64_t cols = n - full * 16;  // the last panel's 0..15 columns
  if (cols == 0) return;
  const __m256i m0 = lanes((int)std::min<int64_t>(cols, 8)), m1 = lanes((int)std::max<int64_t>(cols - 8, 0));
  float* d = dst + full * pf;
  for (int64_t p = 0; p < k; ++p) {
    _mm256_store_ps(d + p * 16, _mm256_maskload_ps(w + p * ldw + full * 16, m0));
    _mm256_store_ps(d + p * 16 + 8, _mm256_maskload_ps(w + p * ldw + full * 16 + 8, m1));
  }
}

// Rows [r0, r1) of y's columns of panel j.
template <Activation A>
void rows_of_panel(int64_t r0, int64_t r1, int64_t n, int64_t k, const float* col, int64_t ldcol,
                   const float* panel, int64_t j, const float* bias, float* y, int64_t ldy, bool from_y) {
  const int64_t c0 = j * 16;
  Tail t;
  t.cols = (int)std::min<int64_t>(16, n - c0);
  t.m0 = lanes(std::min(t.cols, 8)), t.m1 = lanes(std::max(t.cols - 8, 0));
  const float* bj = bias ? bias + c0 : nullptr;
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows)
    tile<kRows, A>(k, col + r * ldcol, ldcol, panel, bj, y + r * ldy + c0, ldy, t, from_y);
  const float* a = col + r * ldcol;
  float* out = y + r * ldy + c0;
  switch (r1 - r) {
    case 5: return tile<5, A>(k, a, ldcol, panel, bj, out, ldy, t, from_y);
    case 4: return tile<4, A>(k, a, ldcol, panel, bj, out, ldy, t, from_y);
    case 3: return tile<3, A>(k, a, ldcol, panel, bj, out, ldy, t, from_y);
    case 2: return tile<2, A>(k, a, ldcol, panel, bj, out, ldy, t, from_y);
    case 1: return tile<1, A>(k, a, ldcol, panel, bj, out, ldy, t, from_y);
    default: return;
  }
}

template <Activation A>
void product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol, const float* w,
             int64_t ldw, const float* bias, const float* residual, float* y, int64_t ldy) {
  const int64_t panels = (n + 15) / 16, panel_floats = k * 16;
  // +16: the scratch aligned to 64 bytes for the aligned panel loads.
  float* buf = scratch(panels * panel_floats + 16);
  float* packed = (float*)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
  pack_panels(k, n, w, ldw, packed);
  const int64_t block = std::max<int64_t>(kRows, kRowBlockBytes / (k * (int64_t)sizeof(float)) / kRows * kRows);
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t r1 = std::min(rows, r0 + block);
    if (residual) init_output_rows(r1 - r0, n, ldy, bias, residual + r0 * ldy, y + r0 * ldy);
    for (int64_t j = 0; j < panels; ++j)
      rows_of_panel<A>(r0, r1, n, k, col, ldcol, packed + j * panel_floats, j, residual ? nullptr : bias, y, ldy,
                       residual != nullptr);
  }
}

}  // namespace

bool pointwise_avx2_product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol,
                            const float* w, int64_t ldw, const float* bias, const float* residual,
                            Activation act, float* y, int64_t ldy) {
  // W packed whole up to kPackAllBytes (64 KiB). Above, the sgemm: paired against it (1 thread,
  // two builds in one process, both orders), 28x28 256->256 (256 KiB) 1.08 / 1.18, 128->256
  // (128 KiB) 1.00 / 1.06, 512->128 0.96 / 1.03 (the same binary with a switch had read
  // 0.90-0.96 on these); a panel of W at a time over all rows, with or without slices of the
  // reduction, 1.01-1.13x at 14x14 512->512, 7x7 512->1024 and 1024->1024 (FMA-bound products:
  // the sgemm's own kernel does as well, and it packs W as these do).
  // And K <= 64: at K = 128 and 256 the products are mostly FMAs, the passes over y saved are
  // a small part, and the pairs were even (56x56 128->128 + relu6 0.93 / 0.98, 56x56 256->64
  // + relu 0.94 / 1.01) or slower (8x28x28 128->128 linear 1.02 / 1.06); at K = 32 and 64 they
  // gain (benchmarks/RESULTS.md, helper I, stop 38).
  if (rows <= 0 || n <= 0 || k <= 0 || k > kMaxK) return false;
  if ((n + 15) / 16 * 16 * k * (int64_t)sizeof(float) > kPackAllBytes) return false;
  switch (act) {
    case Activation::Linear: product<Activation::Linear>(rows, n, k, col, ldcol, w, ldw, bias, residual, y, ldy); return true;
    case Activation::Relu: product<Activation::Relu>(rows, n, k, col, ldcol, w, ldw, bias, residual, y, ldy); return true;
    case Activation::Relu6: product<Activation::Relu6>(rows, n, k, col, ldcol, w, ldw, bias, residual, y, ldy); return true;
    default: return false;
  }
}

#else

bool pointwise_avx2_product(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                            const float*, const float*, Activation, float*, int64_t) {
  return false;
}

#endif

}  // namespace fastconv::cpu::detail
