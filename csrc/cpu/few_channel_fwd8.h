// The forward and backward data of 3x3 stride-1 'same' convs with the same 3 or 6 channels
// in and out at the avx2 level: rows deinterleaved into 8-lane planes of W + 2 floats, one
// flat stream per work item, 3 output channels x 3 vectors of accumulators in ymm registers
// (few_channel_fwd8.cpp). Below and above avx2 the shape test says no.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this conv's forward / backward data runs here (the rule and its measurements are in
// the .cpp).
bool few_channel_fwd8_shape(const ConvGeometry& g, ConvPass pass);

// Same contracts as conv2d_forward / conv2d_backward_data, but false (nothing written) when
// w holds a NaN or an infinity (the caller's direct path then computes it).
bool few_channel_fwd8_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act);
bool few_channel_fwd8_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx);

}  // namespace fastconv::cpu::detail
