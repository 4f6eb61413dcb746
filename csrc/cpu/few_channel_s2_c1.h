// 3x3 stride-2 forward with one channel in and out straight from the NHWC rows
// (few_channel_s2_c1.cpp); s2_planes_forward hands C = 1 here first.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Same contract as conv2d_forward for the shapes s2_planes_shape admits with C = 1; false
// (nothing written) at a level without AVX-512.
bool s2_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                   float* y, Activation act);

}  // namespace fastconv::cpu::detail
