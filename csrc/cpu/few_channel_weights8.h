// The weight pass of 3x3 stride-1 'same' convs with the same few channels in and out
// (C = 1, 3, 6) at the avx2 level: x and dy rows deinterleaved into 8-lane planes, 3 x 3 x
// CB lane accumulators per (input channel, kernel row, block of CB output channels) in ymm
// registers (few_channel_weights8.cpp). Below and above avx2 the shape test says no.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this conv's weight pass runs here (the rule and its measurements are in the .cpp).
bool few_channel_weights8_shape(const ConvGeometry& g);

// Same contract as conv2d_backward_weights, but false (outputs unspecified) when x or dy
// holds a NaN or an infinity (the caller's direct path then recomputes it).
bool few_channel_weights8(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                          float* db);

}  // namespace fastconv::cpu::detail
