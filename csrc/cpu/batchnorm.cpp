// Batch normalisation over the rows of x viewed as (m, c) (every axis but the channel axis).
//
// Training forward = two passes over x: (1) per-channel sums of d and d^2 with d = x - x[0]
// (float within 64-row blocks, double across them: parallel.h; the shift by the first row
// keeps E[d^2] - E[d]^2 from cancelling when |mean| >> std), (2) y = x*scale + shift. Backward = two passes over (dy, x): (1) sum(dy)
// and sum(dy*(x-mean)), (2) dx. OpenMP over rows in both; see parallel.h.
#include <cmath>
#include <vector>

#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// y[r, :] = (x[r, :] - center) * scale + shift, rows in parallel. Subtracting a center near
// the data first matters: x*scale + (beta - mean*scale) cancels two large terms when
// |mean| * inv_std is large (e.g. mean 50, eps 1e-5 at m == 1 loses 3 digits).
void affine_rows(int64_t m, int64_t c, const float* x, const float* center, const float* scale,
                 const float* shift, float* y) {
  const int64_t group = row_group(c);
  const std::vector<float> ct = tile(center, c, group), sc = tile(scale, c, group),
                           sh = tile(shift, c, group);
  for_each_run(m, c, y, [&](int64_t r0, int64_t rows, float* __restrict yr) {
    const float* __restrict xr = x + r0 * c;
    const float* __restrict cen = ct.data();
    const float* __restrict s = sc.data();
    const float* __restrict b = sh.data();
    for (int64_t e = 0; e < rows * c; ++e) yr[e] = (xr[e] - cen[e]) * s[e] + b[e];
  });
}

}  // namespace

void batch_norm_forward_train(int64_t m, int64_t c, const float* x, const float* gamma,
                              const float* beta, float eps, float* y, float* mean, float* var,
                              float* inv_std) {
  const float* pivot = x;  // row 0; m >= 1 is checked by the binding
  const std::vector<float> pivot_t = tile(pivot, c, row_group(c));
  std::vector<double> sums(2 * c);
  column_reduce(m, c, 2, sums.data(), nullptr,
                [&](int64_t r0, int64_t rows, float* acc, int64_t stride, float*) {
    const float* __restrict xr = x + r0 * c;
    const float* __restrict p = pivot_t.data();
    float* __restrict s1 = acc;
    float* __restrict s2 = acc + stride;
    for (int64_t e = 0; e < rows * c; ++e) {
      const float d = xr[e] - p[e];
      s1[e] += d;
      s2[e] += d * d;
    }
  });
  std::vector<float> scale(c), shift(c);
  for (int64_t j = 0; j < c; ++j) {
    const double md = sums[j] / (double)m;
    double v = sums[c + j] / (double)m - md * md;
    v = v < 0.0 ? 0.0 : v;
    const double mu = (double)pivot[j] + md;
    const double is = 1.0 / std::sqrt(v + (double)eps);
    mean[j] = (float)mu;
    var[j] = (float)v;
    inv_std[j] = (float)is;
    // Centre on the pivot row (a float, so x - pivot is exact for nearby x) and fold the
    // double-precision remainder pivot - mean into the shift.
    scale[j] = (float)((double)gamma[j] * is);
    shift[j] = (float)((double)beta[j] - md * (double)gamma[j] * is);
  }
  affine_rows(m, c, x, pivot, scale.data(), shift.data(), y);
}

void batch_norm_forward_inference(int64_t m, int64_t c, const float* x, const float* gamma,
                                  const float* beta, const float* mean, const float* var,
                                  float eps, float* y) {
  std::vector<float> scale(c);
  for (int64_t j = 0; j < c; ++j)
    scale[j] = (float)((double)gamma[j] / std::sqrt((double)var[j] + (double)eps));
  affine_rows(m, c, x, mean, scale.data(), beta, y);
}

// With xhat = (x - mean) * inv_std:
//   dbeta = sum dy,  dgamma = sum dy * xhat,
//   dx = gamma * inv_std * (dy - dbeta/m - xhat * dgamma/m).
void batch_norm_backward(int64_t m, int64_t c, const float* dy, const float* x,
                         const float* gamma, const float* mean, const float* inv_std, float* dx,
                         float* dgamma, float* dbeta) {
  const int64_t group = row_group(c);
  const std::vector<float> mean_t = tile(mean, c, group);
  std::vector<double> sums(2 * c);
  column_reduce(m, c, 2, sums.data(), nullptr,
                [&](int64_t r0, int64_t rows, float* acc, int64_t stride, float*) {
    const float* __restrict xr = x + r0 * c;
    const float* __restrict gr = dy + r0 * c;
    const float* __restrict mu = mean_t.data();
    float* __restrict s_dy = acc;
    float* __restrict s_dyx = acc + stride;
    for (int64_t e = 0; e < rows * c; ++e) {
      s_dy[e] += gr[e];
      s_dyx[e] += gr[e] * (xr[e] - mu[e]);
    }
  });
  // dx = k * (dy - a - (x - mean) * b) per channel.
  std::vector<float> kv(c), av(c), bv(c);
  float* __restrict k = kv.data();
  float* __restrict a = av.data();
  float* __restrict b = bv.data();
  for (int64_t j = 0; j < c; ++j) {
    const double is = inv_std[j];
    dbeta[j] = (float)sums[j];
    dgamma[j] = (float)(sums[c + j] * is);
    k[j] = (float)((double)gamma[j] * is);
    a[j] = (float)(sums[j] / (double)m);
    b[j] = (float)(sums[c + j] * is * is / (double)m);
  }
  const std::vector<float> kt = tile(k, c, group), at = tile(a, c, group), bt = tile(b, c, group);
  for_each_run(m, c, dx, [&](int64_t r0, int64_t rows, float* __restrict out) {
    const float* __restrict xr = x + r0 * c;
    const float* __restrict gr = dy + r0 * c;
    const float* __restrict mu = mean_t.data();
    const float* __restrict kk = kt.data();
    const float* __restrict aa = at.data();
    const float* __restrict bb = bt.data();
    for (int64_t e = 0; e < rows * c; ++e)
      out[e] = kk[e] * (gr[e] - aa[e] - (xr[e] - mu[e]) * bb[e]);
  });
}

}  // namespace fastconv::cpu
