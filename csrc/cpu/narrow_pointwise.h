// 1x1 convolutions with few channels on both sides (narrow_pointwise.cpp): groups == 1,
// no pads, any stride; Cin and Cout <= 32 for the forward and backward-data maps, <= 16 for
// the weight pass (17..32 both sides too at AVX-512). direct_conv.cpp hands these over.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

constexpr int64_t kNarrowPointwiseMax = 16;  // channels each side, weight pass (but above)
constexpr int64_t kNarrowMapMax = 32;        // channels each side, forward and backward data

// Whether `pass` of this conv runs here.
bool narrow_pointwise_shape(const ConvGeometry& g, ConvPass pass);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights.
void narrow_pointwise_forward(const ConvGeometry& g, const float* x, const float* w,
                              const float* b, float* y, Activation act);
void narrow_pointwise_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                    float* dx);
void narrow_pointwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                       float* dw, float* db);

}  // namespace fastconv::cpu::detail
