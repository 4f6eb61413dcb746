// 3x3 convolutions with the same few channels in and out (C = 1..4), stride 1 or 2, no
// dilation (few_channel_rows.cpp): the NHWC row is the vector, no planar repack. Where
// measured faster, direct_conv.cpp hands these over first; a call that meets a non-finite input or weight returns false and the
// direct path recomputes it (the kernel multiplies some zero weights by neighbouring inputs,
// see the .cpp).
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this pass of this conv runs here (the rule and its measurements are in the .cpp).
bool few_channel_rows_shape(const ConvGeometry& g, ConvPass pass);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights, but
// false (outputs unspecified) when x, dy or w holds a NaN or an infinity.
bool few_channel_rows_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act);
bool few_channel_rows_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx);
bool few_channel_rows_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                       float* dw, float* db);

}  // namespace fastconv::cpu::detail
