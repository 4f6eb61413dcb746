// 3x3 stride-1 'same' conv of one channel in and out (groups 1) at the avx2 level, along the
// flat stream of the whole batch (few_channel_s1_c1.cpp). Elsewhere every function returns false.
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Each returns false (nothing written) where it does not apply: not avx2, another geometry, or a
// non-finite weight (forward / backward data: the padding's 0 * inf must stay NaN as in the
// reference, so depthwise_flat8.cpp, which multiplies the padding's zeros, takes those).
// y = act(conv(x, w) + b); b may be null.
bool few_channel_s1_c1_forward(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                               Activation act);
// dx: the forward over dy with the taps flipped.
bool few_channel_s1_c1_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
// dw (9 floats) and db (1 float, or null). A non-finite x or dy makes dw non-finite as in the
// reference (the centre tap multiplies every pixel), so conv2d.cpp's check sends it to im2col.
bool few_channel_s1_c1_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                        float* db);

}  // namespace fastconv::cpu::detail
