// Batch normalisation on the GPU (CPU twin: cpu/batchnorm.cpp), x viewed as (m, c).
// Statistics are deterministic block reductions per channel (launch.cuh column_reduce), in
// two passes: mean, then the mean of squared deviations (no E[x^2] - E[x]^2 cancellation).
#include <math.h>

#include "cuda/kernels_cuda.h"
#include "cuda/launch.cuh"

namespace fastconv::cuda {

namespace {

struct StoreMean {
  float* mean;
  double inv_m;
  __device__ void operator()(int64_t, int64_t j, double t) const { mean[j] = (float)(t * inv_m); }
};

struct StoreVar {
  float *var, *inv_std;
  double inv_m, eps;
  __device__ void operator()(int64_t, int64_t j, double t) const {
    const double v = t * inv_m;
    var[j] = (float)v;
    inv_std[j] = (float)(1.0 / sqrt(v + eps));
  }
};

}  // namespace

void batch_norm_forward_train(int64_t m, int64_t c, const float* x, const float* gamma,
                              const float* beta, float eps, float* y, float* mean, float* var,
                              float* inv_std, cudaStream_t s) {
  const double inv_m = 1.0 / (double)m;  // m >= 1: checked by the binding
  detail::column_reduce([=] __device__(int64_t, int64_t r, int64_t j) { return x[r * c + j]; }, 1,
                        m, c, StoreMean{mean, inv_m}, s, "batch_norm_forward_train");
  const float* mu = mean;
  detail::column_reduce(
      [=] __device__(int64_t, int64_t r, int64_t j) {
        const float d = x[r * c + j] - mu[j];
        return d * d;
      },
      1, m, c, StoreVar{var, inv_std, inv_m, (double)eps}, s, "batch_norm_forward_train");
  const float* is = inv_std;
  detail::launch_map(
      m * c,
      [=] __device__(int64_t i) {
        const int64_t j = i % c;
        return (x[i] - mu[j]) * (is[j] * gamma[j]) + beta[j];
      },
      y, s, "batch_norm_forward_train");
}

void batch_norm_forward_inference(int64_t m, int64_t c, const float* x, const float* gamma,
                                  const float* beta, const float* mean, const float* var,
                                  float eps, float* y, cudaStream_t s) {
  detail::launch_map(
      m * c,
      [=] __device__(int64_t i) {
        const int64_t j = i % c;
        return (x[i] - mean[j]) * (gamma[j] * rsqrtf(var[j] + eps)) + beta[j];
      },
      y, s, "batch_norm_forward_inference");
}

// dbeta = sum dy, dgamma = sum dy*xhat, dx = gamma*inv_std*(dy - dbeta/m - xhat*dgamma/m).
void batch_norm_backward(int64_t m, int64_t c, const float* dy, const float* x,
                         const float* gamma, const float* mean, const float* inv_std, float* dx,
                         float* dgamma, float* dbeta, cudaStream_t s) {
  column_sums(1, m, c, dy, 1.0f, dbeta, s);
  detail::column_reduce(
      [=] __device__(int64_t, int64_t r, int64_t j) {
        return dy[r * c + j] * (x[r * c + j] - mean[j]) * inv_std[j];
      },
      1, m, c, detail::StoreScaled{dgamma, c, 1.0}, s, "batch_norm_backward");
  const float inv_m = 1.0f / (float)m;
  const float* dg = dgamma;
  const float* dbt = dbeta;
  detail::launch_map(
      m * c,
      [=] __device__(int64_t i) {
        const int64_t j = i % c;
        const float xhat = (x[i] - mean[j]) * inv_std[j];
        return gamma[j] * inv_std[j] * (dy[i] - dbt[j] * inv_m - xhat * dg[j] * inv_m);
      },
      dx, s, "batch_norm_backward");
}

}  // namespace fastconv::cuda
