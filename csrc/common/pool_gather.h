// Per-element pooling kernels' bodies, shared by the CUDA kernels (csrc/cuda/pool2d.cu) and
// the CPU test hook (bindings/bind_index_check.cpp). Forward: one output element each.
// Backward: one INPUT element each, gathering from the outputs whose windows cover it
// (pool_outputs_covering), so no atomics and a fixed summation order.
#pragma once
#include <cstdint>

#include "common/geometry.h"
#include "common/hd.h"
#include "common/nan_math.h"
#include "common/pool_index.h"

namespace fastconv {

struct PoolOut {
  int64_t n, oy, ox, ch;
};

FC_HD PoolOut pool_output_coords(const PoolGeometry& g, int64_t idx) {
  const int64_t ch = idx % g.c, pos = idx / g.c;
  const int64_t ox = pos % g.ow, rest = pos / g.ow;
  return PoolOut{rest / g.oh, rest % g.oh, ox, ch};
}

// Flat (iy*w + ix) of the winning cell of output (n, oy, ox, ch): the first maximum in
// row-major window order (strict >), so ties and padding follow the CPU kernel; the last NaN
// of the window wins over any number (pool_beats), so the window pools to NaN and routes its
// gradient there, as in the CPU kernel and the oracle.
FC_HD int64_t max_pool_argmax(const PoolGeometry& g, const float* x, PoolOut o) {
  const AxisRange rows = pool_window(o.oy, g.win.sh, g.win.pt, g.win.kh, g.h);
  const AxisRange cols = pool_window(o.ox, g.win.sw, g.win.pl, g.win.kw, g.w);
  const float* xn = x + o.n * g.h * g.w * g.c + o.ch;
  int64_t best = rows.lo * g.w + cols.lo;
  float bv = xn[best * g.c];
  for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
    for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
      const float v = xn[(iy * g.w + ix) * g.c];
      if (pool_beats(v, bv)) { bv = v; best = iy * g.w + ix; }
    }
  return best;
}

FC_HD float max_pool_forward_value(const PoolGeometry& g, const float* x, int64_t idx) {
  const PoolOut o = pool_output_coords(g, idx);
  return x[(o.n * g.h * g.w + max_pool_argmax(g, x, o)) * g.c + o.ch];
}

// dx[idx], idx over (n, iy, ix, ch): the dy of every covering window this cell wins.
FC_HD float max_pool_backward_value(const PoolGeometry& g, const float* dy, const float* x,
                                    int64_t idx) {
  const int64_t ch = idx % g.c, pix = idx / g.c;
  const int64_t ix = pix % g.w, rest = pix / g.w;
  const int64_t iy = rest % g.h, n = rest / g.h;
  const AxisRange oys = pool_outputs_covering(iy, g.win.sh, g.win.pt, g.win.kh, g.oh);
  const AxisRange oxs = pool_outputs_covering(ix, g.win.sw, g.win.pl, g.win.kw, g.ow);
  float acc = 0.0f;
  for (int64_t oy = oys.lo; oy < oys.hi; ++oy)
    for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox)
      if (max_pool_argmax(g, x, PoolOut{n, oy, ox, ch}) == iy * g.w + ix)
        acc += dy[((n * g.oh + oy) * g.ow + ox) * g.c + ch];
  return acc;
}

FC_HD float avg_pool_forward_value(const PoolGeometry& g, const float* x, int64_t idx) {
  const PoolOut o = pool_output_coords(g, idx);
  const AxisRange rows = pool_window(o.oy, g.win.sh, g.win.pt, g.win.kh, g.h);
  const AxisRange cols = pool_window(o.ox, g.win.sw, g.win.pl, g.win.kw, g.w);
  const float* xn = x + o.n * g.h * g.w * g.c + o.ch;
  float acc = 0.0f;
  for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
    for (int64_t ix = cols.lo; ix < cols.hi; ++ix) acc += xn[(iy * g.w + ix) * g.c];
  return acc * pool_inv_count(rows, cols);
}

FC_HD float avg_pool_backward_value(const PoolGeometry& g, const float* dy, int64_t idx) {
  const int64_t ch = idx % g.c, pix = idx / g.c;
  const int64_t ix = pix % g.w, rest = pix / g.w;
  const int64_t iy = rest % g.h, n = rest / g.h;
  const AxisRange oys = pool_outputs_covering(iy, g.win.sh, g.win.pt, g.win.kh, g.oh);
  const AxisRange oxs = pool_outputs_covering(ix, g.win.sw, g.win.pl, g.win.kw, g.ow);
  float acc = 0.0f;
  for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
    const AxisRange rows = pool_window(oy, g.win.sh, g.win.pt, g.win.kh, g.h);
    for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
      const AxisRange cols = pool_window(ox, g.win.sw, g.win.pl, g.win.kw, g.w);
      acc += dy[((n * g.oh + oy) * g.ow + ox) * g.c + ch] * pool_inv_count(rows, cols);
    }
  }
  return acc;
}

}  // namespace fastconv
