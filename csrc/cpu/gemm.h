// fastconv's own single-precision GEMM (gemm.cpp): BLIS-style blocking around an AVX-512
// micro-kernel. Serial: each caller thread runs its own product (the OpenMP policy lives in
// threads.cpp). Compiled in only when the compiler targets AVX-512F (-march=native on an
// AVX-512 CPU); gemm_avx512_available() says whether it was.
#pragma once
#include <cstdint>

namespace fastconv::cpu {

// True when gemm_avx512 was compiled with AVX-512 code (otherwise calling it throws).
bool gemm_avx512_available();

// C = alpha * op(A) @ op(B) + beta * C, row-major, cblas semantics: op(A) is m x k (A is
// stored k x m when trans_a), op(B) is k x n (stored n x k when trans_b), C is m x n. With
// beta == 0 C's old contents are never read (NaN there does not propagate); with k == 0 or
// alpha == 0 the result is beta * C and A, B are not read. Leading dimensions may exceed
// the row length. No size limit beyond int64. Serial and thread-safe (per-thread buffers).
// A is only read, so lda may also be below A's row length (overlapping rows: conv2d.cpp's
// strided forward reads a kernel row of x per output column that way; cblas rejects it).
// force_pack_a: pack A even where the driver would read it in place (conv2d.cpp's strided and
// pointwise products, measured faster packed on the Intel machine).
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
void gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                 int64_t ldc, bool force_pack_a = false, const GemmEpilogue* epilogue = nullptr);

}  // namespace fastconv::cpu
