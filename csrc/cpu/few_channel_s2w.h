// The weight pass of 3x3 stride-2 convs with C = 3 or 6 channels in and out at the avx2 level,
// straight from the NHWC rows (few_channel_s2w_avx2.cpp: the rule; few_channel_s2w_rows3_avx2
// .cpp, few_channel_s2w_rows6_avx2.cpp). Below and above avx2 the shape test says no.
#pragma once
#include <cstddef>

#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether this conv's weight pass runs here: groups 1, Cin = Cout = 3 or 6, 3x3, stride 2,
// dilation 1, pads 0..2 at the top and left; false below and above avx2.
bool s2w_avx2_shape(const ConvGeometry& g);

// Same contract as conv2d_backward_weights for the shapes s2w_avx2_shape admits (false,
// nothing written, for any other). The lanes hold exactly the reference's taps, so NaN and
// inf reach dw where the reference puts them.
bool s2w_avx2_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                      float* db);

// C = 3 straight from the NHWC rows (few_channel_s2w_rows3_avx2.cpp); same contract as
// conv2d_backward_weights for the C = 3 shapes s2w_avx2_shape admits, false (nothing
// written) for any other or below and above avx2.
bool s2w_rows3_avx2(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                    float* db);

// C = 6 straight from the NHWC rows (few_channel_s2w_rows6_avx2.cpp); same contract and
// shapes as s2w_rows3_avx2 with C = 6.
bool s2w_rows6_avx2(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                    float* db);

// The row kernels' last step: dw[k] (k < n_dw) and then db[k - n_dw] (when db) as the
// double sum of the `used` threads' partial sums (row t at parts + t * n_part), in thread
// order, so the result does not depend on which thread ran which rows.
inline void s2w_sum_parts(const double* parts, int used, int n_part, int n_dw, float* dw,
                          float* db) {
  for (int k = 0; k < n_part; ++k) {
    double s = 0.0;
    for (int t = 0; t < used; ++t) s += parts[(size_t)t * n_part + k];
    if (k < n_dw) dw[k] = (float)s;
    else if (db) db[k - n_dw] = (float)s;
  }
}

}  // namespace fastconv::cpu::detail
