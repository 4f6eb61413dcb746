// 2-D pooling on NHWC float32.
//
// Parallelism: one OpenMP loop over (image, channel block) tasks. Different tasks never touch
// the same dx cell, so the backward passes need no atomics and are deterministic; splitting
// channels as well as images keeps all threads busy for small batches. Inner loops run over
// the contiguous channel axis so they vectorise.
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>

#include "common/pool_index.h"
#include "cpu/parallel.h"
#include "kernels.h"

namespace fastconv::cpu {

namespace {

// Channels per task: the whole row when there are enough images, otherwise split into
// blocks of at least 16 floats (one 64-byte line) so a small batch still fills the threads.
struct ChannelBlocks {
  int64_t size, count;
};

ChannelBlocks channel_blocks(int64_t n, int64_t c) {
  const int64_t threads = omp_get_max_threads();
  if (n >= 2 * threads || c <= 16) return {c, 1};
  const int64_t want = (2 * threads + n - 1) / n;  // blocks per image
  int64_t size = (c + want - 1) / want;
  size = std::max<int64_t>(16, (size + 15) / 16 * 16);
  return {std::min(size, c), (c + size - 1) / size};
}

// `work`: elements the call touches, to decide whether threads are worth waking.
template <typename Body>
void for_each_task(int64_t n, int64_t c, int64_t work, Body body) {
  const ChannelBlocks cb = channel_blocks(n, c);
  const int64_t tasks = n * cb.count;
#pragma omp parallel for schedule(static) if (work >= kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t img = t / cb.count, c0 = (t % cb.count) * cb.size;
    body(img, c0, std::min(c, c0 + cb.size));
  }
}

}  // namespace

void max_pool2d_forward(const PoolGeometry& g, const float* x, float* y) {
  const Window2d& w = g.win;
  const int64_t C = g.c;
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    const float* xi = x + img * g.h * g.w * C;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
        // Start from the first real cell; strict '>' afterwards keeps ties on the earliest
        // cell in row-major order. Padded cells are simply never visited.
        const float* first = xi + (rows.lo * g.w + cols.lo) * C;
        for (int64_t c = c0; c < c1; ++c) out[c] = first[c];
        for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
          for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
            const float* cell = xi + (iy * g.w + ix) * C;
            for (int64_t c = c0; c < c1; ++c) out[c] = cell[c] > out[c] ? cell[c] : out[c];
          }
      }
    }
  });
}

namespace {

// One (image, channel block) task of the max-pool backward. The winner of each window is
// kept as its offset from the window's first cell, (iy - lo)*W + (ix - lo), in an integer
// as wide as a float lane (Offset = int32_t whenever kh*W fits), so the compare-and-select
// loop vectorises; 64-bit offsets remain for absurdly wide images.
template <typename Offset>
void max_backward_task(const PoolGeometry& g, const float* dy, const float* x, float* dx,
                       int64_t img, int64_t c0, int64_t c1) {
  const Window2d& w = g.win;
  const int64_t C = g.c, nc = c1 - c0;
  std::vector<float> best(nc);
  std::vector<Offset> which(nc);
  float* __restrict b = best.data();
  Offset* __restrict wh = which.data();
  const float* xi = x + img * g.h * g.w * C + c0;
  float* dxi = dx + img * g.h * g.w * C + c0;
  // dx rows are zeroed just before the first window reaches them (window rows only move
  // down), so they are still in cache when the scatter adds to them.
  int64_t zeroed = 0;
  auto zero_rows_until = [&](int64_t end) {
    for (; zeroed < end; ++zeroed)
      for (int64_t ix = 0; ix < g.w; ++ix)
        std::memset(dxi + (zeroed * g.w + ix) * C, 0, sizeof(float) * nc);
  };
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    zero_rows_until(rows.hi);
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
      // Recompute the forward's argmax with the same first-wins rule.
      const int64_t base = rows.lo * g.w + cols.lo;
      for (int64_t c = 0; c < nc; ++c) {
        b[c] = xi[base * C + c];
        wh[c] = 0;
      }
      for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
        for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
          const Offset t = (Offset)((iy - rows.lo) * g.w + (ix - cols.lo));
          const float* cell = xi + (iy * g.w + ix) * C;
          for (int64_t c = 0; c < nc; ++c) {
            const bool win = cell[c] > b[c];
            b[c] = win ? cell[c] : b[c];
            wh[c] = win ? t : wh[c];
          }
        }
      const float* g_out = dy + ((img * g.oh + oy) * g.ow + ox) * C + c0;
      for (int64_t c = 0; c < nc; ++c) dxi[(base + (int64_t)wh[c]) * C + c] += g_out[c];
    }
  }
  zero_rows_until(g.h);  // rows below the last window (stride > pool)
}

}  // namespace

void max_pool2d_backward(const PoolGeometry& g, const float* dy, const float* x, float* dx) {
  const bool narrow = g.win.kh * g.w < (int64_t)INT32_MAX;
  for_each_task(g.n, g.c, g.n * g.h * g.w * g.c, [&](int64_t img, int64_t c0, int64_t c1) {
    if (narrow) max_backward_task<int32_t>(g, dy, x, dx, img, c0, c1);
    else max_backward_task<int64_t>(g, dy, x, dx, img, c0, c1);
  });
}

void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* y) {
  const Window2d& w = g.win;
  const int64_t C = g.c;
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    const float* xi = x + img * g.h * g.w * C;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        const float scale = pool_inv_count(rows, cols);
        float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
        for (int64_t c = c0; c < c1; ++c) out[c] = 0.f;
        for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
          for (int64_t ix = cols.lo; ix < cols.hi; ++ix) {
            const float* cell = xi + (iy * g.w + ix) * C;
            for (int64_t c = c0; c < c1; ++c) out[c] += cell[c];
          }
        for (int64_t c = c0; c < c1; ++c) out[c] *= scale;
      }
    }
  });
}

// Gather form: each input cell sums dy/count over the outputs whose window covers it, so dx
// is written once, with no zeroing pass and the same order of additions as the CUDA twin.
// The per-axis ranges and the 1/count table are computed once per call, not per cell.
void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx) {
  const Window2d& w = g.win;
  const int64_t C = g.c;
  std::vector<AxisRange> cover_y(g.h), cover_x(g.w);
  for (int64_t i = 0; i < g.h; ++i) cover_y[i] = pool_outputs_covering(i, w.sh, w.pt, w.kh, g.oh);
  for (int64_t i = 0; i < g.w; ++i) cover_x[i] = pool_outputs_covering(i, w.sw, w.pl, w.kw, g.ow);
  std::vector<float> inv_count(g.oh * g.ow);
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox)
      inv_count[oy * g.ow + ox] = pool_inv_count(pool_window(oy, w.sh, w.pt, w.kh, g.h),
                                                 pool_window(ox, w.sw, w.pl, w.kw, g.w));
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      for (int64_t ix = 0; ix < g.w; ++ix) {
        const AxisRange oxs = cover_x[ix];
        float* __restrict out = dx + ((img * g.h + iy) * g.w + ix) * C;
        for (int64_t c = c0; c < c1; ++c) out[c] = 0.f;
        for (int64_t oy = oys.lo; oy < oys.hi; ++oy)
          for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
            const float scale = inv_count[oy * g.ow + ox];
            const float* src = dy + ((img * g.oh + oy) * g.ow + ox) * C;
            for (int64_t c = c0; c < c1; ++c) out[c] += src[c] * scale;
          }
      }
    }
  });
}

void global_avg_pool2d_forward(int64_t n, int64_t hw, int64_t c, const float* x, float* y) {
  for_each_task(n, c, n * hw * c, [&](int64_t img, int64_t c0, int64_t c1) {
    // Double accumulators: a 112x112 image sums 12544 terms per channel.
    std::vector<double> acc(c1 - c0, 0.0);
    const float* xi = x + img * hw * c + c0;
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t k = 0; k < c1 - c0; ++k) acc[k] += xi[p * c + k];
    for (int64_t k = 0; k < c1 - c0; ++k) y[img * c + c0 + k] = (float)(acc[k] / (double)hw);
  });
}

void global_avg_pool2d_backward(int64_t n, int64_t hw, int64_t c, const float* dy, float* dx) {
  const float scale = 1.0f / (float)hw;
  for_each_task(n, c, n * hw * c, [&](int64_t img, int64_t c0, int64_t c1) {
    const float* g_in = dy + img * c;
    float* out = dx + img * hw * c;
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t k = c0; k < c1; ++k) out[p * c + k] = g_in[k] * scale;
  });
}

}  // namespace fastconv::cpu
