// Forward conv by im2col with the threads splitting the output channels (cout_split.cpp),
// for convs whose output has too few positions to give each thread its own rows (a batch-1
// conv at 8x8 or 4x4 has 64 or 16 GEMM rows: one im2col chunk, so one thread).
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Runs y = act(conv(x, w) + b + residual) (residual may be null) with the threads on disjoint column blocks of W and y, and
// returns true; returns false (nothing written) when the split does not apply: one thread,
// grouped conv, too little work, too few output channels, or enough rows for the row split
// of conv2d.cpp. Results are bitwise those of the serial im2col path (same GEMM per column).
// packed (null: none): a pointwise conv's weights packed once (gemm_pack_b, conv2d_prepare).
bool cout_split_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                        float* y, Activation act, const float* residual = nullptr,
                        const float* packed = nullptr);

}  // namespace fastconv::cpu::detail
