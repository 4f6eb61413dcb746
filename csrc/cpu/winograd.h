// Winograd convolution F(m x m, 3 x 3) (winograd.cpp), internal to the CPU kernels.
//
// conv2d.cpp asks use_winograd() at the top of each pass and, when it says yes, hands the
// whole pass to the matching winograd_* function; the public query and the global setting
// (conv_algorithm, set_conv_algorithm in kernels.h) are built on the same decision.
#pragma once
#include <cstdint>

#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Geometry Winograd can compute at all: 3x3, stride 1, dilation 1, groups 1, pads in [0, 2],
// a non-empty batch.
bool winograd_eligible(const ConvGeometry& g);

// True when this pass runs as Winograd under the current algorithm setting, thread count
// and workspace limit (the same answer conv_algorithm() gives).
bool use_winograd(const ConvGeometry& g, ConvPass pass);

// The passes, on geometry for which use_winograd() said yes. Same contracts as the
// conv2d_* kernels in kernels.h (outputs fully overwritten). They call the serial sgemm from
// inside OpenMP regions (OpenBLAS itself stays single-threaded, threads.cpp).
// y = act(conv(x, w) + b), the activation applied tile by tile while the output is in cache.
// The forward and backward-data passes return false (output partly written) when their input
// holds NaN or inf, which the transforms would spread over whole tiles: the caller then runs
// the pass by im2col. A non-finite dw from the weight pass is the caller's to check.
// `prepared` (null: none) is the filter transform U of w for g, from winograd_prepare_filter
// (an inference plan keeps it across calls): the pass then reads U instead of transforming w,
// which at batch 1 costs as much as the GEMMs (U is 4x the weights, written and read back).
bool winograd_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                      float* y, Activation act, const float* prepared = nullptr);
// Geometry alone (no thread count or setting): eligible, and enough tiles and channels that
// Winograd pays. An inference plan keeps the filter transform for these; for the rest of
// the ungrouped convs it keeps the GEMM-packed weights (conv2d.cpp).
bool winograd_worth_preparing(const ConvGeometry& g);
// Floats of U for g (0 when g is not winograd_eligible): it depends only on the channels and
// the tile size, which the output size picks, not on threads or settings.
int64_t winograd_filter_floats(const ConvGeometry& g);
// u[0 .. winograd_filter_floats(g)) = the forward filter transform of w for g.
void winograd_prepare_filter(const ConvGeometry& g, const float* w, float* u);
bool winograd_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void winograd_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                               float* db);

}  // namespace fastconv::cpu::detail
