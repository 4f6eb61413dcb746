// Every native kernel, declared once. The CPU versions live in csrc/cpu/, the CUDA twins
// (issue 7) in csrc/cuda/ with the same signatures in namespace fastconv::cuda.
//
// Kernels take raw float32 pointers to C-contiguous buffers, NHWC activations and HWIO
// weights, plus a geometry struct that csrc/common/geometry.h has already validated. They do
// not allocate Python objects and do not touch the GIL; the bindings (csrc/bindings/) check
// dtypes/shapes, allocate outputs and release the GIL around these calls.
#pragma once
#include <cstdint>
#include <string>

#include "common/geometry.h"

namespace fastconv {

// Relu6 = min(max(z, 0), 6) (Keras ReLU(6.0), MobileNet's): the inference plan runs it in the
// conv epilogue (engine/inference.py); NaN stays NaN.
enum class Activation { Linear, Relu, Sigmoid, Tanh, Relu6 };

namespace cpu {

// ---- threads (threads.cpp): one OpenMP pool; OpenBLAS stays single-threaded ----
void set_num_threads(int n);
int get_num_threads();
// Team keeper (threads.cpp): between team_hold_begin() and team_hold_end() (nestable, any
// thread) up to get_num_threads() - 1 SCHED_IDLE threads spin on otherwise idle CPUs, so the
// OpenMP workers' CPUs do not halt between the parallel regions of one inference call.
// Parked (blocked, no CPU) otherwise. team_spinning(): how many spin right now (test hook).
void team_hold_begin();
void team_hold_end();
int team_spinning();
// Outputs of at least this many bytes are written with non-temporal stores (cpu/simd.h).
void set_stream_threshold(int64_t bytes);
int64_t get_stream_threshold();
// memcpy split over the OpenMP threads (benchmark baseline for the bandwidth-bound kernels).
void parallel_copy(int64_t nbytes, const void* src, void* dst);
// Upper bound on the im2col workspace of one conv call, in bytes (default 32 MiB).
void set_workspace_limit(int64_t bytes);
int64_t get_workspace_limit();
// Serial sgemm implementation: "native" (fastconv's AVX-512 kernel, gemm.h), "openblas", or
// "auto" (native where compiled in). set_gemm_backend throws std::invalid_argument on another
// name, or on "native" in a build without AVX-512. active_gemm_backend() resolves "auto".
void set_gemm_backend(const std::string& name);
std::string get_gemm_backend();
std::string active_gemm_backend();
// Serial sgemm (backend above) on the calling thread: C = alpha*op(A)*op(B) + beta*C, row-major.
// Every kernel goes through here; safe to call from several OpenMP threads at once.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);
// The OpenBLAS path of sgemm whatever the backend setting (tests and benchmarks compare).
void sgemm_openblas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc);
// The same product split across the OpenMP threads (serial when small or already inside a
// parallel region).
void parallel_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc);

// ---- convolution (conv2d.cpp, im2col.cpp, depthwise.cpp) ----
// y = act(conv(x, w) + b + residual); b and residual (y's shape, not aliasing y) may be null.
// The activation is applied chunk by chunk while the output is in cache (activation_inplace
// below); the GEMM paths start each chunk of y from bias + residual, so a residual block's
// add + relu costs no pass of its own.
// `prepared` (null: none) holds conv2d_prepare's output for this g and w.
void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                    float* y, Activation act = Activation::Linear,
                    const float* residual = nullptr, const float* prepared = nullptr);
// Forward weights prepared once for repeated calls on one geometry (inference plans): the
// Winograd filter transform of a 3x3 stride-1 conv where Winograd pays, which batch-1 passes
// would otherwise redo on every call, or any other ungrouped conv's weights packed for the
// native GEMM (GemmPackedB, gemm.h), read once per call instead of in place. The geometry
// alone picks the form (conv2d_prepared_form: "winograd", "packed" or "" for none);
// conv2d_prepared_floats(g) is its size (0: g has no prepared form); whether the forward pass
// would use it now (the algorithm setting, threads, workspace limit) is
// conv2d_prepared_pays(g). A forward call that takes another path ignores it.
const char* conv2d_prepared_form(const ConvGeometry& g);
int64_t conv2d_prepared_floats(const ConvGeometry& g);
bool conv2d_prepared_pays(const ConvGeometry& g);
void conv2d_prepare(const ConvGeometry& g, const float* w, float* prepared);
// y[0 .. count) = act(y) in place: serial (for use inside a kernel's own threads) and
// OpenMP-parallel (activation.cpp).
void activation_inplace(int64_t count, float* y, Activation act);
void activation_inplace_parallel(int64_t count, float* y, Activation act);
// dz[0 .. count) *= act'(y) in place, from the activation's output y (serial: a kernel's
// epilogue on rows it has just written).
void activation_backward_inplace(int64_t count, const float* y, float* dz, Activation act);
// y[0 .. count) = act(a + b) elementwise (a residual add and its activation), OpenMP-parallel.
void add_activation(int64_t count, const float* a, const float* b, Activation act, float* y);
// dx = conv_transpose(dy, w); dx is fully overwritten.
void conv2d_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx);
// dw (and db if non-null) fully overwritten.
void conv2d_backward_weights(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                             float* db);

// ---- conv algorithm choice (conv_algorithm.cpp) ----
// Global setting: "auto" (default: the direct kernel for few channels, Winograd for 3x3
// stride-1 convs where measured to win, im2col otherwise), "im2col" (always), "winograd"
// (wherever it applies), "direct" (every groups == 1 conv). Other names: invalid_argument.
enum class ConvPass { Forward, BackwardData, BackwardWeights };
void set_conv_algorithm(const std::string& name);
std::string get_conv_algorithm();
// What the given pass of this conv runs with now: "depthwise", "direct", "winograd", "im2col".
std::string conv_algorithm(const ConvGeometry& g, ConvPass pass);

// ---- dense (dense.cpp): x (n, k), w (k, m), y (n, m) ----
void dense_forward(int64_t n, int64_t k, int64_t m, const float* x, const float* w,
                   const float* b, float* y);
// Any of dx, dw, db may be null (not needed).
void dense_backward(int64_t n, int64_t k, int64_t m, const float* dy, const float* x,
                    const float* w, float* dx, float* dw, float* db);

// ---- pooling (cpu/pool_*.cpp) ----
// Max pool: padded cells never win; ties go to the first cell in row-major window order.
void max_pool2d_forward(const PoolGeometry& g, const float* x, float* y);
void max_pool2d_backward(const PoolGeometry& g, const float* dy, const float* x, float* dx);
// The same forward, also saving each output's winner as its position ky*kw + kx in the
// (padded) window, so the backward reads dy + arg (uint8) instead of x. Needs kh*kw <= 256.
void max_pool2d_forward_argmax(const PoolGeometry& g, const float* x, float* y, uint8_t* arg);
void max_pool2d_backward_argmax(const PoolGeometry& g, const float* dy, const uint8_t* arg,
                                float* dx);
// Average pool: divides by the number of real (unpadded) cells in each window.
void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* y);
// With y (the pool's input, an activation's output) and act: dx = the pooled gradient times
// act'(y), the activation's backward applied to each row while it is in cache (one pass
// over the input-sized arrays instead of two: LeNet's sigmoid + average pool).
void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx, const float* y = nullptr,
                         Activation act = Activation::Linear);
// x (n, hw, c) -> y (n, c)
void global_avg_pool2d_forward(int64_t n, int64_t hw, int64_t c, const float* x, float* y);
void global_avg_pool2d_backward(int64_t n, int64_t hw, int64_t c, const float* dy, float* dx);

// ---- batch normalisation (batchnorm.cpp): x viewed as (m, c), statistics per channel ----
// var is the biased batch variance (Keras); inv_std = 1/sqrt(var + eps). relu: y = max(y, 0)
// in the same pass (a BatchNormalization -> ReLU chain).
void batch_norm_forward_train(int64_t m, int64_t c, const float* x, const float* gamma,
                              const float* beta, float eps, float* y, float* mean, float* var,
                              float* inv_std, bool relu = false);
void batch_norm_forward_inference(int64_t m, int64_t c, const float* x, const float* gamma,
                                  const float* beta, const float* mean, const float* var,
                                  float eps, float* y, bool relu = false);
// relu_beta non-null: the forward applied a relu with this beta; dy is masked by the sign of
// the recomputed output, so the relu's output need not be kept.
void batch_norm_backward(int64_t m, int64_t c, const float* dy, const float* x,
                         const float* gamma, const float* mean, const float* inv_std, float* dx,
                         float* dgamma, float* dbeta, const float* relu_beta = nullptr);

// ---- concatenation (concat.cpp): `parts` arrays viewed as (rows, widths[i]) -> (rows, sum) ----
void concat_last(int64_t rows, int64_t parts, const float* const* in, const int64_t* widths,
                 float* out);

// ---- bias + activation (activation.cpp): x viewed as (m, c) ----
// y = act(x + b); b may be null.
void bias_act_forward(int64_t m, int64_t c, const float* x, const float* b, Activation act,
                      float* y);
// dz = dy * act'(z) computed from the output y; db = sum over m of dz (if non-null).
void bias_act_backward(int64_t m, int64_t c, const float* dy, const float* y, Activation act,
                       float* dz, float* db);

// ---- softmax and loss (softmax.cpp): rows of length c ----
void softmax_forward(int64_t n, int64_t c, const float* x, float* y);
void softmax_backward(int64_t n, int64_t c, const float* dy, const float* y, float* dx);
// loss[i] = -log softmax(logits[i])[labels[i]], computed stably (max-shifted log-sum-exp).
// Labels must already be validated in [0, c).
void softmax_cross_entropy_forward(int64_t n, int64_t c, const float* logits,
                                   const int64_t* labels, float* loss, float* probs);
// dlogits[i] = dloss[i] * (probs[i] - onehot(labels[i]))
void softmax_cross_entropy_backward(int64_t n, int64_t c, const float* probs,
                                    const int64_t* labels, const float* dloss, float* dlogits);

// ---- optimizer updates (optimizer.cpp): in place on float32 vectors of n elements ----
// Keras formulas as in fastconv/optimizers/*.py; decay = lr * weight_decay (0: none), applied
// to w first. Null slots: velocity (SGD without momentum), v_hat (no amsgrad), mg (RMSprop
// not centered), mom (RMSprop without momentum).
void sgd_update(int64_t n, float* w, const float* g, float* velocity, float lr, float momentum,
                bool nesterov, float decay);
// one_b1 = 1 - beta_1 etc., rounded to float from double.
void adam_update(int64_t n, float* w, const float* g, float* m, float* v, float* v_hat,
                 float alpha, float one_b1, float one_b2, float epsilon, float decay);
void rmsprop_update(int64_t n, float* w, const float* g, float* ms, float* mg, float* mom,
                    float lr, float rho, float one_rho, float momentum, float epsilon,
                    float decay);
void adagrad_update(int64_t n, float* w, const float* g, float* acc, float lr, float epsilon,
                    float decay);

}  // namespace cpu
}  // namespace fastconv
