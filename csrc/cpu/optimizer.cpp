// Fused in-place optimizer updates on float32 vectors: one pass that reads the parameter,
// the gradient and every slot once and writes the parameter and slots once. The NumPy code of
// fastconv/optimizers/*.py makes a temporary per operator (Adam: ~10 passes over 4 arrays).
//
// Each formula mirrors the NumPy one operation by operation in float32, so the two agree to
// rounding (the compiler may fuse a*b+c into one FMA). `decay` is the base optimizer's
// decoupled weight decay w -= w * (lr * weight_decay), applied first; 0 disables it. Factors
// like 1 - beta_1 arrive already rounded from double, as NumPy rounds the Python float
// (float 1 - 0.9f is 0.100000024, not 0.1f).
// OpenMP over the elements above kTeamGrain (parallel.h).
#include <omp.h>

#include <cmath>

#include "common/nan_math.h"
#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// body(i) for i in [0, n): OpenMP splits the range into one contiguous share per thread and
// each share runs as a plain loop, which the compiler vectorises with contiguous loads.
// (`omp parallel for simd` over the lambda compiled to gathers: 10x slower.)
template <typename Body>
void for_each_element(int64_t n, Body body) {
  parallel_region((n >= kTeamGrain) ? 0 : 1, [&] {
    note_team();
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
    for (int64_t i = i0; i < i1; ++i) body(i);
  });
}

}  // namespace

void sgd_update(int64_t n, float* __restrict w, const float* __restrict g,
                float* __restrict velocity, float lr, float momentum, bool nesterov,
                float decay) {
  if (!velocity) {
    for_each_element(n, [=](int64_t i) {
      const float wi = w[i] - w[i] * decay;
      w[i] = wi - lr * g[i];
    });
  } else if (nesterov) {
    for_each_element(n, [=](int64_t i) {
      const float wi = w[i] - w[i] * decay;
      const float v = velocity[i] * momentum - lr * g[i];
      velocity[i] = v;
      w[i] = wi + (momentum * v - lr * g[i]);
    });
  } else {
    for_each_element(n, [=](int64_t i) {
      const float wi = w[i] - w[i] * decay;
      const float v = velocity[i] * momentum - lr * g[i];
      velocity[i] = v;
      w[i] = wi + v;
    });
  }
}

void adam_update(int64_t n, float* __restrict w, const float* __restrict g, float* __restrict m,
                 float* __restrict v, float* __restrict v_hat, float alpha, float one_b1,
                 float one_b2, float epsilon, float decay) {
  auto step = [=](int64_t i, bool ams) {
    const float gi = g[i];
    const float wi = w[i] - w[i] * decay;
    const float mi = m[i] + (gi - m[i]) * one_b1;
    float vi = v[i] + (gi * gi - v[i]) * one_b2;
    m[i] = mi;
    v[i] = vi;
    if (ams) {
      vi = max_nan(v_hat[i], vi);  // np.maximum(v_hat, v): a NaN in either stays NaN
      v_hat[i] = vi;
    }
    w[i] = wi - (alpha * mi) / (std::sqrt(vi) + epsilon);
  };
  if (v_hat) for_each_element(n, [=](int64_t i) { step(i, true); });
  else for_each_element(n, [=](int64_t i) { step(i, false); });
}

void rmsprop_update(int64_t n, float* __restrict w, const float* __restrict g,
                    float* __restrict ms, float* __restrict mg, float* __restrict mom, float lr,
                    float rho, float one_rho, float momentum, float epsilon, float decay) {
  for_each_element(n, [=](int64_t i) {
    const float gi = g[i];
    const float wi = w[i] - w[i] * decay;
    const float msi = ms[i] * rho + one_rho * gi * gi;
    ms[i] = msi;
    float denom;
    if (mg) {
      const float mgi = mg[i] * rho + one_rho * gi;
      mg[i] = mgi;
      denom = msi - mgi * mgi + epsilon;
    } else {
      denom = msi + epsilon;
    }
    const float inc = lr * gi / std::sqrt(denom);
    if (mom) {
      const float mo = mom[i] * momentum + inc;
      mom[i] = mo;
      w[i] = wi - mo;
    } else {
      w[i] = wi - inc;
    }
  });
}

void adagrad_update(int64_t n, float* __restrict w, const float* __restrict g,
                    float* __restrict acc, float lr, float epsilon, float decay) {
  for_each_element(n, [=](int64_t i) {
    const float gi = g[i];
    const float wi = w[i] - w[i] * decay;
    const float a = acc[i] + gi * gi;
    acc[i] = a;
    w[i] = wi - lr * gi / std::sqrt(a + epsilon);
  });
}

}  // namespace fastconv::cpu
