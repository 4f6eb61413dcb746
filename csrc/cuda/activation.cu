// Bias + activation on the GPU (CPU twin: cpu/activation.cpp); element math in
// common/act_math.h, db as a deterministic column reduction of dz.
#include "common/act_math.h"
#include "cuda/kernels_cuda.h"
#include "cuda/launch.cuh"

namespace fastconv::cuda {

void bias_act_forward(int64_t m, int64_t c, const float* x, const float* b, int act, float* y,
                      cudaStream_t s) {
  detail::launch_map(
      m * c, [=] __device__(int64_t i) { return act_apply(act, b ? x[i] + b[i % c] : x[i]); }, y,
      s, "bias_act_forward");
}

void bias_act_backward(int64_t m, int64_t c, const float* dy, const float* y, int act,
                       float* dz, float* db, cudaStream_t s) {
  detail::launch_map(
      m * c, [=] __device__(int64_t i) { return dy[i] * act_grad_from_output(act, y[i]); }, dz,
      s, "bias_act_backward");
  if (db) column_sums(1, m, c, dz, 1.0f, db, s);
}

}  // namespace fastconv::cuda
