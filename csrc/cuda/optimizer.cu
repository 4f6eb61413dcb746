// Fused optimizer updates (Keras formulas, as fastconv/optimizers/): one pass over the
// parameter, gradient and state per step instead of one CuPy kernel per arithmetic op.
#include <math.h>

#include "common/nan_math.h"
#include "cuda/kernels_cuda.h"
#include "cuda/launch.cuh"

namespace fastconv::cuda {

namespace {

template <class F>
__global__ void for_each_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    f(i);
}

template <class F>
void launch_each(int64_t n, F f, cudaStream_t s, const char* what) {
  if (n <= 0) return;
  FC_LAUNCH(for_each_kernel<F>, detail::grid_for(n), detail::kThreads, s)(n, f);
  detail::check_launch(what);
}

}  // namespace

// `decay` is the decoupled weight decay (w -= w * decay), applied first as on the CPU.
void sgd_update(int64_t n, float* w, const float* g, float* velocity, float lr, float momentum,
                bool nesterov, float decay, cudaStream_t s) {
  if (!velocity) {
    launch_each(
        n, [=] __device__(int64_t i) { w[i] = (w[i] - w[i] * decay) - lr * g[i]; }, s,
        "sgd_update");
    return;
  }
  launch_each(
      n,
      [=] __device__(int64_t i) {
        const float v = velocity[i] * momentum - lr * g[i];
        velocity[i] = v;
        w[i] = (w[i] - w[i] * decay) + (nesterov ? momentum * v - lr * g[i] : v);
      },
      s, "sgd_update");
}

void adam_update(int64_t n, float* w, const float* g, float* m, float* v, float* v_hat,
                 float alpha, float beta_1, float beta_2, float eps, float decay, cudaStream_t s) {
  launch_each(
      n,
      [=] __device__(int64_t i) {
        const float gi = g[i];
        const float mi = m[i] + (gi - m[i]) * (1.f - beta_1);
        float vi = v[i] + (gi * gi - v[i]) * (1.f - beta_2);
        m[i] = mi;
        v[i] = vi;
        if (v_hat) {
          vi = max_nan(v_hat[i], vi);  // np.maximum: fmaxf would drop a NaN and keep going
          v_hat[i] = vi;
        }
        w[i] = (w[i] - w[i] * decay) - alpha * mi / (sqrtf(vi) + eps);
      },
      s, "adam_update");
}

}  // namespace fastconv::cuda
