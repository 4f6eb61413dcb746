// The forward of a 3x3 stride-2 stem: 1..4 input channels -> 32 output channels (MobileNet's
// conv1, 224x224x3 -> 112x112x32), NHWC in and out, HWIO weights, any pads of 0..2
// (stem_conv.cpp). AVX-512 and avx2: the baseline level answers false from the shape test and
// keeps the direct path (direct_conv.cpp).
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this pass of this conv runs here.
bool stem_conv_shape(const ConvGeometry& g, ConvPass pass);

// Same contract as conv2d_forward (bias may be null; act applied before the store).
void stem_conv_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act);

}  // namespace fastconv::cpu::detail
