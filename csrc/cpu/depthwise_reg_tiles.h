// 3x3 depthwise forward at stride 1 and 2 (M = 1) in tiles of register-width vectors, for the
// levels below AVX-512 (depthwise_reg_tiles.cpp): MobileNet's depthwise steps at batch 1 take
// it there; depthwise.cpp keeps the rest. Defined at the avx2 and baseline levels only
// (depthwise.cpp routes to it there).
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Whether depthwise_reg_tiles_forward takes this forward: 3x3, stride 1 or 2,
// no dilation, M = 1, pads up to 2, input under 4 MiB and the output not streamed.
bool depthwise_reg_tiles_applies(const ConvGeometry& g);

// y = act(depthwise conv(x, w) + b); b may be null; NaN propagates.
void depthwise_reg_tiles_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                                 float* y, Activation act);

}  // namespace fastconv::cpu::detail
