// Direct convolution for few channels (direct_conv.cpp): groups == 1, small Cin and Cout,
// any kernel size, stride, dilation and four-sided pads. conv2d.cpp dispatches here when
// direct_eligible(g) holds; the rule and the measurements behind it are in direct_conv.cpp.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// The rule under the current algorithm setting (conv_algorithm.h): by measurement under
// "auto", every groups == 1 conv under "direct", never under "im2col".
bool direct_eligible(const ConvGeometry& g, ConvPass pass);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights.
// The forward also applies `act` to each block of rows while it is in cache.
void direct_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y, Activation act = Activation::Linear);
void direct_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void direct_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db);

}  // namespace fastconv::cpu::detail
