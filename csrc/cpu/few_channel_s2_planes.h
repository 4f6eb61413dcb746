// 3x3 stride-2 convolutions with one channel in and out, each block of output rows one flat
// stream over column-phase planes (few_channel_s2_planes.cpp). few_channel_rows.cpp hands its
// C = 1 stride-2 calls here (same eligibility: pads 0..2, no dilation). Every level; no
// hand-back (the planes hold the padding's zeros, and only real taps are multiplied).
#pragma once
#include "common/geometry.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights, for g.c == g.oc == 1, a 3x3
// window at stride 2, no dilation, pads 0..2.
void s2_planes_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, Activation act);
// Needs finite weights: the padding's zero rows and columns of dy are multiplied by them
// (the reference never multiplies there).
void s2_planes_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
void s2_planes_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db);

}  // namespace fastconv::cpu::detail
