// Serial AVX-512 SGEMM, BLIS-style (see gemm.h for the contract).
//
// Loop nest, outermost first, for C (m x n) += op(A) (m x k) @ op(B) (k x n):
//   jc: columns of C in panels of NC     -- B panel (KC x NC) packed once, reused over all rows
//   pc: the reduction in slices of KC    -- C is read-modified-written once per slice
//   ic: rows of C in blocks of MC        -- A block (MC x KC) packed, stays in L2
//   jr: NR-wide strips of the B panel    -- the B strip (KC x NR) stays in L1 across ir
//   ir: MR-tall strips of the A block    -- one micro-kernel call: an MR x NR tile of C
// Packing handles the transposes: whatever trans_a/trans_b are, the micro-kernel reads A as
// MR values per k step and B as NR values per k step, both contiguous and zero-padded past
// the matrix edge, so it has one code path; only its stores to C are masked at the edges.
// Exception: when a packed copy would be reused too little to repay the copy (B panel <= 256
// wide for A, C <= 1024 rows for untransposed B), full strips are read in place from the
// matrix and only a short last strip is packed (kInPlaceAMaxN / kInPlaceBMaxM). B read in
// place is prefetched a whole slice ahead (PanelStream): with few rows of C (batch-1 convs:
// 16 rows against 9.4 MB of weights) the product is a stream over B, and fetching each row
// only 8 steps ahead left it waiting on memory (ResNet-18's 4x4 512->512 conv inside a
// predict, 1 thread: 1.6-1.7 -> 1.0-1.2 ms; its 8x8 -> 4x4 stride-2 conv 1.1-1.25 -> 0.7).
//
// Micro-kernel 14 x 32: 28 zmm accumulators + 2 for the B row + 1 for the broadcast A value
// fill the 32 registers. Per k step it does 28 FMAs for 2 vector loads and 14 broadcasts, so
// the two 512-bit FMA pipes of Zen 4/5 (and Skylake-X) stay busy and each accumulator chain
// has 14 cycles between its FMAs (FMA latency 4). A strip only 1..16 columns wide runs the
// 14 x 16 variant instead of computing a half-empty 32-wide tile. The kernels are written over
// the vector type (Z, Y below): FASTCONV_GEMM_WIDTH=256 runs each strip as two 14 x 16 ymm
// halves instead (gemm_width_for says why that is not the default anywhere).
#include "cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "cpu/pixel_transpose.h"

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12's AVX-512 headers build masked loads from an uninitialised vector and then warn
// about it at every use (a known false positive); the loads here are all zero-masked.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same, where the template inlines it
#endif

namespace fastconv::cpu {

int gemm_width_for(const std::string& vendor, int family, const char* env) {
  if (env && *env) {
    const std::string e = env;
    if (e == "256" || e == "512") return std::stoi(e);
    throw std::invalid_argument("FASTCONV_GEMM_WIDTH must be '256' or '512', got '" + e + "'");
  }
  // Zen 4 (AMD family 0x19 with AVX-512; Zen 3, the same family, has none and never runs this
  // level) executes each 512-bit FMA as two 256-bit halves, so the 256-bit kernel was a
  // candidate there; measured on the 2-core Zen 4 guest it was 0-9% slower than the 512-bit
  // one on ResNet-18's conv products and the 1024^3, and 4% / 11% on its training step /
  // predict (a 7 x 32 ymm tile instead of two 14 x 16 halves: up to 17% slower;
  // benchmarks/RESULTS.md, 2026-12-06 Zen 4), so every CPU runs 512-bit unless told otherwise.
  // The vendor and family stay parameters: the rule to change if another part measures so.
  (void)vendor;
  (void)family;
  return 512;
}

namespace {
// CPUID's vendor string and display family (base family, plus the extended family when the
// base is 0xF), or ("", 0) where CPUID is unavailable.
[[maybe_unused]] std::pair<std::string, int> cpu_vendor_family() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return {"", 0};
  char vendor[13];
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  vendor[12] = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return {vendor, 0};
  const int base = (a >> 8) & 0xF;
  return {vendor, base == 0xF ? base + (int)((a >> 20) & 0xFF) : base};
#else
  return {"", 0};
#endif
}
}  // namespace

#if defined(__AVX512F__)
int gemm_width() {
  // Read once: the environment variable is a process-wide override like FASTCONV_ISA.
  static const int width = [] {
    const auto vf = cpu_vendor_family();
    return gemm_width_for(vf.first, vf.second, std::getenv("FASTCONV_GEMM_WIDTH"));
  }();
  return width;
}
#else
int gemm_width() { return 0; }
#endif

#if defined(__AVX512F__)

namespace {

constexpr int kMR = 14;  // rows of the micro-tile
constexpr int kNR = 32;  // columns of the micro-tile (two zmm)

// Cache blocking (Zen 5: 48 KiB L1d, 1 MiB L2 per core, 32 MiB L3). The B strip KC x NR
// (32 KiB at KC = 256) plus the streamed A strip fill L1; the A block MC x KC (336 KiB) sits in
// L2 with room for C tiles; the B panel KC x NC (1 MiB) lives in L2/L3. Measured, see
// benchmarks/bench_gemm.py.
#ifndef FASTCONV_GEMM_KC
#define FASTCONV_GEMM_KC 256
#endif
#ifndef FASTCONV_GEMM_MC
#define FASTCONV_GEMM_MC 336
#endif
#ifndef FASTCONV_GEMM_NC
#define FASTCONV_GEMM_NC 1024
#endif
constexpr int64_t kKC = FASTCONV_GEMM_KC;
constexpr int64_t kMC = FASTCONV_GEMM_MC;  // a multiple of kMR
constexpr int64_t kNC = FASTCONV_GEMM_NC;  // a multiple of kNR
// Operands read in place instead of packed (see gemm_avx512): A when the B panel is at most
// this wide, untransposed B when C has at most this many rows. Measured (best of 41 runs,
// GFLOP/s, packed -> in place): A, 448x64x576 223 -> 249, 576x64x448 (A transposed) 215 -> 251,
// 2048^3 and 256x1000x4096 within noise either way; B, 56x512x4608 205 -> 244, 64x256x256
// 222 -> 245, 128x512x512 217 -> 239, 2048^3 226 -> 219.
#ifndef FASTCONV_GEMM_INPLACE_A_MAX_N
#define FASTCONV_GEMM_INPLACE_A_MAX_N 256
#endif
constexpr int64_t kInPlaceAMaxN = FASTCONV_GEMM_INPLACE_A_MAX_N;
// Untransposed A read in place: the micro-kernel's MR rows lie lda floats apart, and at a
// stride that is a multiple of 2 KiB they fall into at most two of the L1's 64 sets (8 ways
// each), evicting one another every step of k. Such A is packed whatever the panel width.
inline bool rows_alias(int64_t lda) { return (lda * (int64_t)sizeof(float)) % 2048 == 0; }
#ifndef FASTCONV_GEMM_INPLACE_B_MAX_M
#define FASTCONV_GEMM_INPLACE_B_MAX_M 1024
#endif
constexpr int64_t kInPlaceBMaxM = FASTCONV_GEMM_INPLACE_B_MAX_M;
static_assert(kMC % kMR == 0 && kNC % kNR == 0, "blocks must hold whole micro-tiles");

// ---- packing ------------------------------------------------------------------------------

// Transposes the rows x cols corner (rows, cols <= 16) of the row-major block at src (leading
// dimension ld): out[c] holds column c, i.e. src[r * ld + c] in lane r, zero in lanes r >= rows.
// Entries past cols are unspecified-but-finite (zero). The shuffles are pixel_transpose.h's.
inline void transpose16(const float* src, int64_t ld, int rows, int cols, __m512 out[16]) {
  const __mmask16 colmask = (__mmask16)((1u << cols) - 1);
  __m512 r[16];
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(colmask, src + i * ld) : _mm512_setzero_ps();
  detail::pixel_transpose::transpose16(r);
  for (int c = 0; c < 16; ++c) out[c] = r[c];
}

inline __mmask16 low_mask(int64_t count) {  // the first min(count, 16) lanes
  return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1);
}

// The micro-kernel's vector: 512-bit (Z) or 256-bit (Y, with AVX-512VL's masks and its 32
// registers). Zen 4 runs a 512-bit FMA as two 256-bit halves, so the 256-bit kernel has the
// same peak there (see gemm_width_for for which one runs).
struct Z {
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V maskz_load(M m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void mask_store(float* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static M mask(int64_t count) { return low_mask(count); }  // count >= 1
};
struct Y {
  using V = __m256;
  using M = __mmask8;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V maskz_load(M m, const float* p) { return _mm256_maskz_loadu_ps(m, p); }
  static void mask_store(float* p, M m, V v) { _mm256_mask_storeu_ps(p, m, v); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static M mask(int64_t count) {  // any count: the first clamp(count, 0, 8) lanes
    return count >= 8 ? (M)0xFF : count <= 0 ? (M)0 : (M)((1u << count) - 1);
  }
};

// Packs op(A) rows [0, mc) x reduction [0, kc) into MR-tall strips: strip s, step p holds
// op(A)(s*MR + i, p) for i < MR at dst[(s * kc + p) * MR + i], zero for rows past mc.
// op(A)(i, p) = a[i * lda + p], or a[p * lda + i] when trans.
void pack_a(bool trans, const float* a, int64_t lda, int64_t mc, int64_t kc, float* dst) {
  constexpr __mmask16 tile = (1u << kMR) - 1;
  for (int64_t i0 = 0; i0 < mc; i0 += kMR, dst += kc * kMR) {
    const int rows = (int)std::min<int64_t>(kMR, mc - i0);
    if (trans) {  // the MR values of one step are contiguous in A already
      const __mmask16 m = low_mask(rows);
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(dst + p * kMR, tile, _mm512_maskz_loadu_ps(m, a + p * lda + i0));
    } else {  // rows of A are contiguous along k: transpose 16-step blocks
      __m512 col[16];
      for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int cols = (int)std::min<int64_t>(16, kc - p0);
        transpose16(a + i0 * lda + p0, lda, rows, cols, col);
        for (int c = 0; c < cols; ++c) _mm512_mask_storeu_ps(dst + (p0 + c) * kMR, tile, col[c]);
      }
    }
  }
}

// Packs op(B) reduction [0, kc) x columns [0, nc) into NR-wide strips: strip s, step p holds
// op(B)(p, s*NR + j) at dst[(s * kc + p) * NR + j], zero past nc.
// op(B)(p, j) = b[p * ldb + j], or b[j * ldb + p] when trans. Unaligned stores: gemm_pack_b's
// destination is a NumPy array, which need not start on a 64-byte line.
void pack_b(bool trans, const float* b, int64_t ldb, int64_t kc, int64_t nc, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += kNR, dst += kc * kNR) {
    const int64_t cols = std::min<int64_t>(kNR, nc - j0);
    if (!trans) {  // a row of B is contiguous: two masked loads per step
      const __mmask16 m0 = low_mask(cols), m1 = low_mask(cols - 16);
      for (int64_t p = 0; p < kc; ++p) {
        const float* row = b + p * ldb + j0;
        _mm512_storeu_ps(dst + p * kNR, _mm512_maskz_loadu_ps(m0, row));
        _mm512_storeu_ps(dst + p * kNR + 16, cols > 16 ? _mm512_maskz_loadu_ps(m1, row + 16)
                                                       : _mm512_setzero_ps());
      }
    } else {  // columns of op(B) are rows of B: transpose 16 x 16 blocks, two per strip step
      __m512 col[16];
      for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int steps = (int)std::min<int64_t>(16, kc - p0);
        for (int h = 0; h < 2; ++h) {
          const int rows = (int)std::max<int64_t>(0, std::min<int64_t>(16, cols - 16 * h));
          transpose16(b + (j0 + 16 * h) * ldb + p0, ldb, rows, steps, col);
          for (int c = 0; c < steps; ++c) _mm512_storeu_ps(dst + (p0 + c) * kNR + 16 * h, col[c]);
        }
      }
    }
  }
}

// ---- micro-kernel -------------------------------------------------------------------------

// The next B panel (read in place) streamed into L2 two lines at a time while the current
// slice computes: `rows` rows of `row_bytes` each, `ld_bytes` apart (row_bytes is a multiple
// of 128). A stream starts at some byte of the panel (row by row order) and ends at its end.
struct PanelStream {
  const char* row = nullptr;  // null: nothing (left) to fetch
  int64_t col = 0, row_bytes = 0, ld_bytes = 0;
  const char* end = nullptr;  // one past the last row's start

  PanelStream() = default;
  PanelStream(const char* base, int64_t rows, int64_t row_bytes_, int64_t ld_bytes_, int64_t from)
      : col(from % row_bytes_), row_bytes(row_bytes_), ld_bytes(ld_bytes_),
        end(base + rows * ld_bytes_) {
    row = from / row_bytes_ < rows ? base + from / row_bytes_ * ld_bytes_ : nullptr;
  }
  void fetch_two_lines() {
    if (!row) return;
    _mm_prefetch(row + col, _MM_HINT_T1);
    _mm_prefetch(row + col + 64, _MM_HINT_T1);
    if ((col += 128) >= row_bytes) {
      col = 0;
      row += ld_bytes;
      if (row >= end) row = nullptr;
    }
  }
};

// One row of a tile stored under an epilogue (see gemm.h): row i, its bias already at the
// tile's first column, the residual at the tile's first row and column.
template <class T, int NV>
__attribute__((always_inline)) inline void epilogue_row(const typename T::V (&acc)[NV],
                                                        const typename T::V (&bias)[NV],
                                                        const typename T::M* mask, float* ci, int i,
                                                        typename T::V va, typename T::V vb,
                                                        float beta, const GemmEpilogue& ep) {
  using V = typename T::V;
  constexpr int L = T::L;
  const V zero = T::zero(), six = T::set1(6.f);
  for (int v = 0; v < NV; ++v) {
    V r = T::fmadd(acc[v], va, bias[v]);
    if (beta != 0.f) r = T::fmadd(T::maskz_load(mask[v], ci + L * v), vb, r);
    if (ep.residual) r = T::add(r, T::maskz_load(mask[v], ep.residual + i * ep.ldr + L * v));
    // max/min return their second operand when either is NaN: NaN stays NaN.
    if (ep.act != GemmEpilogue::kLinear) r = T::max(zero, r);
    if (ep.act == GemmEpilogue::kRelu6) r = T::min(six, r);
    T::mask_store(ci + L * v, mask[v], r);
  }
}

template <class T, int NV>
__attribute__((always_inline)) inline void epilogue_bias(const typename T::M* mask,
                                                         const GemmEpilogue& ep,
                                                         typename T::V (&bias)[NV]) {
  for (int v = 0; v < NV; ++v) bias[v] = ep.bias ? T::maskz_load(mask[v], ep.bias + T::L * v) : T::zero();
}

// The stores of a tile under an epilogue, its bias and residual pointers already at the
// tile's first column and row. Out of line: the plain stores stay as they were.
template <class T, int NV, int MR>
__attribute__((noinline)) void store_with_epilogue(const typename T::V (&acc)[MR][NV],
                                                   const typename T::M* mask, float* c, int64_t ldc,
                                                   int mr, typename T::V va, typename T::V vb,
                                                   float beta, const GemmEpilogue& ep) {
  typename T::V bias[NV];
  epilogue_bias<T, NV>(mask, ep, bias);
  for (int i = 0; i < mr; ++i) epilogue_row<T, NV>(acc[i], bias, mask, c + i * ldc, i, va, vb, beta, ep);
}

// C[0:mr, 0:nr] = alpha * (A strip @ B strip) + beta * C[0:mr, 0:nr] for one MR-strip of A
// and one NR-strip of B over kc steps. NV = number of 16-wide column vectors computed (2 for a
// full strip, 1 when nr <= 16). beta == 0 never reads C.
// A strip: kRowsA true: MR rows of untransposed A in place, op(A)(i, p) at ap[i * a_stride + p];
// kRowsA false: MR contiguous values per step, op(A)(i, p) at ap[p * a_stride + i] (packed,
// a_stride = MR, or transposed A in place, a_stride = lda).
// B strip: NR contiguous values per step, step p at bp + p * b_step (packed, b_step = NR, or
// untransposed B in place, b_step = ldb).
template <class T, int NV, bool kRowsA, int MR = kMR, bool kAhead = false>
void micro_kernel(int64_t kc, const float* __restrict ap, int64_t a_stride,
                  const float* __restrict bp, int64_t b_step, float* c, int64_t ldc, int mr, int nr,
                  float alpha, float beta, bool prefetch_next_strip = false,
                  PanelStream* ahead = nullptr, const GemmEpilogue* ep = nullptr) {
  using V = typename T::V;
  constexpr int L = T::L;
  V acc[MR][NV];
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = T::zero();
  // The C tile is touched only after the k loop: start fetching it now so its misses overlap
  // the FMAs instead of stalling the stores.
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char*)(c + i * ldc + L * NV - 1), _MM_HINT_T0);
  }
  // Likewise the epilogue's residual tile (a residual block's shortcut, read once and, at
  // batch 64, from memory). One thread, batch 16, 1x1 + residual + relu, GFLOP/s: 56x56
  // 64->256 88-89 -> 96-97, 28x28 128->512 123-126 -> 132-134, 7x7 512->2048 163-170 -> 186-188.
  if (ep && ep->residual)
    for (int i = 0; i < mr; ++i) {
      _mm_prefetch((const char*)(ep->residual + i * ep->ldr), _MM_HINT_T0);
      _mm_prefetch((const char*)(ep->residual + i * ep->ldr + L * NV - 1), _MM_HINT_T0);
    }

  for (int64_t p = 0; p < kc; ++p, ap += kRowsA ? 1 : a_stride, bp += b_step) {
    // In-place rows of A are 14 separate streams, more than the hardware prefetcher follows:
    // once per cache line, fetch each row 1 KiB ahead. Measured on a 25088x64x256 product
    // streamed from memory (a 1x1 conv), one thread: no prefetch 165-193 GFLOP/s, 4 lines
    // ahead 192-202, 8 lines 226-228, 16 lines 232-244 (Winograd's blocks gained too).
    // When a row is no longer than 1 KiB (K <= 256, the 1x1 convs) that lands in the strip's
    // own rows, so each row of the next strip is also fetched 8 lines ahead of where this
    // strip is: on the shared 2-core Xeon (Intel, AVX-512) the same product went 92-94 ->
    // 115-121 GFLOP/s (CPU time), 8 lines ahead beating 4, 12, 16 and two strips ahead.
    if constexpr (kRowsA)
      if ((p & 15) == 0)
#pragma GCC unroll 14
        for (int i = 0; i < MR; ++i) {
          _mm_prefetch((const char*)(ap + i * a_stride + 256), _MM_HINT_T0);
          _mm_prefetch((const char*)(ap + (i + MR) * a_stride + 128), _MM_HINT_T0);
        }
    // B read in place steps a whole row of B (ldb floats) per k step: a stride the hardware
    // prefetcher does not follow across the strip, so each step would wait on L3. Fetch the
    // row 8 steps ahead.
    // B packed once (gemm_pack_b) is read from L3 or memory by the first row strip: the same
    // 8 steps ahead, which runs on into the next strip (contiguous) at the strip's end.
    if (b_step != kNR || (kAhead && prefetch_next_strip)) {
      _mm_prefetch((const char*)(bp + 8 * b_step), _MM_HINT_T0);
      if constexpr (NV * L > 16) _mm_prefetch((const char*)(bp + 8 * b_step + 16), _MM_HINT_T0);
      if (kAhead && prefetch_next_strip && b_step != kNR) {
        _mm_prefetch((const char*)(bp + kNR), _MM_HINT_T0);
        _mm_prefetch((const char*)(bp + kNR + 16), _MM_HINT_T0);
      }
    }
    // Two lines per step of the next B panel, streamed into L2 (see macro_kernel).
    if constexpr (kAhead)
      if (ahead) ahead->fetch_two_lines();
    V bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = T::load(bp + L * v);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      const V ai = T::set1(kRowsA ? ap[i * a_stride] : ap[i]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = T::fmadd(ai, bv[v], acc[i][v]);
    }
  }

  const V va = T::set1(alpha), vb = T::set1(beta);
  typename T::M mask[NV];
  for (int v = 0; v < NV; ++v) mask[v] = T::mask(nr - L * v);
  if (ep) return store_with_epilogue<T, NV, MR>(acc, mask, c, ldc, mr, va, vb, beta, *ep);
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* ci = c + i * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      V r = T::mul(acc[i][v], va);
      if (beta != 0.f) r = T::fmadd(T::maskz_load(mask[v], ci + L * v), vb, r);
      T::mask_store(ci + L * v, mask[v], r);
    }
  }
}

// One tile: at Z, one micro-kernel of NV 16-wide vectors (NV = 2: a 32-wide strip, 1: up to
// 16 columns). At Y, the same columns as 16-wide halves, each a kernel of two ymm per row
// (MR x 2 accumulators, as many registers as the zmm kernel's: a 14 x 32 tile of ymm would
// need 56), so the A strip is read once per half (from L1 the second time). Only the first
// half streams the next panel (`ahead`: its share is counted per strip).
template <class T, int NV, bool kRowsA, int MR = kMR, bool kAhead = false>
void tile(int64_t kc, const float* ap, int64_t a_stride, const float* bp, int64_t b_step,
          float* c, int64_t ldc, int mr, int nr, float alpha, float beta,
          bool prefetch_next_strip = false, PanelStream* ahead = nullptr,
          const GemmEpilogue* ep = nullptr) {
  if constexpr (std::is_same_v<T, Z>) {
    micro_kernel<Z, NV, kRowsA, MR, kAhead>(kc, ap, a_stride, bp, b_step, c, ldc, mr, nr, alpha,
                                            beta, prefetch_next_strip, ahead, ep);
  } else {
    micro_kernel<Y, 2, kRowsA, MR, kAhead>(kc, ap, a_stride, bp, b_step, c, ldc, mr,
                                           std::min(nr, 16), alpha, beta, prefetch_next_strip,
                                           ahead, ep);
    if (NV == 2 && nr > 16) {
      GemmEpilogue right;  // the epilogue moved 16 columns on
      if (ep) {
        right = *ep;
        if (right.bias) right.bias += 16;
        if (right.residual) right.residual += 16;
      }
      micro_kernel<Y, 2, kRowsA, MR, kAhead>(kc, ap, a_stride, bp + 16, b_step, c + 16, ldc, mr,
                                             nr - 16, alpha, beta, prefetch_next_strip, nullptr,
                                             ep ? &right : nullptr);
    }
  }
}

// A packed strip of mr < MR rows (the last strip of a block; at batch 1 often the only one)
// runs a kernel computing exactly mr rows: the 14-row kernel would spend 14 rows of FMAs on
// it. A conv at 4x4 output (16 rows = 14 + 2) spent 47% of its time on the 2-row strip.
template <class T, int R>
void short_strip_rows(int nr, int64_t kc, const float* as, int64_t a_step, const float* bs,
                      int64_t b_step, float* c, int64_t ldc, float alpha, float beta,
                      const GemmEpilogue* ep) {
  if (nr > 16)
    tile<T, 2, false, R>(kc, as, a_step, bs, b_step, c, ldc, R, nr, alpha, beta, false, nullptr, ep);
  else
    tile<T, 1, false, R>(kc, as, a_step, bs, b_step, c, ldc, R, nr, alpha, beta, false, nullptr, ep);
}

template <class T, int... Rs>
void short_strip_dispatch(std::integer_sequence<int, Rs...>, int mr, int nr, int64_t kc,
                          const float* as, int64_t a_step, const float* bs, int64_t b_step,
                          float* c, int64_t ldc, float alpha, float beta,
                          const GemmEpilogue* ep) {
  // Exactly one R + 1 equals mr (1 <= mr < MR).
  ((mr == Rs + 1 ? short_strip_rows<T, Rs + 1>(nr, kc, as, a_step, bs, b_step, c, ldc, alpha, beta, ep)
                 : void()),
   ...);
}

template <class T>
void short_strip_kernel(int mr, int nr, int64_t kc, const float* as, int64_t a_step,
                        const float* bs, int64_t b_step, float* c, int64_t ldc, float alpha,
                        float beta, const GemmEpilogue* ep) {
  // A 13-row kernel is the 14-row one less a row, but GCC 12 (-O2) spills one of its B vectors
  // to the stack (13 extra loads per k step): 27-row products (the stride-2 conv's interior
  // columns, its backward data's last tap) ran at 112 GFLOP/s where 28 rows ran at 142 (one
  // thread, the Xeon, operands in cache). A packed strip is zero-padded to MR rows, so the
  // 14-row kernel computes it exactly with one wasted row and stores only mr rows: 112 -> 136.
  if (mr == kMR - 1) {
    if (nr > 16)
      tile<T, 2, false>(kc, as, a_step, bs, b_step, c, ldc, mr, nr, alpha, beta, false, nullptr, ep);
    else
      tile<T, 1, false>(kc, as, a_step, bs, b_step, c, ldc, mr, nr, alpha, beta, false, nullptr, ep);
    return;
  }
  short_strip_dispatch<T>(std::make_integer_sequence<int, kMR - 2>{}, mr, nr, kc, as, a_step, bs,
                       b_step, c, ldc, alpha, beta, ep);
}

// ---- shallow products: whole rows of C per tile -----------------------------------------
// A product with a short reduction (k <= kShallowMaxK: 1x1 convs of few input channels, such
// as MobileNet's 112x112 32->64) does only k FMAs per accumulator, so what the 14 x 32 tile
// costs beside them -- its C prefetches, the accumulators spilled for the out-of-line
// epilogue, each A row read once per 32-column strip -- is a large share of it. Here a tile
// is R rows x up to 64 columns (NV vectors), A read in place (R rows, one broadcast per row
// and step), B (k x n) from L1/L2, and the epilogue applied in registers. Rows outermost:
// each block of A rows is read from memory once for all of C's columns, and each row of C is
// written whole. Measured on the 2-vCPU Zen 4 (1 thread, CPU time, medians of 5 alternating
// runs, conv2d_forward 1x1 + bias + relu6 with packed weights, blocked -> shallow, ms):
// 112x112 32->64 batch 64 48.6 -> 34.5, batch 1 0.64 -> 0.53; 56x56 64->128 batch 64 42.7 ->
// 38.9, batch 1 0.53 -> 0.51; but k = 128 (56x56 128->128, 28x28 128->256) 0-10% slower at
// batch 64 (B, 64 KiB and more, no longer in L1), so the limit is 64.
#ifndef FASTCONV_GEMM_SHALLOW_MAX_K
#define FASTCONV_GEMM_SHALLOW_MAX_K 64
#endif
constexpr int64_t kShallowMaxK = FASTCONV_GEMM_SHALLOW_MAX_K;
constexpr int kShallowRows = 6;  // 6 x 4 accumulators + 4 B vectors + a broadcast
constexpr int kShallowVecs = 4;

// B of a shallow product: vector v of step p at col[v] + p * step (lanes past the mask zero).
struct ShallowB {
  const float* col[kShallowVecs];
  int64_t step;
  __mmask16 mask[kShallowVecs];
};

template <int R, int NV>
void shallow_tile(int64_t k, const float* __restrict a, int64_t lda, const ShallowB& b, float* c,
                  int64_t ldc, float alpha, float beta, const GemmEpilogue& ep) {
  // B's pointers and masks in locals: read through `b` in the loop, GCC kept the accumulators
  // in memory (a store of all of them per step).
  const float* col[NV];
  __mmask16 mask[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) col[v] = b.col[v], mask[v] = b.mask[v];
  const int64_t step = b.step;
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], col[v] + p * step);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * lda + p]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
  }
  // The epilogue in registers: row by row, unrolled (a loop indexing acc kept it in memory).
  __m512 bias[NV];
  epilogue_bias<Z, NV>(mask, ep, bias);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) epilogue_row<Z, NV>(acc[i], bias, mask, c + i * ldc, i, va, vb, beta, ep);
}

template <int R>
void shallow_tile_nv(int nv, int64_t k, const float* a, int64_t lda, const ShallowB& b, float* c,
                     int64_t ldc, float alpha, float beta, const GemmEpilogue& ep) {
  switch (nv) {
    case 1: return shallow_tile<R, 1>(k, a, lda, b, c, ldc, alpha, beta, ep);
    case 2: return shallow_tile<R, 2>(k, a, lda, b, c, ldc, alpha, beta, ep);
    case 3: return shallow_tile<R, 3>(k, a, lda, b, c, ldc, alpha, beta, ep);
    default: return shallow_tile<R, 4>(k, a, lda, b, c, ldc, alpha, beta, ep);
  }
}

template <int... Rs>
void shallow_tail(std::integer_sequence<int, Rs...>, int mr, int nv, int64_t k, const float* a,
                  int64_t lda, const ShallowB& b, float* c, int64_t ldc, float alpha, float beta,
                  const GemmEpilogue& ep) {
  // Exactly one R + 1 equals mr (1 <= mr < kShallowRows).
  ((mr == Rs + 1 ? shallow_tile_nv<Rs + 1>(nv, k, a, lda, b, c, ldc, alpha, beta, ep) : void()), ...);
}

// C = act(alpha * A @ B + beta * C + bias + residual) for untransposed A (m x k, k <=
// kShallowMaxK) read in place, B untransposed in place (packed_b null) or packed once.
void shallow_product(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                     const float* b, int64_t ldb, const GemmPackedB* packed_b, float beta, float* c,
                     int64_t ldc, const GemmEpilogue* epilogue) {
  const GemmEpilogue none;
  const int64_t width = kShallowVecs * 16;
  for (int64_t i = 0; i < m; i += kShallowRows) {
    const int mr = (int)std::min<int64_t>(kShallowRows, m - i);
    for (int64_t j = 0; j < n; j += width) {
      const int64_t nr = std::min(width, n - j);
      const int nv = (int)((nr + 15) / 16);
      ShallowB sb;
      for (int v = 0; v < kShallowVecs; ++v) {
        const int64_t col = j + 16 * v;
        sb.mask[v] = v < nv ? low_mask(nr - 16 * v) : (__mmask16)0;
        // packed: one slice (k <= kKC), 32-wide strips of k x 32 from column col0 on.
        sb.col[v] = packed_b ? packed_b->data + (packed_b->col0 + col) / kNR * k * kNR + col % kNR
                             : b + std::min(col, n - 1);
      }
      sb.step = packed_b ? kNR : ldb;
      GemmEpilogue ep = epilogue ? *epilogue : none;
      if (ep.bias) ep.bias += j;
      if (ep.residual) ep.residual += i * ep.ldr + j;
      const float* ai = a + i * lda;
      float* ci = c + i * ldc + j;
      if (mr == kShallowRows)
        shallow_tile_nv<kShallowRows>(nv, k, ai, lda, sb, ci, ldc, alpha, beta, ep);
      else
        shallow_tail(std::make_integer_sequence<int, kShallowRows - 1>{}, mr, nv, k, ai, lda, sb, ci,
                     ldc, alpha, beta, ep);
    }
  }
}

// ---- driver -------------------------------------------------------------------------------

// Per-thread packing buffers, 64-byte aligned, sized for the largest blocks once
// ((MC x KC + KC x NC) floats = 1.3 MiB at the default blocking).
struct PackBuffers {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> a, b;
  PackBuffers()
      : a(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kMC * kKC))),
        b(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kKC * kNC))) {
    if (!a || !b) throw std::bad_alloc();
  }
};

PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

// Splits `total` into ceil(total / cap) nearly equal blocks, each rounded up to a multiple of
// `unit` (a 600-deep reduction runs as 3 x 200, not 256 + 256 + 88).
int64_t balanced_block(int64_t total, int64_t cap, int64_t unit) {
  const int64_t blocks = (total + cap - 1) / cap;
  const int64_t each = (total + blocks - 1) / blocks;
  return std::min(cap, (each + unit - 1) / unit * unit);
}

void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.f)
      std::memset(row, 0, sizeof(float) * n);
    else
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
  }
}

// The epilogue on its own (k == 0 or alpha == 0: C holds beta * C already).
void apply_epilogue(int64_t m, int64_t n, float* c, int64_t ldc, const GemmEpilogue& ep) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float r = c[i * ldc + j] + (ep.bias ? ep.bias[j] : 0.f) + (ep.residual ? ep.residual[i * ep.ldr + j] : 0.f);
      if (ep.act != GemmEpilogue::kLinear) r = r < 0.f ? 0.f : r;  // NaN stays NaN
      if (ep.act == GemmEpilogue::kRelu6) r = r > 6.f ? 6.f : r;
      c[i * ldc + j] = r;
    }
}

// An operand block as the macro-kernel sees it: strips read in place from `in_place` (null:
// every strip packed at `packed`), with only a short last strip packed (at `packed`).
struct Block {
  const float* in_place;
  int64_t ld;
  const float* packed;
  bool prepacked = false;  // packed before the call (GemmPackedB): not in cache yet
};

// All tiles of one A block (mc x kc) against one B panel (kc x nc).
// `ahead` (null: none) is the next B panel read in place: the first row strip against each
// full column strip streams its share (kc x 128 bytes, in row order) into L2, so the next
// slice finds its panel there instead of waiting on memory row by row.
// `ep` (null: none) is the epilogue at this block's first row and column.
template <class T>
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, bool trans_a, const Block& a,
                  const Block& b, float alpha, float beta, float* c, int64_t ldc,
                  const PanelStream* ahead = nullptr, const GemmEpilogue* ep = nullptr) {
  for (int64_t j = 0; j < nc; j += kNR) {
    const int nr = (int)std::min<int64_t>(kNR, nc - j);
    const bool b_here = b.in_place && nr == kNR;
    const float* bs = b_here ? b.in_place + j : b.in_place ? b.packed : b.packed + j * kc;
    const int64_t b_step = b_here ? b.ld : kNR;
    for (int64_t i = 0; i < mc; i += kMR) {
      const int mr = (int)std::min<int64_t>(kMR, mc - i);
      float* ct = c + i * ldc + j;
      // B in place: the first row strip also fetches the next column strip of B (the next
      // 128 bytes of each row) a whole strip ahead (see micro_kernel).
      // (prepacked: the 32-wide kernels only, as for B in place, whose `next` needs a full strip)
      const bool next = i == 0 && ((b_here && j + 2 * kNR <= nc) || (b.prepacked && nr > 16));
      PanelStream share;
      if (ahead && b_here && i == 0)
        share = PanelStream(ahead->row, (ahead->end - ahead->row) / ahead->ld_bytes, ahead->row_bytes,
                            ahead->ld_bytes, j / kNR * kc * 128);
      PanelStream* pf = share.row ? &share : nullptr;
      GemmEpilogue tile_ep;  // the epilogue moved to this tile
      const GemmEpilogue* te = nullptr;
      if (ep) {
        tile_ep = *ep;
        if (tile_ep.bias) tile_ep.bias += j;
        if (tile_ep.residual) tile_ep.residual += i * tile_ep.ldr + j;
        te = &tile_ep;
      }
      if (a.in_place && mr == kMR && !trans_a) {
        const float* as = a.in_place + i * a.ld;
        if (next || pf)  // (b_here: a full strip)
          tile<T, 2, true, kMR, true>(kc, as, a.ld, bs, b_step, ct, ldc, mr, nr, alpha, beta, next, pf, te);
        else if (nr > 16)
          tile<T, 2, true>(kc, as, a.ld, bs, b_step, ct, ldc, mr, nr, alpha, beta, false, nullptr, te);
        else
          tile<T, 1, true>(kc, as, a.ld, bs, b_step, ct, ldc, mr, nr, alpha, beta, false, nullptr, te);
      } else {
        const bool a_here = a.in_place && mr == kMR;  // transposed A in place
        const float* as = a_here ? a.in_place + i : a.in_place ? a.packed : a.packed + i * kc;
        const int64_t a_step = a_here ? a.ld : kMR;
        if (mr < kMR)
          short_strip_kernel<T>(mr, nr, kc, as, a_step, bs, b_step, ct, ldc, alpha, beta, te);
        else if (next || pf)
          tile<T, 2, false, kMR, true>(kc, as, a_step, bs, b_step, ct, ldc, mr, nr, alpha, beta, next, pf, te);
        else if (nr > 16)
          tile<T, 2, false>(kc, as, a_step, bs, b_step, ct, ldc, mr, nr, alpha, beta, false, nullptr, te);
        else
          tile<T, 1, false>(kc, as, a_step, bs, b_step, ct, ldc, mr, nr, alpha, beta, false, nullptr, te);
      }
    }
  }
}

}  // namespace

bool gemm_avx512_available() { return true; }

int64_t gemm_packed_b_floats(int64_t k, int64_t n) { return k * ((n + kNR - 1) / kNR * kNR); }

void gemm_pack_b(int64_t k, int64_t n, const float* b, int64_t ldb, float* dst, bool trans) {
  const int64_t kc_max = balanced_block(k, kKC, 1), n_pad = (n + kNR - 1) / kNR * kNR;
  for (int64_t pc = 0; pc < k; pc += kc_max)
    pack_b(trans, trans ? b + pc : b + pc * ldb, ldb, std::min(kc_max, k - pc), n, dst + pc * n_pad);
}

void gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc, bool force_pack_a, const GemmEpilogue* epilogue,
                 const GemmPackedB* packed_b) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    if (epilogue) apply_epilogue(m, n, c, ldc, *epilogue);
    return;
  }
  const bool wide = gemm_width() == 512;
  PackBuffers& buf = pack_buffers();
  // Shallow products (see shallow_product) read A in place whatever force_pack_a says (it is
  // about the blocked kernel's A strips); transposed B is packed first, as the blocked path
  // would, where C is one 64-column group: Winograd's backward data at <= 64 channels (3x3
  // 32x32 64->64 N64, 1 thread, CPU time, medians of 5-9 alternating runs: 0.89-1.02x, three
  // runs). The 28x28 256->64 1x1 backward data (n = 256, B 64 KiB packed per chunk) measured
  // 0.98-1.02x in CPU time and 0.85x in bench_gemm's wall clock: it keeps the blocked path.
  if (wide && !trans_a && k <= kShallowMaxK) {
    if (packed_b || !trans_b)
      return shallow_product(m, n, k, alpha, a, lda, b, ldb, packed_b, beta, c, ldc, epilogue);
    if (n <= kShallowVecs * 16) {
      pack_b(true, b, ldb, k, n, buf.b.get());
      GemmPackedB pb;
      pb.data = buf.b.get(), pb.n = n;
      return shallow_product(m, n, k, alpha, a, lda, nullptr, 0, &pb, beta, c, ldc, epilogue);
    }
  }
  const int64_t kc_max = balanced_block(k, kKC, 1);
  const int64_t mc_max = balanced_block(m, kMC, kMR);
  const int64_t nc_max = balanced_block(n, kNC, kNR);
  // Packing an operand pays off only when the packed copy is reused enough: A is read in
  // place when the B panel has few strips, untransposed B when C has few rows. (Transposed B
  // is always packed: in place its NR values per step would be a strided gather.)
  const bool a_in_place = !force_pack_a && nc_max <= kInPlaceAMaxN && (trans_a || !rows_alias(lda));
  const bool b_in_place = !packed_b && !trans_b && m <= kInPlaceBMaxM;
  const int64_t packed_ld = packed_b ? (packed_b->n + kNR - 1) / kNR * kNR : 0;
  float* const abuf = buf.a.get();
  float* const bbuf = buf.b.get();
  for (int64_t jc = 0; jc < n; jc += nc_max) {
    const int64_t nc = std::min(nc_max, n - jc);
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = std::min(kc_max, k - pc);
      const float* b_panel = packed_b ? nullptr : trans_b ? b + jc * ldb + pc : b + pc * ldb + jc;
      if (packed_b) {
      } else if (!b_in_place) {
        pack_b(trans_b, b_panel, ldb, kc, nc, bbuf);
      } else if (const int64_t full = nc / kNR * kNR; full < nc) {
        pack_b(false, b_panel + full, ldb, kc, nc - full, bbuf);  // the short last strip
      }
      // packed once: this slice's strips from column col0 + jc on (gemm.h GemmPackedB)
      const Block bblock = packed_b ? Block{nullptr, 0, packed_b->data + pc * packed_ld + (packed_b->col0 + jc) * kc, true}
                                    : Block{b_in_place ? b_panel : nullptr, ldb, bbuf};
      const float beta_here = pc == 0 ? beta : 1.f;  // later slices accumulate
      for (int64_t ic = 0; ic < m; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m - ic);
        const float* a_block = trans_a ? a + pc * lda + ic : a + ic * lda + pc;
        if (!a_in_place) {
          pack_a(trans_a, a_block, lda, mc, kc, abuf);
        } else if (const int64_t full = mc / kMR * kMR; full < mc) {
          pack_a(trans_a, trans_a ? a_block + full : a_block + full * lda, lda, mc - full, kc,
                 abuf);  // the short last strip
        }
        const Block ablock{a_in_place ? a_block : nullptr, lda, abuf};
        // B in place: while the first A block runs, stream the next slice's panel (rows
        // pc + kc .. of this column panel) into L2, row by row.
        // After the last slice, the next panel is the first slice of the next column panel.
        const bool last_slice = pc + kc >= k;
        const int64_t next_rows = last_slice ? kc_max : std::min(kc_max, k - pc - kc);
        const int64_t next_cols = last_slice ? std::min(nc_max, n - jc - nc) : nc;
        const float* next_panel = !b_in_place ? nullptr : last_slice ? b + jc + nc : b_panel + kc * ldb;
        const bool stream = b_in_place && ic == 0 && next_cols > 0;
        const PanelStream next((const char*)next_panel, next_rows,
                               (next_cols + kNR - 1) / kNR * kNR * (int64_t)sizeof(float),
                               ldb * (int64_t)sizeof(float), 0);
        GemmEpilogue block_ep;  // the epilogue at this block, after the reduction's last slice
        if (epilogue && last_slice) {
          block_ep = *epilogue;
          if (block_ep.bias) block_ep.bias += jc;
          if (block_ep.residual) block_ep.residual += ic * block_ep.ldr + jc;
        }
        const PanelStream* ahead = stream ? &next : nullptr;
        const GemmEpilogue* ep = epilogue && last_slice ? &block_ep : nullptr;
        if (wide)  // two direct calls, not a pointer: each may be inlined as before
          macro_kernel<Z>(mc, nc, kc, trans_a, ablock, bblock, alpha, beta_here, c + ic * ldc + jc, ldc, ahead, ep);
        else
          macro_kernel<Y>(mc, nc, kc, trans_a, ablock, bblock, alpha, beta_here, c + ic * ldc + jc, ldc, ahead, ep);
      }
    }
  }
}

#else  // no AVX-512 at compile time

bool gemm_avx512_available() { return false; }

int64_t gemm_packed_b_floats(int64_t, int64_t) { return 0; }

void gemm_pack_b(int64_t, int64_t, const float*, int64_t, float*, bool) {
  throw std::runtime_error("gemm_pack_b: fastconv was built without AVX-512 support");
}

void gemm_avx512(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                 const float*, int64_t, float, float*, int64_t, bool, const GemmEpilogue*,
                 const GemmPackedB*) {
  throw std::runtime_error("gemm_avx512: fastconv was built without AVX-512 support");
}

#endif

}  // namespace fastconv::cpu
