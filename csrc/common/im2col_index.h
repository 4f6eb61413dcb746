// Per-element index math of the CUDA convolution kernels (csrc/cuda/im2col.cu,
// depthwise.cu), written as FC_HD functions so the CPU test hook (bindings/
// bind_index_check.cpp) runs exactly the code the GPU runs, element by element.
//
// col layout is the CPU one (cpu/im2col.h): one row per output position (n, oy, ox), rows in
// NHWC output order; a row holds `groups` blocks of K = KH*KW*Cin_g values ordered
// (ky, kx, ci), i.e. the HWIO weight layout, so `col @ W` lands directly in y.
#pragma once
#include <cstdint>

#include "common/geometry.h"
#include "common/hd.h"

namespace fastconv {

// Output position o along one axis read by input cell i through kernel tap k, or -1 when
// no output does: o*s - pad + k*d == i.
FC_HD int64_t conv_output_of_tap(int64_t i, int64_t k, int64_t stride, int64_t dilation,
                                 int64_t pad_before, int64_t out) {
  const int64_t t = i + pad_before - k * dilation;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t o = t / stride;
  return o < out ? o : -1;
}

// col[idx] for idx in [0, n*oh*ow * groups*kh*kw*cin_g): the input value under that tap,
// or 0 for a padded cell.
FC_HD float im2col_value(const ConvGeometry& g, const float* x, int64_t idx) {
  const Window2d& v = g.win;
  const int64_t kcols = v.kh * v.kw * g.cin_g, ldcol = g.groups * kcols;
  const int64_t row = idx / ldcol, cc = idx - row * ldcol;
  const int64_t gi = cc / kcols, r = cc - gi * kcols;
  const int64_t tap = r / g.cin_g, ci = r - tap * g.cin_g;
  const int64_t ky = tap / v.kw, kx = tap - ky * v.kw;
  const int64_t ohw = g.oh * g.ow;
  const int64_t n = row / ohw, p = row - n * ohw;
  const int64_t oy = p / g.ow, ox = p - oy * g.ow;
  const int64_t iy = oy * v.sh - v.pt + ky * v.dh, ix = ox * v.sw - v.pl + kx * v.dw;
  if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return 0.0f;
  return x[((n * g.h + iy) * g.w + ix) * g.c + gi * g.cin_g + ci];
}

// dx[idx] for idx in [0, n*h*w*c) as a gather: the sum of every dcol entry im2col_value
// copied this input cell into. Taps are visited in (ky, kx) order, so the sum is
// deterministic (no atomics).
FC_HD float col2im_value(const ConvGeometry& g, const float* dcol, int64_t idx) {
  const Window2d& v = g.win;
  const int64_t kcols = v.kh * v.kw * g.cin_g, ldcol = g.groups * kcols;
  const int64_t ch = idx % g.c, pix = idx / g.c;
  const int64_t ix = pix % g.w, rest = pix / g.w;
  const int64_t iy = rest % g.h, n = rest / g.h;
  const int64_t gi = ch / g.cin_g, ci = ch - gi * g.cin_g;
  float acc = 0.0f;
  for (int64_t ky = 0; ky < v.kh; ++ky) {
    const int64_t oy = conv_output_of_tap(iy, ky, v.sh, v.dh, v.pt, g.oh);
    if (oy < 0) continue;
    for (int64_t kx = 0; kx < v.kw; ++kx) {
      const int64_t ox = conv_output_of_tap(ix, kx, v.sw, v.dw, v.pl, g.ow);
      if (ox < 0) continue;
      const int64_t row = (n * g.oh + oy) * g.ow + ox;
      acc += dcol[row * ldcol + gi * kcols + (ky * v.kw + kx) * g.cin_g + ci];
    }
  }
  return acc;
}

// ---- depthwise (groups == C, Cin_g == 1, multiplier M = cout_g; weights (KH, KW, 1, C*M)) ----

// y[idx], idx over (n, oy, ox, o); b may be null.
FC_HD float depthwise_forward_value(const ConvGeometry& g, const float* x, const float* w,
                                    const float* b, int64_t idx) {
  const Window2d& v = g.win;
  const int64_t o = idx % g.oc, pos = idx / g.oc;
  const int64_t ox = pos % g.ow, rest = pos / g.ow;
  const int64_t oy = rest % g.oh, n = rest / g.oh;
  const int64_t ci = o / g.cout_g;
  float acc = b ? b[o] : 0.0f;
  for (int64_t ky = 0; ky < v.kh; ++ky) {
    const int64_t iy = oy * v.sh - v.pt + ky * v.dh;
    if (iy < 0 || iy >= g.h) continue;
    for (int64_t kx = 0; kx < v.kw; ++kx) {
      const int64_t ix = ox * v.sw - v.pl + kx * v.dw;
      if (ix < 0 || ix >= g.w) continue;
      acc += x[((n * g.h + iy) * g.w + ix) * g.c + ci] * w[(ky * v.kw + kx) * g.oc + o];
    }
  }
  return acc;
}

// dx[idx], idx over (n, iy, ix, c): gather over taps, then over the M outputs of channel c.
FC_HD float depthwise_backward_data_value(const ConvGeometry& g, const float* dy,
                                          const float* w, int64_t idx) {
  const Window2d& v = g.win;
  const int64_t ch = idx % g.c, pix = idx / g.c;
  const int64_t ix = pix % g.w, rest = pix / g.w;
  const int64_t iy = rest % g.h, n = rest / g.h;
  const int64_t m = g.cout_g, o0 = ch * m;
  float acc = 0.0f;
  for (int64_t ky = 0; ky < v.kh; ++ky) {
    const int64_t oy = conv_output_of_tap(iy, ky, v.sh, v.dh, v.pt, g.oh);
    if (oy < 0) continue;
    for (int64_t kx = 0; kx < v.kw; ++kx) {
      const int64_t ox = conv_output_of_tap(ix, kx, v.sw, v.dw, v.pl, g.ow);
      if (ox < 0) continue;
      const float* d = dy + ((n * g.oh + oy) * g.ow + ox) * g.oc + o0;
      const float* wt = w + (ky * v.kw + kx) * g.oc + o0;
      for (int64_t j = 0; j < m; ++j) acc += d[j] * wt[j];
    }
  }
  return acc;
}

// One term of dw[tap, o] = sum over output positions p = (n, oy, ox) of
// dy[p, o] * x[n, iy, ix, o / M]; dy * 0 where the tap falls on padding: the padding is a
// zero multiplied like any cell, so a NaN or inf dy makes the term NaN, as in the oracle and
// the im2col paths (a plain 0 dropped it).
FC_HD float depthwise_dw_term(const ConvGeometry& g, const float* dy, const float* x,
                              int64_t tap, int64_t o, int64_t p) {
  const Window2d& v = g.win;
  const int64_t ky = tap / v.kw, kx = tap - ky * v.kw;
  const int64_t ox = p % g.ow, rest = p / g.ow;
  const int64_t oy = rest % g.oh, n = rest / g.oh;
  const int64_t iy = oy * v.sh - v.pt + ky * v.dh, ix = ox * v.sw - v.pl + kx * v.dw;
  const float d = dy[p * g.oc + o];
  if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return d * 0.0f;
  return d * x[((n * g.h + iy) * g.w + ix) * g.c + o / g.cout_g];
}

}  // namespace fastconv
