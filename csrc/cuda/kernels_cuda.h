// CUDA twins of csrc/kernels.h, in namespace fastconv::cuda. Same names and argument order
// as the CPU kernels, on raw DEVICE pointers (CuPy's .data.ptr), plus the stream to launch
// on (CuPy's current stream). Launches are asynchronous; a launch error throws
// std::runtime_error naming the kernel. Shapes arrive already validated by
// common/geometry.h (the binding builds the geometry).
//
// GEMMs are not here: fastconv/cuda.py runs them through cuBLAS via cupy.matmul, with
// im2col / col2im below supplying the operands.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/geometry.h"

namespace fastconv::cuda {

// ---- convolution (im2col.cu, depthwise.cu) ----
// col: (n*oh*ow, groups*kh*kw*cin_g), layout of common/im2col_index.h.
void im2col(const ConvGeometry& g, const float* x, float* col, cudaStream_t s);
// dx (fully overwritten) = gather of dcol: one thread per input element, no atomics.
void col2im(const ConvGeometry& g, const float* dcol, float* dx, cudaStream_t s);
void depthwise_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y, cudaStream_t s);
void depthwise_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                             cudaStream_t s);
// dw (kh*kw, oc) and db (oc, may be null): deterministic block reductions.
void depthwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db, cudaStream_t s);
// out[j] = scale * sum_i a[i*cols + j], for each of `planes` stacked (rows, cols) matrices.
void column_sums(int64_t planes, int64_t rows, int64_t cols, const float* a, float scale,
                 float* out, cudaStream_t s);

// ---- pooling (pool2d.cu) ----
void max_pool2d_forward(const PoolGeometry& g, const float* x, float* y, cudaStream_t s);
void max_pool2d_backward(const PoolGeometry& g, const float* dy, const float* x, float* dx,
                         cudaStream_t s);
void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* y, cudaStream_t s);
void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx, cudaStream_t s);
void global_avg_pool2d_forward(int64_t n, int64_t hw, int64_t c, const float* x, float* y,
                               cudaStream_t s);
void global_avg_pool2d_backward(int64_t n, int64_t hw, int64_t c, const float* dy, float* dx,
                                cudaStream_t s);

// ---- batch normalisation (batchnorm.cu): x viewed as (m, c) ----
void batch_norm_forward_train(int64_t m, int64_t c, const float* x, const float* gamma,
                              const float* beta, float eps, float* y, float* mean, float* var,
                              float* inv_std, cudaStream_t s);
void batch_norm_forward_inference(int64_t m, int64_t c, const float* x, const float* gamma,
                                  const float* beta, const float* mean, const float* var,
                                  float eps, float* y, cudaStream_t s);
void batch_norm_backward(int64_t m, int64_t c, const float* dy, const float* x,
                         const float* gamma, const float* mean, const float* inv_std, float* dx,
                         float* dgamma, float* dbeta, cudaStream_t s);

// ---- bias + activation (activation.cu); act is a common/act_math.h ActCode ----
void bias_act_forward(int64_t m, int64_t c, const float* x, const float* b, int act, float* y,
                      cudaStream_t s);
void bias_act_backward(int64_t m, int64_t c, const float* dy, const float* y, int act,
                       float* dz, float* db, cudaStream_t s);

// ---- softmax and loss (softmax.cu): rows of length c ----
void softmax_forward(int64_t n, int64_t c, const float* x, float* y, cudaStream_t s);
void softmax_backward(int64_t n, int64_t c, const float* dy, const float* y, float* dx,
                      cudaStream_t s);
void softmax_cross_entropy_forward(int64_t n, int64_t c, const float* logits,
                                   const int64_t* labels, float* loss, float* probs,
                                   cudaStream_t s);
void softmax_cross_entropy_backward(int64_t n, int64_t c, const float* probs,
                                    const int64_t* labels, const float* dloss, float* dlogits,
                                    cudaStream_t s);

// ---- fused optimizer updates (optimizer.cu), Keras formulas; n elements each ----
// decay = lr * weight_decay (0: none) is applied to w first: w -= w*decay, as on the CPU.
// velocity null: w -= lr*g. Else v = momentum*v - lr*g; w += v (or momentum*v - lr*g, Nesterov).
void sgd_update(int64_t n, float* w, const float* g, float* velocity, float lr, float momentum,
                bool nesterov, float decay, cudaStream_t s);
// m += (g-m)(1-b1); v += (g^2-v)(1-b2); v_hat (amsgrad, may be null) = max(v_hat, v);
// w -= alpha * m / (sqrt(v or v_hat) + eps), alpha = lr*sqrt(1-b2^t)/(1-b1^t) from the caller.
void adam_update(int64_t n, float* w, const float* g, float* m, float* v, float* v_hat,
                 float alpha, float beta_1, float beta_2, float eps, float decay, cudaStream_t s);

// Number of visible devices; throws std::runtime_error with CUDA's reason when none.
int device_count();

}  // namespace fastconv::cuda
