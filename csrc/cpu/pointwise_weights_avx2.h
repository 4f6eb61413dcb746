// The weight pass of stride-1 1x1 convs (groups == 1) at the avx2 level, where every GEMM is
// OpenBLAS's (pointwise_weights_avx2.cpp; issue 18 item 2, helper W, stop 39). conv2d.cpp asks it.
#pragma once
#include "common/geometry.h"

namespace fastconv::cpu::detail {

// dw (Cin x Cout) = x^T @ dy over all pixels and, when db is not null, db = dy's column sums,
// on `threads` threads with this file's register tiles; false (nothing written) where they do
// not apply (other levels, the native GEMM, other shapes).
bool pointwise_backward_weights_avx2(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                     float* db, int threads);

}  // namespace fastconv::cpu::detail
