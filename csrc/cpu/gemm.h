// fastconv's own single-precision GEMM (gemm.cpp): BLIS-style blocking around an AVX-512
// micro-kernel. Serial: each caller thread runs its own product (the OpenMP policy lives in
// threads.cpp). Compiled in only when the compiler targets AVX-512F (-march=native on an
// AVX-512 CPU); gemm_avx512_available() says whether it was.
#pragma once
#include <cstdint>
#include <string>

namespace fastconv::cpu {

// True when gemm_avx512 was compiled with AVX-512 code (otherwise calling it throws).
bool gemm_avx512_available();

// The vector width, 512 or 256 bits, of the micro-kernels gemm_avx512 runs on a CPU of this
// CPUID vendor string and display family, with FASTCONV_GEMM_WIDTH set to env (null or empty:
// unset; otherwise "256" or "512", anything else throws std::invalid_argument). 512 on every
// CPU so far: the 256-bit kernels measured slower on Zen 4 too (gemm.cpp).
int gemm_width_for(const std::string& vendor, int family, const char* env);
// This process's choice (CPUID and the environment, read once); 0 where gemm_avx512 is not
// compiled in.
int gemm_width();

// C = alpha * op(A) @ op(B) + beta * C, row-major, cblas semantics: op(A) is m x k (A is
// stored k x m when trans_a), op(B) is k x n (stored n x k when trans_b), C is m x n. With
// beta == 0 C's old contents are never read (NaN there does not propagate); with k == 0 or
// alpha == 0 the result is beta * C and A, B are not read. Leading dimensions may exceed
// the row length. No size limit beyond int64. Serial and thread-safe (per-thread buffers).
// A is only read, so lda may also be below A's row length (overlapping rows: conv2d.cpp's
// strided forward reads a kernel row of x per output column that way; cblas rejects it).
// force_pack_a: pack A even where the driver would read it in place (conv2d.cpp's strided and
// pointwise products, measured faster packed on the Intel machine). Products with k <= 64
// (gemm.cpp shallow_product) read A in place regardless: they have no packed A strips.
// epilogue (null: none): applied to each tile of C as it is stored after the last slice of
// the reduction, C = act(alpha * op(A) @ op(B) + beta * C + bias[j] + residual[i, j]), so a
// conv's bias, residual add and relu cost no pass over its output of their own.
struct GemmEpilogue {
  enum Act { kLinear, kRelu, kRelu6 };
  const float* bias = nullptr;      // n values, or null
  const float* residual = nullptr;  // m x n at leading dimension ldr, or null
  int64_t ldr = 0;
  Act act = kLinear;                // relu keeps NaN (max(0, NaN) = NaN), relu6 = min(relu, 6)
};
// B packed once for many products (an inference plan's 1x1 conv weights, conv2d_prepare):
// the driver packs B on every call, or, with few rows of C, reads it in place row by row -- a
// row of a 1024-wide B per 4 KiB page, so each k step of the micro-kernel touched a new page
// and the strips did not stay in L1 (the same sets). Packed, a strip is kc x 32 contiguous.
// Layout of gemm_pack_b's output for B (k x n): the reduction in the driver's slices (of
// kc = the driver's slice depth for this k, the last one shorter), slice p0 starting at
// p0 * n_pad (n_pad = n rounded up to 32), holding 32-wide column strips, strip s at
// s * kc * 32, step p of it holding B(p0 + p, 32 s + j) at + p * 32 + j, zero past n.
// A product may read columns [col0, col0 + its n) of it (col0 a multiple of 32): the threads
// of cout_split.cpp each take their own columns.
struct GemmPackedB {
  const float* data = nullptr;
  int64_t n = 0;     // the packed matrix's columns (its n_pad follows)
  int64_t col0 = 0;  // the product's first column, a multiple of 32
};
// Floats gemm_pack_b writes for a k x n B; 0 where gemm_avx512 is not compiled in.
int64_t gemm_packed_b_floats(int64_t k, int64_t n);
// Packs B (k x n, row-major, leading dimension ldb, untransposed; trans: B stored n x k, as
// gemm_avx512's trans_b) as described above. Serial.
void gemm_pack_b(int64_t k, int64_t n, const float* b, int64_t ldb, float* dst, bool trans = false);

// packed_b (null: none): B is read from it (b, ldb and trans_b are then ignored); it must
// have been packed with this k and cover columns [col0, col0 + n).
void gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc, bool force_pack_a = false, const GemmEpilogue* epilogue = nullptr,
                 const GemmPackedB* packed_b = nullptr);

}  // namespace fastconv::cpu
