// add_activation: y = act(a + b), the residual join of a ResNet block and its relu in one
// pass (numpy's single-threaded add plus a separate relu pass read the data three times).
//
// In-place activation over rows of an output the caller has just written (the conv epilogue):
// applied chunk by chunk while the rows are still in cache, it saves the separate
// bias+activation pass a layer would otherwise make over the whole output.
//
// tanh is written through exp_vec (tanh z = 1 - 2 / (exp(2z) + 1)) so the loop vectorises;
// both sides of the quotient saturate correctly (exp overflow gives 1, underflow gives -1).
#include <algorithm>

#include "cpu/fast_exp.h"
#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

template <Activation A>
void apply_rows(int64_t n, float* __restrict y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float z = y[i];
    if constexpr (A == Activation::Relu) y[i] = z > 0.f ? z : 0.f;
    else if constexpr (A == Activation::Sigmoid) y[i] = 1.f / (1.f + exp_vec(-z));
    else if constexpr (A == Activation::Tanh) y[i] = 1.f - 2.f / (exp_vec(2.f * z) + 1.f);
  }
}

}  // namespace

void activation_inplace(int64_t count, float* y, Activation act) {
  switch (act) {
    case Activation::Relu: return apply_rows<Activation::Relu>(count, y);
    case Activation::Sigmoid: return apply_rows<Activation::Sigmoid>(count, y);
    case Activation::Tanh: return apply_rows<Activation::Tanh>(count, y);
    case Activation::Linear: return;
  }
}

void activation_inplace_parallel(int64_t count, float* y, Activation act) {
  if (act == Activation::Linear) return;
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (count >= kParallelGrain)
  for (int64_t i = 0; i < blocks; ++i)
    activation_inplace(std::min(kBlock, count - i * kBlock), y + i * kBlock, act);
}

void add_activation(int64_t count, const float* a, const float* b, Activation act, float* y) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (count >= kParallelGrain)
  for (int64_t i = 0; i < blocks; ++i) {
    const int64_t e0 = i * kBlock, n = std::min(kBlock, count - e0);
    const float* __restrict ai = a + e0;
    const float* __restrict bi = b + e0;
    float* __restrict yi = y + e0;
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) yi[e] = ai[e] + bi[e];
    activation_inplace(n, yi, act);  // on the block just written, still in L1/L2
  }
}

}  // namespace fastconv::cpu
