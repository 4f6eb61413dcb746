// Pooling on the GPU (CPU twins: cpu/pool_max.cpp, pool_max_backward.cpp, pool_avg.cpp).
// Forward: one thread per output; backward: one thread per input gathering its windows
// (common/pool_gather.h), so no atomics.
#include "common/pool_gather.h"
#include "cuda/kernels_cuda.h"
#include "cuda/launch.cuh"

namespace fastconv::cuda {

void max_pool2d_forward(const PoolGeometry& g, const float* x, float* y, cudaStream_t s) {
  const PoolGeometry gg = g;
  detail::launch_map(g.n * g.oh * g.ow * g.c,
                     [=] __device__(int64_t i) { return max_pool_forward_value(gg, x, i); }, y, s,
                     "max_pool2d_forward");
}

void max_pool2d_backward(const PoolGeometry& g, const float* dy, const float* x, float* dx,
                         cudaStream_t s) {
  const PoolGeometry gg = g;
  detail::launch_map(g.n * g.h * g.w * g.c,
                     [=] __device__(int64_t i) { return max_pool_backward_value(gg, dy, x, i); },
                     dx, s, "max_pool2d_backward");
}

void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* y, cudaStream_t s) {
  const PoolGeometry gg = g;
  detail::launch_map(g.n * g.oh * g.ow * g.c,
                     [=] __device__(int64_t i) { return avg_pool_forward_value(gg, x, i); }, y, s,
                     "avg_pool2d_forward");
}

void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx, cudaStream_t s) {
  const PoolGeometry gg = g;
  detail::launch_map(g.n * g.h * g.w * g.c,
                     [=] __device__(int64_t i) { return avg_pool_backward_value(gg, dy, i); }, dx,
                     s, "avg_pool2d_backward");
}

void global_avg_pool2d_forward(int64_t n, int64_t hw, int64_t c, const float* x, float* y,
                               cudaStream_t s) {
  column_sums(n, hw, c, x, hw > 0 ? 1.0f / (float)hw : 0.0f, y, s);
}

void global_avg_pool2d_backward(int64_t n, int64_t hw, int64_t c, const float* dy, float* dx,
                                cudaStream_t s) {
  const float inv = hw > 0 ? 1.0f / (float)hw : 0.0f;
  detail::launch_map(
      n * hw * c, [=] __device__(int64_t i) { return dy[(i / (hw * c)) * c + i % c] * inv; }, dx,
      s, "global_avg_pool2d_backward");
}

}  // namespace fastconv::cuda
