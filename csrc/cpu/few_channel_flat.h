// 3x3 stride-1 convolutions with one channel in and out whose output has the input's size
// ('same', or explicit pads summing to 2 each way): bands of 4 output rows, or each image one
// flat stream of H*W floats (few_channel_flat.cpp). AVX-512 only (the other levels answer false from the shape test and
// keep the row and direct kernels). No hand-back: the padding is never multiplied.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this pass of this conv runs here (the rule and its measurements are in the .cpp).
bool few_channel_flat_shape(const ConvGeometry& g, ConvPass pass);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights.
void few_channel_flat_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act);
void few_channel_flat_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx);
void few_channel_flat_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                       float* dw, float* db);

}  // namespace fastconv::cpu::detail
