// Stride-1 1x1 convs (groups == 1) at the avx2 level where the GEMM is OpenBLAS
// (pointwise_passes_avx2.cpp; issue 18 item 2, helper G, stop 38). conv2d.cpp asks these.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// The forward of a pointwise conv (y = act(x @ W + b), no residual) on `threads` threads with
// this file's register tiles, or false (nothing written).
bool pointwise_forward_avx2(const ConvGeometry& g, const float* x, const float* w, const float* b,
                            float* y, Activation act, int threads);

// The backward data of a pointwise conv on `threads` threads with this file's register tiles,
// or false (nothing written) where they do not apply (other levels, the native GEMM, other
// shapes).
bool pointwise_backward_data_avx2(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                                  int threads);

}  // namespace fastconv::cpu::detail
