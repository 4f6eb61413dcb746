// 3x3 stride-1 depthwise convolution with 'same' padding and fewer than 16 channels (M = 1),
// vectorised along the flat NHWC row (depthwise_flat.cpp). AVX-512 only: elsewhere
// depthwise_flat_applies is false.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

bool depthwise_flat_applies(const ConvGeometry& g);

// The forward (b may be null; act applied after). With the taps flipped and no bias it is
// also the backward data pass (depthwise.cpp flips them): the same gather with pads of 1.
void depthwise_flat_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                            float* y, Activation act);
// dw (9 x C) and db (C, or null).
void depthwise_flat_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                     float* db);

}  // namespace fastconv::cpu::detail
