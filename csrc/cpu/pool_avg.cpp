// 2-D average pooling on NHWC float32, forward and backward (the backward optionally fused
// with an activation's backward), and the global average pool. Windows that tile the input
// go to pool_tiling.cpp; the general paths here run per pixel over the contiguous channel
// axis (pool_windows.h avg_window16), and below 16 channels (8 at avx2) on the packed lane
// maps of pool_packed.h. Each window sums its cells in row-major order, like the CUDA twin.
//
// Parallelism: one OpenMP loop over (image, channel block) tasks (pool_tasks.h). The backward
// gathers per dx cell, so tasks never write the same cell and results are deterministic.
#include <omp.h>

#include <algorithm>
#include <array>
#include <climits>
#include <type_traits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/nan_math.h"
#include "common/pool_index.h"
#include "cpu/pool_packed.h"
#include "cpu/pool_tasks.h"
#include "cpu/pool_tiling.h"
#include "cpu/pool_windows.h"
#include "cpu/simd.h"
#include "kernels.h"

namespace fastconv::cpu {

using detail::avg_window16;
using detail::for_each_task;
using detail::kPieces;
#if defined(__AVX2__)
using detail::lanes_below;
using detail::TiledRows8;
#endif
#if defined(__AVX512F__)
using detail::packed_cover_table;
using detail::PackedCells;
using detail::PackedLanes;
using detail::packed_group;
using detail::packed_lanes;
using detail::PackedSlot;
#elif defined(__AVX2__)
using detail::load_cell8;
using detail::packed_cover_table8;
using detail::packed_group8;
using detail::packed_offsets8;
using detail::PackedSlot8;
using detail::store_lanes8;
#endif

namespace {

inline void avg_window_tail(const PoolGeometry& g, const float* xi, AxisRange rows,
                            AxisRange cols, float scale, int64_t n, float* out) {
  for (int64_t k = 0; k < n; ++k) {
    float acc = 0.f;
    for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
      for (int64_t ix = cols.lo; ix < cols.hi; ++ix) acc += xi[(iy * g.w + ix) * g.c + k];
    out[k] = acc * scale;
  }
}

}  // namespace

#if defined(__AVX512F__)
namespace {

// Average pool at few channels, packed as max_forward_task_packed: 16 / C output pixels per
// vector, cells gathered, summed in the same row-major order as avg_window_tail (so the same
// float result); groups whose windows are clipped along x go pixel by pixel.
void avg_forward_task_packed(const PoolGeometry& g, const float* x, float* y, int64_t img) {
  const Window2d& w = g.win;
  const int64_t C = g.c;
  const PackedLanes pl = packed_lanes(C);
  const float* xi = x + img * g.h * g.w * C;
  alignas(64) int32_t lane_off[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) lane_off[j] = (int32_t)((j / C) * w.sw * C + j % C);
  const __m512i off = _mm512_load_si512(lane_off);
  const PackedCells cells(g, pl, off);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    int64_t ox = 0;
    while (ox < g.ow) {
      const int64_t col0 = ox * w.sw - w.pl;
      float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
      const PackedLanes grp = packed_group(g, pl, ox);
      if (grp.pixels == 0) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        avg_window_tail(g, xi, rows, cols, pool_inv_count(rows, cols), C, out);
        ++ox;
        continue;
      }
      __m512 acc = _mm512_setzero_ps();
      if (cells.permute) {
        for (int64_t iy = rows.lo; iy < rows.hi; ++iy) {
          __m512 lo, hi;
          PackedCells::load_row(g, xi, iy, col0, lo, hi);
          for (int64_t kx = 0; kx < w.kw; ++kx)
            acc = _mm512_add_ps(acc, _mm512_maskz_permutex2var_ps(grp.mask, lo, cells.cell[kx], hi));
        }
      } else {
        for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
          for (int64_t kx = 0; kx < w.kw; ++kx)
            acc = _mm512_add_ps(acc, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), grp.mask, off,
                                                              xi + (iy * g.w + col0 + kx) * C, 4));
      }
      const float scale = pool_inv_count(rows, AxisRange{col0, col0 + w.kw});
      _mm512_mask_storeu_ps(out, grp.mask, _mm512_mul_ps(acc, _mm512_set1_ps(scale)));
      ox += grp.pixels;
    }
  }
}

// Average pool backward at few channels: max_backward_argmax_packed's walk, each covering
// output adding dy * 1/count (its 1/count fetched per lane like dy), in avg_pool2d_backward's
// (oy, ox) order.
void avg_backward_packed(const PoolGeometry& g, const float* dy, float* dx, const float* inv_count,
                         const std::vector<AxisRange>& cover_y, const std::vector<AxisRange>& cover_x,
                         const float* y, Activation act) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = kLanes / C, groups = (g.w + pixels - 1) / pixels;
  const int64_t slots = (w.kw + w.sw - 1) / w.sw, row_len = g.ow * C;
  const std::vector<PackedSlot> table = packed_cover_table(g, cover_x, pixels, slots);
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    const float* dyi = dy + img * g.oh * row_len;
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      float* dx_row = dx + (img * g.h + iy) * g.w * C;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int64_t lanes = std::min(pixels, g.w - gi * pixels) * C;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
          const float* dy_row = dyi + oy * row_len;
          const float* scale_row = inv_count + oy * g.ow;
          for (int64_t s = 0; s < slots; ++s) {
            const PackedSlot& sl = table[gi * slots + s];
            if (sl.valid == 0) continue;
            __m512 d, scale;
            if (sl.span <= kLanes) {
              d = _mm512_permutexvar_ps(sl.rel, _mm512_maskz_loadu_ps((__mmask16)((1u << sl.span) - 1u), dy_row + sl.base));
              scale = _mm512_permutexvar_ps(
                  sl.ox_rel, _mm512_maskz_loadu_ps((__mmask16)((1u << sl.ox_span) - 1u), scale_row + sl.ox_base));
            } else {
              d = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), sl.valid, sl.dy_off, dy_row, 4);
              scale = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), sl.valid,
                                               _mm512_add_epi32(sl.ox_rel, _mm512_set1_epi32(sl.ox_base)),
                                               scale_row, 4);
            }
            acc = _mm512_mask_add_ps(acc, sl.valid, acc, _mm512_mul_ps(d, scale));
          }
        }
        _mm512_mask_storeu_ps(dx_row + gi * pixels * C, (__mmask16)((1u << lanes) - 1u), acc);
      }
      if (y) activation_backward_inplace(g.w * C, y + (dx_row - dx), dx_row, act);
    }
  });
}

}  // namespace
#elif defined(__AVX2__)
namespace {

// Average pool at few channels (C < 8) at the avx2 level: avg_forward_task_packed with 8
// lanes, P = 8 / C pixels per vector (masked loads at P = 1), the same groups and the same
// additions in the same order, so the avx2 and avx512 levels give the same floats. Before it,
// C < 16 took avg_window_tail, one scalar chain per channel: LeNet's (256, 28, 28, 6) pool
// 0.99 ms forward at avx2 against 0.45 at avx512.
void avg_forward_task_packed8(const PoolGeometry& g, const float* x, float* y, int64_t img) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = 8 / C;
  const float* xi = x + img * g.h * g.w * C;
  const float* x_end = xi + g.h * g.w * C;
  const float* image_end = y + (img + 1) * g.oh * g.ow * C;  // this image's output ends here
  const __m256i off = packed_offsets8(g);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
    int64_t ox = 0;
    while (ox < g.ow) {
      const int64_t col0 = ox * w.sw - w.pl;
      float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
      const int64_t q = packed_group8(g, pixels, ox);
      if (q == 0) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        avg_window_tail(g, xi, rows, cols, pool_inv_count(rows, cols), C, out);
        ++ox;
        continue;
      }
      const __m256i mask = lanes_below(q * C);
      __m256 acc = _mm256_setzero_ps();
      for (int64_t iy = rows.lo; iy < rows.hi; ++iy)
        for (int64_t kx = 0; kx < w.kw; ++kx)
          acc = _mm256_add_ps(acc, load_cell8(xi + (iy * g.w + col0 + kx) * C, off, mask, pixels == 1, x_end));
      const float scale = pool_inv_count(rows, AxisRange{col0, col0 + w.kw});
      store_lanes8(out, _mm256_mul_ps(acc, _mm256_set1_ps(scale)), q * C, out + 8 <= image_end);
      ox += q;
    }
  }
}

// Average pool backward at few channels (C < 8) at the avx2 level: avg_backward_packed with
// 8 lanes over packed_cover_table8 (dy and 1/count gathered per lane, or at P = 1 one masked
// load of dy and one 1/count for the pixel), the same products and additions in the same
// order. Before it: 3.04 ms at avx2 against 0.65 at avx512 on LeNet's (256, 28, 28, 6).
void avg_backward_packed8(const PoolGeometry& g, const float* dy, float* dx, const float* inv_count,
                          const std::vector<AxisRange>& cover_y, const std::vector<AxisRange>& cover_x,
                          const float* y, Activation act) {
  const Window2d& w = g.win;
  const int64_t C = g.c, pixels = 8 / C, groups = (g.w + pixels - 1) / pixels;
  const int64_t slots = (w.kw + w.sw - 1) / w.sw, row_len = g.ow * C;
  const std::vector<PackedSlot8> table = packed_cover_table8(g, cover_x, pixels, slots);
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    const float* dx_end = dx + (img + 1) * g.h * g.w * C;  // this image's dx ends here
    const float* dyi = dy + img * g.oh * row_len;
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      float* dx_row = dx + (img * g.h + iy) * g.w * C;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int64_t lanes = std::min(pixels, g.w - gi * pixels) * C;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t oy = oys.lo; oy < oys.hi; ++oy) {
          const float* dy_row = dyi + oy * row_len;
          const float* scale_row = inv_count + oy * g.ow;
          for (int64_t s = 0; s < slots; ++s) {
            const PackedSlot8& sl = table[gi * slots + s];
            if (sl.first_ox < 0) continue;  // no lane has this slot's output
            __m256 d, scale;
            if (pixels == 1) {
              d = _mm256_maskload_ps(dy_row + sl.first_ox * C, sl.valid);
              scale = _mm256_set1_ps(scale_row[sl.first_ox]);
            } else {
              const __m256 valid = _mm256_castsi256_ps(sl.valid);
              d = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), dy_row, sl.dy_off, valid, 4);
              scale = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), scale_row, sl.ox, valid, 4);
            }
            // invalid lanes: d is +0 (masked load), so they add +0 (* 1/count) to a sum that
            // is never -0: the avx512 path's masked add, to the bit. The product is rounded
            // before the add (the empty asm hides it: GCC would fuse the two into an FMA, as the avx512
            // level's masked add is not, and the levels' results would differ in the last bit)
            __m256 term = _mm256_mul_ps(d, scale);
            asm("" : "+x"(term));
            acc = _mm256_add_ps(acc, term);
          }
        }
        float* at = dx_row + gi * pixels * C;
        store_lanes8(at, acc, lanes, at + 8 <= dx_end);
      }
      if (y) activation_backward_inplace(g.w * C, y + (dx_row - dx), dx_row, act);
    }
  });
}

}  // namespace
#endif

#if defined(__AVX2__)  // both levels: at avx512 too (see the dispatch)
namespace {

// Average pool backward over windows that tile the input (TiledRows8): every window is whole
// (no padding), so dx = +0 + dy * (1/count) of the one window covering the cell, or +0 outside
// all windows; along the contiguous dx row, one load and one permute per 8 floats. The same
// product (rounded, then added to +0) as avg_backward_packed8: the same floats.
void avg_backward_tiled8(const PoolGeometry& g, const TiledRows8& tab, const float* dy, float* dx,
                         const float* y, Activation act) {
  const Window2d& w = g.win;
  const int64_t C = g.c, row_len = g.ow * C, dx_row = g.w * C, covered = g.ow * w.sw * C;
  const int64_t per_period = tab.vectors * 8 / w.sw;
  const float inv = 1.0f / (float)(w.kh * w.kw);
  const __m256 scale = _mm256_set1_ps(inv);
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t, int64_t) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* out = dx + (img * g.h + iy) * dx_row;
      const int64_t oy = iy / w.sh;
      int64_t e = 0;
      if (oy < g.oh) {
        const float* dy_row = dy + (img * g.oh + oy) * row_len;
        for (int64_t period = 0; e < covered; ++period)
          for (int64_t j = 0; j < tab.vectors && e < covered; ++j, e += 8) {
            const int64_t q = period * per_period + tab.base[j];
            const __m256i rel = _mm256_loadu_si256((const __m256i*)tab.rel[j].data());
            const int64_t avail = std::min<int64_t>(8, row_len - q);  // >= 1: lane 0's entry
            const __m256 d = _mm256_permutevar8x32_ps(
                avail == 8 ? _mm256_loadu_ps(dy_row + q) : _mm256_maskload_ps(dy_row + q, lanes_below(avail)), rel);
            __m256 term = _mm256_mul_ps(d, scale);
            asm("" : "+x"(term));  // rounded before the add, as avg_backward_packed8
            const __m256 v = _mm256_add_ps(_mm256_setzero_ps(), term);
            if (e + 8 <= covered) {
              _mm256_storeu_ps(out + e, v);
            } else {  // lanes past the covered floats are not stored
              float last[8];
              _mm256_storeu_ps(last, v);
              std::memcpy(out + e, last, sizeof(float) * (size_t)(covered - e));
            }
          }
        e = covered;
      }
      for (; e < dx_row; ++e) out[e] = 0.f;
      if (y) activation_backward_inplace(dx_row, y + (out - dx), out, act);
    }
  });
}

}  // namespace
#endif

void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* y) {
  if (detail::pool_forward_tiles(g)) return detail::avg_forward_tiles(g, x, y);
  const Window2d& w = g.win;
  const int64_t C = g.c;
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
#if defined(__AVX512F__)
    if (C < kLanes) {
      avg_forward_task_packed(g, x, y, img);
      return;
    }
#elif defined(__AVX2__)
    if (C < 8) {
      avg_forward_task_packed8(g, x, y, img);
      return;
    }
#endif
    const float* xi = x + img * g.h * g.w * C;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const AxisRange rows = pool_window(oy, w.sh, w.pt, w.kh, g.h);
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        const AxisRange cols = pool_window(ox, w.sw, w.pl, w.kw, g.w);
        const float scale = pool_inv_count(rows, cols);
        float* out = y + ((img * g.oh + oy) * g.ow + ox) * C;
        int64_t c = c0;
        for (; c + 4 * kLanes <= c1; c += 4 * kLanes)
          avg_window16<4>(g, xi + c, rows, cols, scale, out + c);
        for (; c + kLanes <= c1; c += kLanes) avg_window16<1>(g, xi + c, rows, cols, scale, out + c);
        if (c < c1 && c1 - c0 >= kLanes)  // overlapping last vector, as in the max pool
          avg_window16<1>(g, xi + c1 - kLanes, rows, cols, scale, out + c1 - kLanes);
        else if (c < c1) avg_window_tail(g, xi + c, rows, cols, scale, c1 - c, out + c);
      }
    }
  });
}

namespace {

// dx of one cell for V * kLanes channels: sum of dy/count over the covering outputs, in
// (oy, ox) order (dyi: the image's dy at the block's first channel).
template <int V>
inline void avg_gather16(const PoolGeometry& g, const float* dyi, const float* inv_count,
                         AxisRange oys, AxisRange oxs, float* out) {
  constexpr int N = V * kPieces;  // register-wide pieces, as avg_window16
  f32xR acc[N];
  for (int v = 0; v < N; ++v) acc[v] = f32xR{};
  for (int64_t oy = oys.lo; oy < oys.hi; ++oy)
    for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox) {
      const float scale = inv_count[oy * g.ow + ox];
      const float* src = dyi + (oy * g.ow + ox) * g.c;
      for (int v = 0; v < N; ++v) {
        f32xR piece;
        std::memcpy(&piece, src + v * kRegLanes, sizeof piece);
        acc[v] += piece * scale;
      }
    }
  for (int v = 0; v < N; ++v) std::memcpy(out + v * kRegLanes, &acc[v], sizeof acc[v]);
}

}  // namespace

// Gather form: each input cell sums dy/count over the outputs whose window covers it, so dx
// is written once, with no zeroing pass and the same order of additions as the CUDA twin.
// The per-axis ranges and the 1/count table are computed once per call, not per cell.
void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx, const float* y, Activation act) {
  if (act == Activation::Linear) y = nullptr;  // nothing to apply
  if (!y && detail::pool_windows_tile(g)) return detail::avg_backward_tiles(g, dy, dx);
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
#if defined(__AVX2__) && !defined(__AVX512F__)
  // kw == 2 at C = 1, 2, 3, 4, 6 without an activation: the patterns in registers (pool_rows8.cpp)
  if (!y && detail::pool_rows8_backward_applies(g)) return detail::avg_backward_rows8(g, dy, dx);
#endif
#if defined(__AVX2__)
  // Tiling windows at C < 8 (LeNet's 2x2 stride 2) along the dx rows, at the avx512 level
  // too: its packed path took 0.91 ms on LeNet's (256, 28, 28, 6) with sigmoid, this one 0.54.
  if (TiledRows8::applies(g)) {
    const TiledRows8 tab(g);
    if (tab.vectors > 0) return avg_backward_tiled8(g, tab, dy, dx, y, act);
  }
#endif
#if defined(__AVX512F__)
  if (C < kLanes) {
    avg_backward_packed(g, dy, dx, inv_count.data(), cover_y, cover_x, y, act);
    return;
  }
#elif defined(__AVX2__)
  if (C < 8) {
    avg_backward_packed8(g, dy, dx, inv_count.data(), cover_y, cover_x, y, act);
    return;
  }
#endif
  for_each_task(g.n, C, g.n * g.h * g.w * C, [&](int64_t img, int64_t c0, int64_t c1) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      const AxisRange oys = cover_y[iy];
      for (int64_t ix = 0; ix < g.w; ++ix) {
        const AxisRange oxs = cover_x[ix];
        float* out = dx + ((img * g.h + iy) * g.w + ix) * C;
        const float* dyi = dy + img * g.oh * g.ow * C;
        int64_t c = c0;
        for (; c + 4 * kLanes <= c1; c += 4 * kLanes)
          avg_gather16<4>(g, dyi + c, inv_count.data(), oys, oxs, out + c);
        for (; c + kLanes <= c1; c += kLanes)
          avg_gather16<1>(g, dyi + c, inv_count.data(), oys, oxs, out + c);
        if (c < c1 && c1 - c0 >= kLanes) {  // overlapping last vector, as in the forward
          avg_gather16<1>(g, dyi + c1 - kLanes, inv_count.data(), oys, oxs, out + c1 - kLanes);
          c = c1;
        }
        for (; c < c1; ++c) {
          float acc = 0.f;
          for (int64_t oy = oys.lo; oy < oys.hi; ++oy)
            for (int64_t ox = oxs.lo; ox < oxs.hi; ++ox)
              acc += dyi[(oy * g.ow + ox) * C + c] * inv_count[oy * g.ow + ox];
          out[c] = acc;
        }
        // a task with part of the channels: its own cells only, pixel by pixel
        if (y && c1 - c0 < C) activation_backward_inplace(c1 - c0, y + (out - dx) + c0, out + c0, act);
      }
      if (y && c1 - c0 == C) {  // the whole row, still in cache
        const int64_t row = (img * g.h + iy) * g.w * C;
        activation_backward_inplace(g.w * C, y + row, dx + row, act);
      }
    }
  });
}

namespace {

// Sum over hw pixels of V * kLanes channels at x (pixel stride c), into total[0 .. V*kLanes):
// float vectors in registers over kReduceRows pixels, folded into double between chunks.
template <int V>
inline void pixel_sums16(int64_t hw, int64_t c, const float* x, double* total) {
  for (int64_t p0 = 0; p0 < hw; p0 += kReduceRows) {
    const int64_t p1 = std::min(hw, p0 + kReduceRows);
    f32x16 acc[V];
    for (int v = 0; v < V; ++v) acc[v] = splat16(0.f);
    for (int64_t p = p0; p < p1; ++p)
      for (int v = 0; v < V; ++v) acc[v] += load16(x + p * c + v * kLanes);
    for (int v = 0; v < V; ++v)
      for (int k = 0; k < (int)kLanes; ++k) total[v * kLanes + k] += (double)acc[v][k];
  }
}

inline void pixel_sums_tail(int64_t hw, int64_t c, int64_t n, const float* x, double* total) {
  for (int64_t k = 0; k < n; ++k)
    for (int64_t p0 = 0; p0 < hw; p0 += kReduceRows) {
      float acc = 0.f;
      for (int64_t p = p0; p < std::min(hw, p0 + kReduceRows); ++p) acc += x[p * c + k];
      total[k] += (double)acc;
    }
}

}  // namespace

void global_avg_pool2d_forward(int64_t n, int64_t hw, int64_t c, const float* x, float* y) {
  for_each_task(n, c, n * hw * c, [&](int64_t img, int64_t c0, int64_t c1) {
    // A 112x112 image sums 12544 terms per channel: float sums over kReduceRows pixels
    // (register vectors, 4 independent ones at C >= 64), added into double totals.
    std::vector<double> total(c1 - c0, 0.0);
    const float* xi = x + img * hw * c;
    int64_t k = c0;
    for (; k + 4 * kLanes <= c1; k += 4 * kLanes) pixel_sums16<4>(hw, c, xi + k, &total[k - c0]);
    for (; k + kLanes <= c1; k += kLanes) pixel_sums16<1>(hw, c, xi + k, &total[k - c0]);
    if (k < c1) pixel_sums_tail(hw, c, c1 - k, xi + k, &total[k - c0]);
    for (int64_t j = c0; j < c1; ++j) y[img * c + j] = (float)(total[j - c0] / (double)hw);
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
