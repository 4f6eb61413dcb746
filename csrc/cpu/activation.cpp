// y = act(x + b) on x viewed as (m, c), and its backward from the saved output y.
//
// Backward works from y, not z = x + b, so the forward input need not be kept:
// relu' = (y > 0), sigmoid' = y (1 - y), tanh' = 1 - y^2. OpenMP over rows; the bias
// gradient is a per-channel column sum (parallel.h).
#include <cmath>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/fast_exp.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// exp(-z) overflows to inf for z < -88, giving 1/inf = 0: the right limit, no NaN.
inline float sigmoid(float z) { return 1.0f / (1.0f + exp_vec(-z)); }

template <Activation A>
inline float apply(float z) {
  if constexpr (A == Activation::Relu) return z > 0.f ? z : 0.f;
  else if constexpr (A == Activation::Sigmoid) return sigmoid(z);
  else if constexpr (A == Activation::Tanh) return tanh_vec(z);
  else return z;
}

template <Activation A>
inline float derivative_from_y(float y) {
  if constexpr (A == Activation::Relu) return y > 0.f ? 1.f : 0.f;
  else if constexpr (A == Activation::Sigmoid) return y * (1.f - y);
  else if constexpr (A == Activation::Tanh) return 1.f - y * y;
  else return 1.f;
}

template <Activation A>
void forward(int64_t m, int64_t c, const float* __restrict x, const float* __restrict b,
             float* __restrict y) {
#pragma omp parallel for schedule(static) if (m * c >= kParallelGrain)
  for (int64_t r = 0; r < m; ++r) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    if (b)
      for (int64_t j = 0; j < c; ++j) yr[j] = apply<A>(xr[j] + b[j]);
    else
      for (int64_t j = 0; j < c; ++j) yr[j] = apply<A>(xr[j]);
  }
}

template <Activation A>
void backward(int64_t m, int64_t c, const float* __restrict dy, const float* __restrict y,
              float* __restrict dz, float* db) {
  auto row = [=](int64_t r) {
    const float* gr = dy + r * c;
    const float* yr = y + r * c;
    float* out = dz + r * c;
    for (int64_t j = 0; j < c; ++j) out[j] = gr[j] * derivative_from_y<A>(yr[j]);
  };
  if (!db) {
#pragma omp parallel for schedule(static) if (m * c >= kParallelGrain)
    for (int64_t r = 0; r < m; ++r) row(r);
    return;
  }
  // One pass: each thread writes its rows of dz and sums them into its own accumulators.
  std::vector<double> sums(c);
  column_reduce(m, c, 1, sums.data(), [&](int64_t r, float* __restrict acc) {
    const float* __restrict gr = dy + r * c;
    const float* __restrict yr = y + r * c;
    float* __restrict out = dz + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const float d = gr[j] * derivative_from_y<A>(yr[j]);
      out[j] = d;
      acc[j] += d;
    }
  });
  for (int64_t j = 0; j < c; ++j) db[j] = (float)sums[j];
}

}  // namespace

void bias_act_forward(int64_t m, int64_t c, const float* x, const float* b, Activation act,
                      float* y) {
  switch (act) {
    case Activation::Linear: return forward<Activation::Linear>(m, c, x, b, y);
    case Activation::Relu: return forward<Activation::Relu>(m, c, x, b, y);
    case Activation::Sigmoid: return forward<Activation::Sigmoid>(m, c, x, b, y);
    case Activation::Tanh: return forward<Activation::Tanh>(m, c, x, b, y);
  }
}

void bias_act_backward(int64_t m, int64_t c, const float* dy, const float* y, Activation act,
                       float* dz, float* db) {
  switch (act) {
    case Activation::Linear: return backward<Activation::Linear>(m, c, dy, y, dz, db);
    case Activation::Relu: return backward<Activation::Relu>(m, c, dy, y, dz, db);
    case Activation::Sigmoid: return backward<Activation::Sigmoid>(m, c, dy, y, dz, db);
    case Activation::Tanh: return backward<Activation::Tanh>(m, c, dy, y, dz, db);
  }
}

}  // namespace fastconv::cpu
