// A forward conv product y = act(col @ W + bias + residual) in avx2 register tiles
// (pointwise_avx2.cpp), for the levels whose GEMM is OpenBLAS's sgemm (avx2; issue 18 item 4,
// helper I, stop 38). forward_product (im2col.cpp) asks it first.
#pragma once
#include <cstdint>

#include "kernels.h"

namespace fastconv::cpu::detail {

// forward_product's contract (im2col.h) for a linear / relu / relu6 activation: rows x n of y
// (leading dimension ldy; residual, when not null, the same layout) from col (rows x k, ldcol)
// and W (k x n, ldw). Returns false, writing nothing, where this level or shape keeps the sgemm
// route. Serial.
bool pointwise_avx2_product(int64_t rows, int64_t n, int64_t k, const float* col, int64_t ldcol,
                            const float* w, int64_t ldw, const float* bias, const float* residual,
                            Activation act, float* y, int64_t ldy);

}  // namespace fastconv::cpu::detail
