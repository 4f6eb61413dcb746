// 3x3 stride-2 convs with C = 3 or 6 channels in and out at the avx2 level, on the flat
// NHWC rows split into their even and odd floats (few_channel_s2_flat_avx2.cpp).
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Same contract as conv2d_forward for the shapes s2_planes_shape admits with C = 3 or 6;
// false (nothing written) for other channel counts and at the baseline and AVX-512 levels.
bool s2_flat_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                     float* y, Activation act);

}  // namespace fastconv::cpu::detail
