// 3x3 stride-1 'same' depthwise convolution with C <= 8 channels (M = 1) at the avx2 level,
// vectorised along the flat NHWC row in 8-lane registers (depthwise_flat8.cpp): the avx2
// counterpart of depthwise_flat.cpp (AVX-512 only). Elsewhere depthwise_flat8_applies is false.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Forward / backward data: which geometries the flat8 forward takes (C in the measured set;
// also a plain 3x3 'same' conv of one channel in and out, groups 1: conv2d.cpp routes it here).
bool depthwise_flat8_applies(const ConvGeometry& g);
// Weight pass: which geometries depthwise_flat8_backward_weights takes.
bool depthwise_flat8_weights_applies(const ConvGeometry& g);

// y = act(the 'same' 3x3 gather of x + b); b may be null. With the taps flipped and no bias
// it is also the backward data pass (depthwise.cpp flips them).
void depthwise_flat8_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                             float* y, Activation act);
// dx of the forward: the same pass over dy with the taps flipped.
void depthwise_flat8_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
// dw (9 x C) and db (C, or null).
void depthwise_flat8_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                      float* db);

}  // namespace fastconv::cpu::detail
