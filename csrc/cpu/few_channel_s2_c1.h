// 3x3 stride-2 convs with one channel in and out, all three passes straight from the NHWC
// rows (few_channel_s2_c1.cpp at AVX-512, few_channel_s2_c1_avx2.cpp at avx2);
// s2_planes_forward, s2_planes_backward_data and s2_planes_backward_weights hand C = 1 here
// first.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Same contract as conv2d_forward for the shapes s2_planes_shape admits with C = 1; false
// (nothing written) at the baseline level.
bool s2_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                   float* y, Activation act);
// Same contract as conv2d_backward_data, likewise, for a finite w (checked by the caller).
bool s2_c1_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
// Same contract as conv2d_backward_weights, likewise.
bool s2_c1_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                            float* db);

}  // namespace fastconv::cpu::detail
