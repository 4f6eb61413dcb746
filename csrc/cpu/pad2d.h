// Zero padding of NHWC images (pad2d.cpp): a ZeroPadding2D that no conv takes as its own
// padding (ResNet-50's before its max pool) runs here in inference plans.
#pragma once
#include <cstdint>

namespace fastconv::cpu {

// y (n, pt + h + pb, pl + w + pr, c) = x (n, h, w, c) with zero rows and columns around it.
void zero_pad2d(int64_t n, int64_t h, int64_t w, int64_t c, int64_t pt, int64_t pb, int64_t pl,
                int64_t pr, const float* x, float* y);

}  // namespace fastconv::cpu
