// Row softmax and softmax cross-entropy on (n, c) float32, OpenMP over rows.
//
// Both shift each row by its maximum before exp, so exp never overflows and the largest term
// is exactly 1 (the sum is >= 1, its log finite). The loss uses log-sum-exp,
// loss = max + log(sum exp(x - max)) - x[label], never log(prob), so it stays finite and
// accurate for logits of any magnitude (e.g. 1e4) where prob underflows to 0.
#include <cmath>

#include "cpu/fast_exp.h"
#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// Sums run in float lanes over blocks of kBlock elements (vectorised: a double reduction
// converts every element and was 6x slower), block totals in double: the error stays that of
// a short float sum however many classes there are.
constexpr int64_t kBlock = 1024;

// y = exp(x - max(x)); returns (max, sum of y) for the row.
inline void shifted_exp(int64_t c, const float* __restrict x, float* __restrict y,
                        float* row_max, double* sum) {
  // A NaN may be skipped by this max (comparisons with NaN are false), but exp(NaN - mx) is
  // NaN and makes the row's sum NaN, so the row's outputs and its loss are NaN all the same.
  float mx = x[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 1; j < c; ++j) mx = x[j] > mx ? x[j] : mx;
  double total = 0.0;
  const f32x16 shift = splat16(mx);
  for (int64_t j0 = 0; j0 < c; j0 += kBlock) {
    const int64_t j1 = j0 + kBlock < c ? j0 + kBlock : c;
    f32x16 acc = splat16(0.f);
    int64_t j = j0;
    for (; j + kLanes <= j1; j += kLanes) {  // exp16: see fast_exp.h
      const f32x16 e = exp16(load16(x + j) - shift);
      store16(y + j, e);
      acc += e;
    }
    float s = 0.f;
    for (int k = 0; k < (int)kLanes; ++k) s += acc[k];
    for (; j < j1; ++j) {
      y[j] = exp_vec(x[j] - mx);
      s += y[j];
    }
    total += s;
  }
  *row_max = mx;
  *sum = total;
}

inline double dot(int64_t c, const float* __restrict a, const float* __restrict b) {
  double total = 0.0;
  for (int64_t j0 = 0; j0 < c; j0 += kBlock) {
    const int64_t j1 = j0 + kBlock < c ? j0 + kBlock : c;
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = j0; j < j1; ++j) s += a[j] * b[j];
    total += s;
  }
  return total;
}

}  // namespace

void softmax_forward(int64_t n, int64_t c, const float* x, float* y) {
#pragma omp parallel if (n * c >= kParallelGrain)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float mx;
      double s;
      shifted_exp(c, x + i * c, y + i * c, &mx, &s);
      const float inv = (float)(1.0 / s);
      for (int64_t j = 0; j < c; ++j) y[i * c + j] *= inv;
    }
  }
}

// dx = y * (dy - sum(dy * y)) per row (Jacobian-vector product of softmax).
void softmax_backward(int64_t n, int64_t c, const float* dy, const float* y, float* dx) {
#pragma omp parallel if (n * c >= kParallelGrain)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* g = dy + i * c;
      const float* yr = y + i * c;
      const float d = (float)dot(c, g, yr);
      for (int64_t j = 0; j < c; ++j) dx[i * c + j] = yr[j] * (g[j] - d);
    }
  }
}

void softmax_cross_entropy_forward(int64_t n, int64_t c, const float* logits,
                                   const int64_t* labels, float* loss, float* probs) {
#pragma omp parallel if (n * c >= kParallelGrain)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* x = logits + i * c;
      float* p = probs + i * c;
      float mx;
      double s;
      shifted_exp(c, x, p, &mx, &s);
      const float inv = (float)(1.0 / s);
      for (int64_t j = 0; j < c; ++j) p[j] *= inv;
      // (x[label] - mx) first: both are large, their difference is exact-ish and small.
      loss[i] = (float)(std::log(s) - ((double)x[labels[i]] - (double)mx));
    }
  }
}

void softmax_cross_entropy_backward(int64_t n, int64_t c, const float* probs,
                                    const int64_t* labels, const float* dloss, float* dlogits) {
#pragma omp parallel if (n * c >= kParallelGrain)
  {
    note_team();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float g = dloss[i];
      for (int64_t j = 0; j < c; ++j) dlogits[i * c + j] = g * probs[i * c + j];
      dlogits[i * c + labels[i]] -= g;
    }
  }
}

}  // namespace fastconv::cpu
