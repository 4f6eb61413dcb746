// Batch normalisation over the rows of x viewed as (m, c) (every axis but the channel axis).
//
// Training forward = two passes over x: (1) per-channel sums of d and d^2 with d = x - x[0]
// (float within 64-row blocks, double across them: parallel.h; the shift by the first row
// keeps E[d^2] - E[d]^2 from cancelling when |mean| >> std), (2) y = x*scale + shift. Backward = two passes over (dy, x): (1) sum(dy)
// and sum(dy*(x-mean)), (2) dx. OpenMP over rows in both. The passes walk x in
// batchnorm_flat.h's super-rows with their parameters and float accumulators in registers
// (stop 35: the tiled arrays in memory of parallel.h's runs made them L1-port bound) where
// its rules say so (in_registers, forward_in_registers, kBackwardRunsFrom); else the runs.
//
// A following ReLU fuses in: the forward clamps in its write pass; the backward masks dy by
// the sign of y, recomputed from x in both of its passes (x is read there anyway), so
// neither the relu's output nor a separate relu pass over dy is needed.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/nan_math.h"
#include "cpu/batchnorm_flat.h"
#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

using bn_flat::Flat;
constexpr int L = kRegLanes;

// Float sums of d = x - pivot and d^2 over `rows` super-rows of W registers from x (stride
// `period`), added into t1 and t2.
template <int W>
inline void pivot_sums(const float* x, int64_t rows, int64_t period, const float* piv,
                       double* t1, double* t2) {
  f32xR p[W], a1[W], a2[W];
  for (int v = 0; v < W; ++v) p[v] = loadR(piv + v * L), a1[v] = a2[v] = f32xR{};
  for (int64_t r = 0; r < rows; ++r)
    for (int v = 0; v < W; ++v) {
      const f32xR d = loadR(x + r * period + v * L) - p[v];
      a1[v] += d;
      a2[v] += d * d;
    }
  bn_flat::add_lanes<W>(a1, t1);
  bn_flat::add_lanes<W>(a2, t2);
}

// y = (x - center) * scale + shift (relu: max(y, 0), NaN kept) over `rows` super-rows.
template <int W, bool Relu>
inline void affine_block(const float* x, float* y, int64_t rows, int64_t period,
                         const float* cen, const float* sc, const float* sh) {
  f32xR ce[W], s[W], b[W];
  for (int v = 0; v < W; ++v) ce[v] = loadR(cen + v * L), s[v] = loadR(sc + v * L), b[v] = loadR(sh + v * L);
  for (int64_t r = 0; r < rows; ++r)
    for (int v = 0; v < W; ++v) {
      f32xR z = (loadR(x + r * period + v * L) - ce[v]) * s[v] + b[v];
      if constexpr (Relu) z = z < 0.f ? f32xR{} : z;
      storeR(y + r * period + v * L, z);
    }
}

// y[r, :] = (x[r, :] - center) * scale + shift. Subtracting a center near the data first
// matters: x*scale + (beta - mean*scale) cancels two large terms when |mean| * inv_std is
// large (e.g. mean 50, eps 1e-5 at m == 1 loses 3 digits).
template <bool Relu>
void affine_impl(int64_t m, int64_t c, const float* x, const float* center, const float* scale,
                 const float* shift, float* y) {
  const Flat f = bn_flat::layout(m, c);
  if (!bn_flat::forward_in_registers(f, m)) {  // parallel.h's runs, parameters tiled in memory
    const int64_t group = row_group(c);
    const std::vector<float> ct = tile(center, c, group), sc = tile(scale, c, group),
                             sh = tile(shift, c, group);
    return for_each_run(m, c, y, [&](int64_t r0, int64_t rows, float* __restrict yr) {
      const float* __restrict xr = x + r0 * c;
      const float* __restrict cen = ct.data();
      const float* __restrict s = sc.data();
      const float* __restrict b = sh.data();
      for (int64_t e = 0; e < rows * c; ++e) {
        const float z = (xr[e] - cen[e]) * s[e] + b[e];
        yr[e] = Relu ? relu_nan(z) : z;
      }
    });
  }
  const std::vector<float> ct = tile(center, c, f.rows_per), sc = tile(scale, c, f.rows_per),
                           sh = tile(shift, c, f.rows_per);
  bn_flat::write_chunks<bn_flat::max_width(3)>(
      f, m, y,
      [&](int64_t s0, int64_t rows, int64_t col, auto W, float* dst) {
        affine_block<decltype(W)::value, Relu>(x + s0 * f.period + col, dst + col, rows, f.period,
                                               ct.data() + col, sc.data() + col, sh.data() + col);
      },
      [&](float* yt) {
        const float* xt = x + f.tail_row0 * c;
        for (int64_t e = 0; e < (m - f.tail_row0) * c; ++e) {
          const float z = (xt[e] - ct[e]) * sc[e] + sh[e];
          yt[e] = Relu ? relu_nan(z) : z;
        }
      });
}

void affine_rows(int64_t m, int64_t c, const float* x, const float* center, const float* scale,
                 const float* shift, bool relu, float* y) {
  if (relu)
    affine_impl<true>(m, c, x, center, scale, shift, y);
  else
    affine_impl<false>(m, c, x, center, scale, shift, y);
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
  const Flat f = bn_flat::layout(m, c);
  std::vector<double> sums(2 * c);
  if (!bn_flat::forward_in_registers(f, m)) {  // parallel.h's runs, float sums in memory
    const std::vector<float> pivot_r = tile(pivot, c, row_group(c));
    column_reduce(m, c, 2, sums.data(), nullptr,
                  [&](int64_t r0, int64_t rows, float* acc, int64_t stride, float*) {
      const float* __restrict xr = x + r0 * c;
      const float* __restrict p = pivot_r.data();
      float* __restrict s1 = acc;
      float* __restrict s2 = acc + stride;
      for (int64_t e = 0; e < rows * c; ++e) {
        const float d = xr[e] - p[e];
        s1[e] += d;
        s2[e] += d * d;
      }
    });
  } else {
    const std::vector<float> pivot_t = tile(pivot, c, f.rows_per);
    bn_flat::reduce<2, bn_flat::max_width(3)>(
        f, m, sums.data(),
        [&](int64_t s0, int64_t rows, int64_t col, auto W, double* tot) {
          pivot_sums<decltype(W)::value>(x + s0 * f.period + col, rows, f.period,
                                         pivot_t.data() + col, tot + col, tot + f.period + col);
        },
        [&](double* tot) {
          const float* xt = x + f.tail_row0 * c;
          for (int64_t e = 0; e < (m - f.tail_row0) * c; ++e) {
            const float d = xt[e] - pivot_t[e];
            tot[e] += d;
            tot[f.period + e] += d * d;
          }
        });
  }
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

// The parameters of a column block of W registers: mean, slope = gamma * inv_std, the relu's
// beta, and the dx pass's a = sum(dy) / m and b = sum(dy * (x - mean)) * inv_std^2 / m.
template <int W>
struct BwdRegs {
  f32xR mu[W], k[W], be[W], a[W], b[W];
};

// The gradient through the fused relu: dy * (y > 0) with y = d * slope + beta recomputed
// from d = x - mean, which both passes read anyway. dy goes through an opaque load: as a
// plain select, GCC turned it into a masked load that ran the pass 10x slower. Masked-off
// elements become dy * 0, not 0: a NaN or inf in dy stays NaN (the oracle's and TensorFlow's
// dy * (y > 0)). One register wide (simd.h f32xR): with 16-lane vectors the avx2 and
// baseline levels spilled every vector to the stack in halves (ResNet-18's fused BN+ReLU
// backward 2.5x its avx512 time). Same lanes, same operations per element at every level.
template <bool Relu, int W>
inline f32xR grad(const float* gr, const BwdRegs<W>& p, int v, f32xR d) {
  if constexpr (!Relu) {
    return loadR(gr);
  } else {
    const f32xR g = loadR_plain(gr);
    return d * p.k[v] + p.be[v] > 0.f ? g : g * 0.f;
  }
}

inline float grad1(float g, float d, float k, float be) { return d * k + be > 0.f ? g : g * 0.f; }

// From the per-channel sums of dy (sums[j]) and dy * (x - mean) (sums[c + j]): dbeta, dgamma,
// and dx's coefficients a = mean(dy), b = mean(dy * (x - mean)) * inv_std^2.
inline void backward_coefficients(int64_t m, int64_t c, const double* sums, const float* inv_std,
                                  float* dbeta, float* dgamma, float* av, float* bv) {
  for (int64_t j = 0; j < c; ++j) {
    const double is = inv_std[j];
    dbeta[j] = (float)sums[j];
    dgamma[j] = (float)(sums[c + j] * is);
    av[j] = (float)(sums[j] / (double)m);
    bv[j] = (float)(sums[c + j] * is * is / (double)m);
  }
}

// Float sums of dy and dy * (x - mean) over `rows` super-rows of W registers.
template <int W, bool Relu>
inline void grad_sums(const float* x, const float* gr, int64_t rows, int64_t period,
                      const BwdRegs<W>& p, double* t_dy, double* t_dyx) {
  f32xR a1[W], a2[W];
  for (int v = 0; v < W; ++v) a1[v] = a2[v] = f32xR{};
  for (int64_t r = 0; r < rows; ++r)
    for (int v = 0; v < W; ++v) {
      const int64_t e = r * period + v * L;
      const f32xR d = loadR(x + e) - p.mu[v];
      const f32xR g = grad<Relu>(gr + e, p, v, d);
      a1[v] += g;
      a2[v] += g * d;
    }
  bn_flat::add_lanes<W>(a1, t_dy);
  bn_flat::add_lanes<W>(a2, t_dyx);
}

// dx = k * (g - a - (x - mean) * b) over `rows` super-rows of W registers.
template <int W, bool Relu>
inline void grad_dx(const float* x, const float* gr, float* out, int64_t rows, int64_t period,
                    const BwdRegs<W>& p) {
  for (int64_t r = 0; r < rows; ++r)
    for (int v = 0; v < W; ++v) {
      const int64_t e = r * period + v * L;
      const f32xR d = loadR(x + e) - p.mu[v];
      const f32xR g = grad<Relu>(gr + e, p, v, d);
      storeR(out + e, p.k[v] * (g - p.a[v] - d * p.b[v]));
    }
}

template <int W>
inline BwdRegs<W> bwd_regs(int64_t col, const float* mu, const float* k, const float* be,
                           const float* a, const float* b) {
  BwdRegs<W> p;
  for (int v = 0; v < W; ++v) {
    const int64_t e = col + v * L;
    p.mu[v] = loadR(mu + e), p.k[v] = loadR(k + e);
    p.be[v] = be ? loadR(be + e) : f32xR{};
    p.a[v] = a ? loadR(a + e) : f32xR{};
    p.b[v] = b ? loadR(b + e) : f32xR{};
  }
  return p;
}

// Wide rows (not bn_flat::in_registers): parallel.h's runs with the parameters and float sums
// tiled in memory, the relu's mask recomputed as in grad() from memory operands.
inline f32xR relu_masked(const float* gr, const float* xr, const float* mu, const float* slope,
                         const float* beta, int64_t e, f32xR& d) {
  d = loadR(xr + e) - loadR(mu + e);
  const f32xR y = d * loadR(slope + e) + loadR(beta + e);
  const f32xR g = loadR_plain(gr + e);
  return y > 0.f ? g : g * 0.f;
}

inline float relu_masked1(const float* gr, const float* xr, const float* mu, const float* slope,
                          const float* beta, int64_t e) {
  return grad1(gr[e], xr[e] - mu[e], slope[e], beta[e]);
}

template <bool Relu>
void backward_runs(int64_t m, int64_t c, const float* dy, const float* x, const float* gamma,
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
  backward_coefficients(m, c, sums.data(), inv_std, dbeta, dgamma, av.data(), bv.data());
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


// From 64 channels the backward keeps the runs: there the registers did not pay (paired with
// the runs, 1 thread, three rounds, new / old: (32, 28, 28, 64) 0.95 / 0.92 / 1.07, (32, 28,
// 28, 96) 1.09 / 1.01 / 1.01, (256, 14, 14, 128) 1.08 / 1.05 / 1.04), below it 0.67-0.84.
// Nor only in cache (under the streaming threshold): (1, 112, 112, 128) 0.95 / 0.90 then 1.13
// / 1.20 / 0.95, (32, 28, 28, 64) 0.95 / 0.97 then 1.08 / 1.31 / 0.88.
constexpr int64_t kBackwardRunsFrom = 64;

template <bool Relu>
void backward_impl(int64_t m, int64_t c, const float* dy, const float* x, const float* gamma,
                   const float* mean, const float* inv_std, const float* relu_beta, float* dx,
                   float* dgamma, float* dbeta) {
  const Flat f = bn_flat::layout(m, c);
  if (!bn_flat::in_registers(f) || c >= kBackwardRunsFrom)
    return backward_runs<Relu>(m, c, dy, x, gamma, mean, inv_std, relu_beta, dx, dgamma, dbeta);
  std::vector<float> kv(c);  // gamma * inv_std: the output's slope per channel
  for (int64_t j = 0; j < c; ++j) kv[j] = (float)((double)gamma[j] * inv_std[j]);
  const std::vector<float> mean_t = tile(mean, c, f.rows_per), slope_t = tile(kv.data(), c, f.rows_per),
                           beta_t = Relu ? tile(relu_beta, c, f.rows_per) : std::vector<float>();
  const float* mu = mean_t.data();
  const float* kk = slope_t.data();
  const float* be = Relu ? beta_t.data() : nullptr;
  const int64_t tail = (m - f.tail_row0) * c;
  const float* xt = x + f.tail_row0 * c;
  const float* gt = dy + f.tail_row0 * c;
  std::vector<double> sums(2 * c);
  bn_flat::reduce<2, bn_flat::max_width(Relu ? 5 : 3)>(
      f, m, sums.data(),
      [&](int64_t s0, int64_t rows, int64_t col, auto W, double* tot) {
        constexpr int w = decltype(W)::value;
        const BwdRegs<w> p = bwd_regs<w>(col, mu, kk, be, nullptr, nullptr);
        const int64_t off = s0 * f.period + col;
        grad_sums<w, Relu>(x + off, dy + off, rows, f.period, p, tot + col, tot + f.period + col);
      },
      [&](double* tot) {
        for (int64_t e = 0; e < tail; ++e) {
          const float d = xt[e] - mu[e];
          const float g = Relu ? grad1(gt[e], d, kk[e], be[e]) : gt[e];
          tot[e] += g;
          tot[f.period + e] += g * d;
        }
      });
  // dx = k * (dy - a - (x - mean) * b) per channel.
  std::vector<float> av(c), bv(c);
  backward_coefficients(m, c, sums.data(), inv_std, dbeta, dgamma, av.data(), bv.data());
  const std::vector<float> at = tile(av.data(), c, f.rows_per), bt = tile(bv.data(), c, f.rows_per);
  const float* aa = at.data();
  const float* bb = bt.data();
  bn_flat::write_chunks<bn_flat::max_width(Relu ? 5 : 4)>(
      f, m, dx,
      [&](int64_t s0, int64_t rows, int64_t col, auto W, float* dst) {
        constexpr int w = decltype(W)::value;
        const BwdRegs<w> p = bwd_regs<w>(col, mu, kk, be, aa, bb);
        const int64_t off = s0 * f.period + col;
        grad_dx<w, Relu>(x + off, dy + off, dst + col, rows, f.period, p);
      },
      [&](float* out) {
        for (int64_t e = 0; e < tail; ++e) {
          const float d = xt[e] - mu[e];
          const float g = Relu ? grad1(gt[e], d, kk[e], be[e]) : gt[e];
          out[e] = kk[e] * (g - aa[e] - d * bb[e]);
        }
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
