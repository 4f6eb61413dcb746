// Batch normalisation over the rows of x viewed as (m, c) (every axis but the channel axis).
//
// Training forward = two passes over x: (1) per-channel sums of d and d^2 with d = x - x[0]
// (float within 64-row blocks, double across them: parallel.h; the shift by the first row
// keeps E[d^2] - E[d]^2 from cancelling when |mean| >> std), (2) y = x*scale + shift. Backward = two passes over (dy, x): (1) sum(dy)
// and sum(dy*(x-mean)), (2) dx. OpenMP over rows in both; see parallel.h.
//
// A following ReLU fuses in: the forward clamps in its write pass; the backward masks dy by
// the sign of y, recomputed from x in both of its passes (x is read there anyway), so
// neither the relu's output nor a separate relu pass over dy is needed.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/nan_math.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// y[r, :] = (x[r, :] - center) * scale + shift, rows in parallel. Subtracting a center near
// the data first matters: x*scale + (beta - mean*scale) cancels two large terms when
// |mean| * inv_std is large (e.g. mean 50, eps 1e-5 at m == 1 loses 3 digits).
void affine_rows(int64_t m, int64_t c, const float* x, const float* center, const float* scale,
                 const float* shift, bool relu, float* y) {
  const int64_t group = row_group(c);
  const std::vector<float> ct = tile(center, c, group), sc = tile(scale, c, group),
                           sh = tile(shift, c, group);
  for_each_run(m, c, y, [&](int64_t r0, int64_t rows, float* __restrict yr) {
    const float* __restrict xr = x + r0 * c;
    const float* __restrict cen = ct.data();
    const float* __restrict s = sc.data();
    const float* __restrict b = sh.data();
    if (relu)
      for (int64_t e = 0; e < rows * c; ++e) yr[e] = relu_nan((xr[e] - cen[e]) * s[e] + b[e]);
    else
      for (int64_t e = 0; e < rows * c; ++e) yr[e] = (xr[e] - cen[e]) * s[e] + b[e];
  });
}

}  // namespace

void batch_norm_forward_train(int64_t m, int64_t c, const float* x, const float* gamma,
                              const float* beta, float eps, float* y, float* mean, float* var,
                              float* inv_std, bool relu) {
  // Row 0 (m >= 1 is checked by the binding), with 0 for a channel where it is inf or NaN:
  // an infinite pivot would make x - pivot NaN for every row, so the mean of a channel
  // holding +inf would come out NaN instead of inf (the oracle's and PyTorch's); with 0 the
  // sums see the inf itself (a NaN pivot gives NaN sums either way).
  std::vector<float> pivot_v(x, x + c);
  for (float& p : pivot_v) p = p - p == 0.f ? p : 0.f;
  const float* pivot = pivot_v.data();
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
  affine_rows(m, c, x, pivot, scale.data(), shift.data(), relu, y);
}

void batch_norm_forward_inference(int64_t m, int64_t c, const float* x, const float* gamma,
                                  const float* beta, const float* mean, const float* var,
                                  float eps, float* y, bool relu) {
  std::vector<float> scale(c);
  for (int64_t j = 0; j < c; ++j)
    scale[j] = (float)((double)gamma[j] / std::sqrt((double)var[j] + (double)eps));
  affine_rows(m, c, x, mean, scale.data(), beta, relu, y);
}

// With xhat = (x - mean) * inv_std:
//   dbeta = sum dy,  dgamma = sum dy * xhat,
//   dx = gamma * inv_std * (dy - dbeta/m - xhat * dgamma/m).
// Through a fused relu, dy becomes dy * (y > 0) with y = (x - mean) * gamma * inv_std + beta.
namespace {

// Through a fused relu, dy * (y > 0) with y = (x - mean) * slope + beta recomputed from x,
// which both passes read anyway. Written with explicit vectors and an opaque load of dy: as a
// plain select, GCC turns it into a masked load that ran the pass 10x slower. Returns the
// masked gradient of kRegLanes elements at e; d = x - mean is handed back for the caller's use.
// Masked-off elements become dy * 0, not 0: a NaN or inf in dy stays NaN (the oracle's and
// TensorFlow's dy * (y > 0)). One register wide (simd.h f32xR): with 16-lane vectors the
// avx2 and baseline levels spilled every vector to the stack in halves (ResNet-18's fused
// BN+ReLU backward 2.5x its avx512 time; (32,56,56,64) 17.8 ms against 3.6 on this Zen 5).
// Same lanes, same operations per element: the same results at every level.
inline f32xR relu_masked(const float* gr, const float* xr, const float* mu, const float* slope,
                         const float* beta, int64_t e, f32xR& d) {
  d = loadR(xr + e) - loadR(mu + e);
  const f32xR y = d * loadR(slope + e) + loadR(beta + e);
  const f32xR g = loadR_plain(gr + e);
  return y > 0.f ? g : g * 0.f;
}

inline float relu_masked1(const float* gr, const float* xr, const float* mu, const float* slope,
                          const float* beta, int64_t e) {
  return (xr[e] - mu[e]) * slope[e] + beta[e] > 0.f ? gr[e] : gr[e] * 0.f;
}

template <bool Relu>
void backward_impl(int64_t m, int64_t c, const float* dy, const float* x, const float* gamma,
                   const float* mean, const float* inv_std, const float* relu_beta, float* dx,
                   float* dgamma, float* dbeta) {
  const int64_t group = row_group(c);
  std::vector<float> kv(c);  // gamma * inv_std: the output's slope per channel
  for (int64_t j = 0; j < c; ++j) kv[j] = (float)((double)gamma[j] * inv_std[j]);
  const std::vector<float> mean_t = tile(mean, c, group), slope_t = tile(kv.data(), c, group),
                           beta_t = Relu ? tile(relu_beta, c, group) : std::vector<float>();
  const float* beta_p = beta_t.data();
  std::vector<double> sums(2 * c);
  column_reduce(m, c, 2, sums.data(), nullptr,
                [&](int64_t r0, int64_t rows, float* acc, int64_t stride, float*) {
    const float* __restrict xr = x + r0 * c;
    const float* __restrict gr = dy + r0 * c;
    const float* __restrict mu = mean_t.data();
    float* __restrict s_dy = acc;
    float* __restrict s_dyx = acc + stride;
    int64_t e = 0;
    if constexpr (Relu) {
      const float* __restrict k = slope_t.data();
      for (; e + kRegLanes <= rows * c; e += kRegLanes) {
        f32xR d;
        const f32xR g = relu_masked(gr, xr, mu, k, beta_p, e, d);
        storeR(s_dy + e, loadR(s_dy + e) + g);
        storeR(s_dyx + e, loadR(s_dyx + e) + g * d);
      }
      for (; e < rows * c; ++e) {
        const float g = relu_masked1(gr, xr, mu, k, beta_p, e);
        s_dy[e] += g;
        s_dyx[e] += g * (xr[e] - mu[e]);
      }
      return;
    }
    for (; e < rows * c; ++e) {
      s_dy[e] += gr[e];
      s_dyx[e] += gr[e] * (xr[e] - mu[e]);
    }
  });
  // dx = k * (dy - a - (x - mean) * b) per channel.
  std::vector<float> av(c), bv(c);
  for (int64_t j = 0; j < c; ++j) {
    const double is = inv_std[j];
    dbeta[j] = (float)sums[j];
    dgamma[j] = (float)(sums[c + j] * is);
    av[j] = (float)(sums[j] / (double)m);
    bv[j] = (float)(sums[c + j] * is * is / (double)m);
  }
  const std::vector<float> at = tile(av.data(), c, group), bt = tile(bv.data(), c, group);
  for_each_run(m, c, dx, [&](int64_t r0, int64_t rows, float* __restrict out) {
    const float* __restrict xr = x + r0 * c;
    const float* __restrict gr = dy + r0 * c;
    const float* __restrict mu = mean_t.data();
    const float* __restrict kk = slope_t.data();
    const float* __restrict aa = at.data();
    const float* __restrict bb = bt.data();
    int64_t e = 0;
    if constexpr (Relu) {
      for (; e + kRegLanes <= rows * c; e += kRegLanes) {
        f32xR d;
        const f32xR g = relu_masked(gr, xr, mu, kk, beta_p, e, d);
        storeR(out + e, loadR(kk + e) * (g - loadR(aa + e) - d * loadR(bb + e)));
      }
      for (; e < rows * c; ++e)
        out[e] = kk[e] * (relu_masked1(gr, xr, mu, kk, beta_p, e) - aa[e] - (xr[e] - mu[e]) * bb[e]);
      return;
    }
    for (; e < rows * c; ++e) out[e] = kk[e] * (gr[e] - aa[e] - (xr[e] - mu[e]) * bb[e]);
  });
}

}  // namespace

void batch_norm_backward(int64_t m, int64_t c, const float* dy, const float* x,
                         const float* gamma, const float* mean, const float* inv_std, float* dx,
                         float* dgamma, float* dbeta, const float* relu_beta) {
  if (relu_beta)
    backward_impl<true>(m, c, dy, x, gamma, mean, inv_std, relu_beta, dx, dgamma, dbeta);
  else
    backward_impl<false>(m, c, dy, x, gamma, mean, inv_std, nullptr, dx, dgamma, dbeta);
}

}  // namespace fastconv::cpu
