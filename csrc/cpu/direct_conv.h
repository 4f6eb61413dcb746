// Direct convolution for few channels (direct_conv.cpp): groups == 1, small Cin and Cout,
// any kernel size, stride, dilation and four-sided pads. conv2d.cpp dispatches here when
// direct_eligible(g) holds; the rule and the measurements behind it are in direct_conv.cpp.
#pragma once
#include "common/geometry.h"

namespace fastconv::cpu::detail {

bool direct_eligible(const ConvGeometry& g);
// 0: never take the direct path, 1: when the rule says so (default), 2: for every groups == 1
// conv. Returns the previous mode. For benchmarks and tests that compare the direct path
// with im2col + sgemm in one process, and for measuring the rule.
int set_direct_mode(int mode);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights.
void direct_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y);
void direct_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void direct_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db);

}  // namespace fastconv::cpu::detail
