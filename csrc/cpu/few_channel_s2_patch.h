// 3x3 stride-2 convs with three channels in and out: the weight pass straight from the NHWC
// rows, one masked load per output pixel's patch row (few_channel_s2_patch.cpp, AVX-512);
// s2_planes_backward_weights hands C = 3 here first.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Same contract as conv2d_backward_weights for the shapes s2_planes_shape admits with C = 3;
// false (nothing written) at a level without AVX-512 or for another shape.
bool s2_patch_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                               float* db);

}  // namespace fastconv::cpu::detail
