// Softmax and softmax cross-entropy on the GPU (CPU twin: cpu/softmax.cpp): one warp per
// row, max-shifted, with warp-shuffle reductions (fixed order, deterministic).
#include <math.h>

#include "common/nan_math.h"
#include "cuda/kernels_cuda.h"
#include "cuda/launch.cuh"

namespace fastconv::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // 8 warps of 32 threads

// max_nan, not fmaxf: a NaN logit makes the row's max NaN, as on the CPU and in the oracle
// (the row's sum is NaN either way, so the outputs and the loss are NaN).
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// y = softmax of each row; with labels, also loss = logsumexp - logit[label] (NaN for a
// label outside [0, c): the binding cannot check labels without a device round trip).
__global__ void softmax_rows_kernel(int64_t n, int64_t c, const float* x, float* y,
                                    const int64_t* labels, float* loss) {
  const int64_t row = blockIdx.x * (int64_t)kRowsPerBlock + threadIdx.y;
  if (row >= n) return;  // whole warp leaves together
  const float* xr = x + row * c;
  float* yr = y + row * c;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < c; j += 32) mx = max_nan(mx, xr[j]);
  mx = warp_max(mx);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < c; j += 32) sum += expf(xr[j] - mx);
  sum = warp_sum(sum);
  const float log_z = logf(sum);
  for (int64_t j = threadIdx.x; j < c; j += 32) yr[j] = expf(xr[j] - mx - log_z);
  if (loss && threadIdx.x == 0) {
    const int64_t lab = labels[row];
    loss[row] = (lab >= 0 && lab < c) ? log_z - (xr[lab] - mx) : NAN;
  }
}

__global__ void softmax_backward_kernel(int64_t n, int64_t c, const float* dy, const float* y,
                                        float* dx) {
  const int64_t row = blockIdx.x * (int64_t)kRowsPerBlock + threadIdx.y;
  if (row >= n) return;
  const int64_t off = row * c;
  float dot = 0.f;
  for (int64_t j = threadIdx.x; j < c; j += 32) dot += dy[off + j] * y[off + j];
  dot = warp_sum(dot);
  for (int64_t j = threadIdx.x; j < c; j += 32) dx[off + j] = y[off + j] * (dy[off + j] - dot);
}

unsigned row_blocks(int64_t n) { return (unsigned)((n + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

void softmax_forward(int64_t n, int64_t c, const float* x, float* y, cudaStream_t s) {
  if (n == 0) return;
  FC_LAUNCH_SYNC(softmax_rows_kernel, row_blocks(n), dim3(32, kRowsPerBlock), s)(n, c, x, y, nullptr, nullptr);
  detail::check_launch("softmax_forward");
}

void softmax_backward(int64_t n, int64_t c, const float* dy, const float* y, float* dx,
                      cudaStream_t s) {
  if (n == 0) return;
  FC_LAUNCH_SYNC(softmax_backward_kernel, row_blocks(n), dim3(32, kRowsPerBlock), s)(n, c, dy, y, dx);
  detail::check_launch("softmax_backward");
}

void softmax_cross_entropy_forward(int64_t n, int64_t c, const float* logits,
                                   const int64_t* labels, float* loss, float* probs,
                                   cudaStream_t s) {
  if (n == 0) return;
  FC_LAUNCH_SYNC(softmax_rows_kernel, row_blocks(n), dim3(32, kRowsPerBlock), s)(n, c, logits, probs,
                                                                                 labels, loss);
  detail::check_launch("softmax_cross_entropy_forward");
}

void softmax_cross_entropy_backward(int64_t n, int64_t c, const float* probs,
                                    const int64_t* labels, const float* dloss, float* dlogits,
                                    cudaStream_t s) {
  detail::launch_map(
      n * c,
      [=] __device__(int64_t i) {
        const int64_t r = i / c, j = i - r * c;
        return dloss[r] * (probs[i] - (labels[r] == j ? 1.f : 0.f));
      },
      dlogits, s, "softmax_cross_entropy_backward");
}

}  // namespace fastconv::cuda
