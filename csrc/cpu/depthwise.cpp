// Direct depthwise convolution (groups == C, Cin_g == 1, multiplier M = Cout_g), NHWC.
//
// im2col would copy every input KH*KW times to feed a GEMM with a single reduction column
// per channel, so here each tap is applied directly: output channel o = c*M + m reads input
// channel c, and the innermost loop runs over contiguous channels (vectorised). For M == 1
// input and output channels coincide, the common case, which gets its own loop.
// OpenMP over output lines (forward, weights) or input lines (data): no two iterations
// write the same memory.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/im2col.h"

namespace fastconv::cpu::detail {

namespace {

// acc[o] += a[o / M] * b[o] over all output channels o < C*M.
inline void tap_fma(int64_t c, int64_t m, const float* a, const float* b, float* acc) {
  if (m == 1) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) acc[i] += a[i] * b[i];
  } else {
    for (int64_t i = 0; i < c; ++i) {
      const float av = a[i];
      for (int64_t j = 0; j < m; ++j) acc[i * m + j] += av * b[i * m + j];
    }
  }
}

}  // namespace

void depthwise_forward(const ConvGeometry& g, const float* x, const float* w, const float* b,
                       float* y) {
  const Window2d& v = g.win;
  const int64_t m = g.cout_g, oc = g.oc;
#pragma omp parallel for schedule(static)
  for (int64_t l = 0; l < g.n * g.oh; ++l) {
    const int64_t n = l / g.oh, oy = l % g.oh;
    float* yl = y + l * g.ow * oc;
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      if (b) std::memcpy(yl + ox * oc, b, sizeof(float) * oc);
      else std::memset(yl + ox * oc, 0, sizeof(float) * oc);
    }
    for (int64_t ky = 0; ky < v.kh; ++ky) {
      const int64_t iy = oy * v.sh - v.pt + ky * v.dh;
      if (iy < 0 || iy >= g.h) continue;
      const float* xrow = x + (n * g.h + iy) * g.w * g.c;
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t kx = 0; kx < v.kw; ++kx) {
          const int64_t ix = ox * v.sw - v.pl + kx * v.dw;
          if (ix < 0 || ix >= g.w) continue;
          tap_fma(g.c, m, xrow + ix * g.c, w + (ky * v.kw + kx) * oc, yl + ox * oc);
        }
    }
  }
}

void depthwise_backward_data(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const Window2d& v = g.win;
  const int64_t m = g.cout_g, oc = g.oc;
  // Gather per input line: input row iy receives from output row oy through kernel row ky
  // when oy*sh - pt + ky*dh == iy.
#pragma omp parallel for schedule(static)
  for (int64_t l = 0; l < g.n * g.h; ++l) {
    const int64_t n = l / g.h, iy = l % g.h;
    float* dxl = dx + l * g.w * g.c;
    std::memset(dxl, 0, sizeof(float) * g.w * g.c);
    for (int64_t ky = 0; ky < v.kh; ++ky) {
      const int64_t t = iy + v.pt - ky * v.dh;
      if (t < 0 || t % v.sh != 0 || t / v.sh >= g.oh) continue;
      const float* dyrow = dy + (n * g.oh + t / v.sh) * g.ow * oc;
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t kx = 0; kx < v.kw; ++kx) {
          const int64_t ix = ox * v.sw - v.pl + kx * v.dw;
          if (ix < 0 || ix >= g.w) continue;
          const float* d = dyrow + ox * oc;
          const float* wk = w + (ky * v.kw + kx) * oc;
          float* out = dxl + ix * g.c;
          if (m == 1) {
#pragma omp simd
            for (int64_t c = 0; c < g.c; ++c) out[c] += d[c] * wk[c];
          } else {
            for (int64_t c = 0; c < g.c; ++c) {
              float s = 0.f;
              for (int64_t j = 0; j < m; ++j) s += d[c * m + j] * wk[c * m + j];
              out[c] += s;
            }
          }
        }
    }
  }
}

void depthwise_backward_weights(const ConvGeometry& g, const float* dy, const float* x,
                                float* dw, float* db) {
  const Window2d& v = g.win;
  const int64_t m = g.cout_g, oc = g.oc, wsize = g.weight_size();
  // Per-thread partial sums, reduced in thread order afterwards: no atomics, and the
  // result is the same on every run with the same thread count.
  const int nthreads = omp_get_max_threads();
  const int64_t stride = wsize + oc;
  std::vector<float> part((size_t)(nthreads * stride), 0.f);
  int used = 1;
#pragma omp parallel num_threads(nthreads)
  {
    float* pw = part.data() + omp_get_thread_num() * stride;
    float* pb = pw + wsize;
#pragma omp single
    used = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t l = 0; l < g.n * g.oh; ++l) {
      const int64_t n = l / g.oh, oy = l % g.oh;
      const float* dyl = dy + l * g.ow * oc;
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const float* d = dyl + ox * oc;
#pragma omp simd
        for (int64_t o = 0; o < oc; ++o) pb[o] += d[o];
      }
      for (int64_t ky = 0; ky < v.kh; ++ky) {
        const int64_t iy = oy * v.sh - v.pt + ky * v.dh;
        if (iy < 0 || iy >= g.h) continue;
        const float* xrow = x + (n * g.h + iy) * g.w * g.c;
        for (int64_t ox = 0; ox < g.ow; ++ox)
          for (int64_t kx = 0; kx < v.kw; ++kx) {
            const int64_t ix = ox * v.sw - v.pl + kx * v.dw;
            if (ix < 0 || ix >= g.w) continue;
            tap_fma(g.c, m, xrow + ix * g.c, dyl + ox * oc, pw + (ky * v.kw + kx) * oc);
          }
      }
    }
  }
  std::memcpy(dw, part.data(), sizeof(float) * wsize);
  if (db) std::memcpy(db, part.data() + wsize, sizeof(float) * oc);
  for (int t = 1; t < used; ++t) {
    const float* p = part.data() + t * stride;
    for (int64_t i = 0; i < wsize; ++i) dw[i] += p[i];
    if (db)
      for (int64_t o = 0; o < oc; ++o) db[o] += p[wsize + o];
  }
}

}  // namespace fastconv::cpu::detail
