// Depthwise convolution on the GPU (CPU twin: cpu/depthwise.cpp): direct per-element
// forward and data-gradient gathers, and the weight gradient as one deterministic
// column reduction per kernel tap (planes = taps, rows = output positions, cols = channels).
#include "common/im2col_index.h"
#include "cuda/kernels_cuda.h"
#include "cuda/launch.cuh"

namespace fastconv::cuda {

void depthwise_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, cudaStream_t s) {
  const ConvGeometry gg = g;
  detail::launch_map(
      g.output_size(), [=] __device__(int64_t i) { return depthwise_forward_value(gg, x, w, b, i); },
      y, s, "depthwise_forward");
}

void depthwise_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                             cudaStream_t s) {
  const ConvGeometry gg = g;
  detail::launch_map(
      g.input_size(),
      [=] __device__(int64_t i) { return depthwise_backward_data_value(gg, dy, w, i); }, dx, s,
      "depthwise_backward_data");
}

void depthwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db, cudaStream_t s) {
  const ConvGeometry gg = g;
  const int64_t taps = g.win.kh * g.win.kw, rows = g.n * g.oh * g.ow;
  if (rows == 0) {
    detail::check(cudaMemsetAsync(dw, 0, sizeof(float) * taps * g.oc, s), "depthwise_backward_weights");
    if (db) detail::check(cudaMemsetAsync(db, 0, sizeof(float) * g.oc, s), "depthwise_backward_weights");
    return;
  }
  detail::column_reduce(
      [=] __device__(int64_t tap, int64_t p, int64_t o) { return depthwise_dw_term(gg, dy, x, tap, o, p); },
      taps, rows, g.oc, detail::StoreScaled{dw, g.oc, 1.0}, s, "depthwise_backward_weights");
  if (db) column_sums(1, rows, g.oc, dy, 1.0f, db, s);
}

}  // namespace fastconv::cuda
