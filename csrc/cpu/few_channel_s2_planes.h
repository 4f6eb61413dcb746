// 3x3 stride-2 convolutions with C channels in and out (the forward for C = 1..4 and 6, the
// backward data pass for C = 1..4 and, at AVX-512, 6, the weight pass for C = 1 and 3), each block of output rows
// one flat stream over column-phase planes (few_channel_s2_planes.cpp, the weight pass in
// few_channel_s2_weights.cpp, the planes in few_channel_s2_blocks.h); C = 1 at AVX-512 goes
// on to few_channel_s2_c1.cpp (straight from the rows). direct_conv.cpp hands these over first. Every level;
// the forward and weight passes never hand back (the planes hold the padding's zeros and
// only real taps are multiplied).
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this pass of this conv runs here (the rule and its measurements are in the .cpp).
bool s2_planes_shape(const ConvGeometry& g, ConvPass pass);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights, for the
// shapes s2_planes_shape admits.
void s2_planes_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act);
// False (dx unspecified) when w holds a NaN or an infinity: the padding's zero rows and
// columns of dy are multiplied by the weights, where the reference never multiplies.
bool s2_planes_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void s2_planes_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db);

}  // namespace fastconv::cpu::detail
