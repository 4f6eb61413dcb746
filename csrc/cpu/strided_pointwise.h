// The forward and weight pass of a strided 1x1 conv with 17..32 channels each side on
// register tiles (strided_pointwise.cpp, strided_pointwise_weights.cpp; AVX-512 only).
// conv2d.cpp hands such convs here first.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this pass of this conv runs here (the forward and the weight pass; never below
// AVX-512).
bool strided_pointwise_shape(const ConvGeometry& g, ConvPass pass);

// Runs conv2d_forward's contract (no residual: the caller adds it) and returns true, or
// returns false without touching y where the shape, the ISA level or the algorithm setting
// ("auto" only) is not this kernel's.
bool strided_pointwise_forward(const ConvGeometry& g, const float* x, const float* w,
                               const float* b, float* y, Activation act);

// The weight pass (strided_pointwise_weights.cpp) on the same shapes: conv2d_backward_weights's
// contract (db may be null), or false without touching dw and db.
bool strided_pointwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                        float* dw, float* db);

// 33..64 channels each side (strided_pointwise_wide.cpp; the forward from 17 or 25): the forward and the backward data
// on register tiles of 3 pixels at the avx2 level only (the weight pass stays on the GEMM).
bool strided_pointwise_wide_shape(const ConvGeometry& g, ConvPass pass);
bool strided_pointwise_wide_forward(const ConvGeometry& g, const float* x, const float* w,
                                    const float* b, float* y, Activation act);
// conv2d_backward_data's contract, or false without touching dx.
bool strided_pointwise_wide_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                          float* dx);

}  // namespace fastconv::cpu::detail
