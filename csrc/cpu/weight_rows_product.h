// dcol = dy @ W^T for a backward-data product with few rows (weight_rows_product.cpp): W read
// in place, one dot product per (row of W, row of dy).
#pragma once
#include <cstdint>

#include "common/geometry.h"

namespace fastconv::cpu::detail {

// Whether weight_rows_product was compiled with its AVX-512 kernel (otherwise it does nothing).
bool weight_rows_product_available();

// dcol[i * ldc + r] = sum_p dy[i * ldy + p] * w[r * k + p] for i < m, r < n: dy is m x k
// (m <= 16), W n x k row-major (HWIO weights: n = KH*KW*Cin rows of k = Cout floats), k a
// multiple of 16. Rows of W split between up to `threads` threads (disjoint columns of dcol).
void weight_rows_product(int64_t m, int64_t n, int64_t k, const float* dy, int64_t ldy,
                         const float* w, float* dcol, int64_t ldc, int threads);

// The backward data of an ungrouped conv with at most kWeightRowsMaxM output positions and at
// least kWeightRowsMinFloats weights (Cout a multiple of 16, dcol within 1 MB, AVX-512): dx
// from dcol = dy @ W^T by weight_rows_product and col2im; returns false (nothing written)
// where it does not apply.
constexpr int64_t kWeightRowsMaxM = 16;
constexpr int64_t kWeightRowsMinFloats = 1 << 16;
bool weight_rows_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                               int threads);

}  // namespace fastconv::cpu::detail
