// 3x3 stride-2 convs with few channels at the avx2 level, helper B's kernels of stop 39
// (few_channel_s2b_*.cpp); direct_conv.cpp hands these over first.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// The backward data pass for C = 3 and 6 (up to 26 columns) with 'same'-like padding (pads 0..1 at the top and
// left, dy's grid the plane grid), vectors along the flat NHWC dx rows
// (few_channel_s2b_data.cpp); same contract as conv2d_backward_data; false (nothing
// written) for any other shape, a non-finite weight, or a level other than avx2.
bool s2b_data_flat8(const ConvGeometry& g, const float* dy, const float* w, float* dx);

// The forward for C = 1 (3x3, stride 2, dilation 1, pads 0..2 at the top and left), from the
// rows with in-lane shuffles (few_channel_s2b_c1.cpp); same contract as conv2d_forward; false
// (nothing written) for any other shape or a level other than avx2.
bool s2b_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y, Activation act);

// The forward for C = 3 and 6 (3x3, stride 2, dilation 1, pads 0..2 at the top and left),
// vectors along the flat NHWC output rows (few_channel_s2b_fwd.cpp); same contract as
// conv2d_forward; false (nothing written) for any other shape, a non-finite weight, or a
// level other than avx2.
bool s2b_fwd_flat8(const ConvGeometry& g, const float* x, const float* w, const float* b,
                   float* y, Activation act);

}  // namespace fastconv::cpu::detail
