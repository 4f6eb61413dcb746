// Row softmax and softmax cross-entropy on (n, c) float32, OpenMP over rows.
//
// Both shift each row by its maximum before exp, so exp never overflows and the largest term
// is exactly 1 (the sum is >= 1, its log finite). The loss uses log-sum-exp,
// loss = max + log(sum exp(x - max)) - x[label], never log(prob), so it stays finite and
// accurate for logits of any magnitude (e.g. 1e4) where prob underflows to 0.
#include <cmath>

#include "kernels.h"

namespace fastconv::cpu {

namespace {

// y = exp(x - max(x)); returns (max, sum of y) for the row.
inline void shifted_exp(int64_t c, const float* x, float* y, float* row_max, double* sum) {
  float mx = x[0];
  for (int64_t j = 1; j < c; ++j) mx = x[j] > mx ? x[j] : mx;
  double s = 0.0;
  for (int64_t j = 0; j < c; ++j) {
    y[j] = std::exp(x[j] - mx);
    s += (double)y[j];
  }
  *row_max = mx;
  *sum = s;
}

}  // namespace

void softmax_forward(int64_t n, int64_t c, const float* x, float* y) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float mx;
    double s;
    shifted_exp(c, x + i * c, y + i * c, &mx, &s);
    const float inv = (float)(1.0 / s);
    for (int64_t j = 0; j < c; ++j) y[i * c + j] *= inv;
  }
}

// dx = y * (dy - sum(dy * y)) per row (Jacobian-vector product of softmax).
void softmax_backward(int64_t n, int64_t c, const float* dy, const float* y, float* dx) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* g = dy + i * c;
    const float* yr = y + i * c;
    double dot = 0.0;
    for (int64_t j = 0; j < c; ++j) dot += (double)g[j] * (double)yr[j];
    const float d = (float)dot;
    for (int64_t j = 0; j < c; ++j) dx[i * c + j] = yr[j] * (g[j] - d);
  }
}

void softmax_cross_entropy_forward(int64_t n, int64_t c, const float* logits,
                                   const int64_t* labels, float* loss, float* probs) {
#pragma omp parallel for schedule(static)
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

void softmax_cross_entropy_backward(int64_t n, int64_t c, const float* probs,
                                    const int64_t* labels, const float* dloss, float* dlogits) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = dloss[i];
    for (int64_t j = 0; j < c; ++j) dlogits[i * c + j] = g * probs[i * c + j];
    dlogits[i * c + labels[i]] -= g;
  }
}

}  // namespace fastconv::cpu
