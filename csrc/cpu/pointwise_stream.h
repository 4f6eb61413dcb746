// Stride-1 1x1 convs (groups == 1) whose output is past the cache, with the native GEMM
// (pointwise_stream.cpp): the products in blocks of kStreamRows rows, each written to a
// per-thread scratch and streamed out with non-temporal stores (simd.h stream_copy), so that
// the output's lines are not read for ownership first. conv2d.cpp asks these.
#pragma once
#include "common/geometry.h"
#include "cpu/gemm.h"
#include "kernels.h"

namespace fastconv::cpu::detail {

// Rows a block: 10 micro-tiles of 14 rows (140 KB of scratch at 256 channels).
constexpr int64_t kStreamRows = 140;

// Whether conv2d_forward's pointwise chunks stream y (the caller checks is_pointwise).
bool stream_pointwise_forward(const ConvGeometry& g);

// One chunk of `rows` output pixels of such a forward: forward_product's contract (bias,
// residual rc, activation) with y written at yc by streaming stores. The caller fences.
void streamed_forward_product(const ConvGeometry& g, int64_t rows, const float* col, const float* w,
                              const float* b, const float* rc, Activation act, float* yc,
                              const GemmPackedB* packed);

// The backward data of a pointwise conv on `threads` threads, or false (nothing written) where
// this path does not apply. Native GEMM only.
bool streamed_pointwise_backward_data(const ConvGeometry& g, const float* dy, const float* w,
                                      float* dx, int threads);

}  // namespace fastconv::cpu::detail
